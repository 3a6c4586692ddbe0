"""POST /authz/read: the relationship tuples of one resource. Bridge (a tenant), or an agent holding authz:read."""

from shared import credentials, http, relations


@http.endpoint("authz/read")
def authz_read(call: http.Call) -> http.Reply:
    principal = credentials.resolve(call, agent_record=True, required_scope=relations.READ_SCOPE)
    body = call.body(relations.Read)
    tenant_id = relations.tenant_of(principal, body.tenant_id, relations.READ_SCOPE)
    return http.reply(200, relations.read(body, tenant_id))
