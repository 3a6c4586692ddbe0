"""POST /authz/write: write and delete relationship tuples, atomically. Bridge, or an agent holding authz:write."""

from shared import credentials, http, relations


@http.endpoint("authz/write")
def authz_write(call: http.Call) -> http.Reply:
    principal = credentials.resolve(call, agent_record=True, required_scope=relations.WRITE_SCOPE)
    body = call.body(relations.Write)
    tenant_id = relations.tenant_of(principal, body.tenant_id, relations.WRITE_SCOPE)
    return http.reply(200, relations.write(body, principal, tenant_id))
