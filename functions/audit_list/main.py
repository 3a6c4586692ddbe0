"""POST /audit/list: audit events, newest first, page by page. Bridge key only."""

from shared import audit, credentials, http


@http.endpoint("audit/list")
def audit_list(call: http.Call) -> http.Reply:
    principal = credentials.resolve(call)
    principal.require_bridge()
    body = call.body(audit.ListEvents)
    return http.reply(200, audit.list_events(body))
