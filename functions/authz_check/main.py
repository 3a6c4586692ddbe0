"""POST /authz/check: may a subject (or an agent acting for a user) do an action on a resource? One round trip."""

from shared import credentials, http, relations


@http.endpoint("authz/check")
def authz_check(call: http.Call) -> http.Reply:
    hint = call.peek(relations.Check)  # names the check's documents: read beside the credential
    principal = credentials.resolve(call, also_read=relations.check_reads(hint), required_scope=relations.CHECK_SCOPE)
    body = call.body(relations.Check)
    tenant_id = relations.tenant_of(principal, body.tenant_id, relations.CHECK_SCOPE)
    return http.reply(200, relations.check(body, principal, tenant_id))
