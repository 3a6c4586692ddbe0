"""POST /delegate/revoke: end a delegation. Its grantor, its grantee, or the bridge key."""

from shared import credentials, delegations, http


@http.endpoint("delegate/revoke")
def delegate_revoke(call: http.Call) -> http.Reply:
    principal = credentials.resolve(call)
    principal.require_full_credential()
    body = call.body(delegations.Revoke)
    return http.reply(200, delegations.revoke(body, principal))
