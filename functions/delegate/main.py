"""POST /delegate: the calling agent lets another agent of its tenant act for it on some routes."""

from shared import credentials, delegations, http


@http.endpoint("delegate")
def delegate(call: http.Call) -> http.Reply:
    principal = credentials.resolve(call)
    principal.require_agent()
    principal.require_full_credential()
    body = call.body(delegations.Grant)
    return http.reply(201, delegations.grant(body, principal))
