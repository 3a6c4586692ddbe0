"""POST /users/delegate: a user makes an agent of its tenant its delegate for some actions. The user, or bridge."""

from shared import credentials, http, user_grants


@http.endpoint("users/delegate")
def users_delegate(call: http.Call) -> http.Reply:
    principal = credentials.resolve(call, users=True)
    principal.require_user_or_bridge()
    body = call.body(user_grants.Grant)
    return http.reply(201, user_grants.grant(body, principal))
