"""POST /users/delegate/revoke: end a user's grant to an agent. The user, the agent, or the bridge key."""

from shared import credentials, http, user_grants


@http.endpoint("users/delegate/revoke")
def users_delegate_revoke(call: http.Call) -> http.Reply:
    principal = credentials.resolve(call, users=True)
    principal.require_full_credential()
    body = call.body(user_grants.Revoke)
    return http.reply(200, user_grants.revoke(body, principal))
