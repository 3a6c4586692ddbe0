"""POST /users/get: one user. The bridge key for any user; a signed-in user for itself."""

from shared import credentials, http, users


@http.endpoint("users/get")
def users_get(call: http.Call) -> http.Reply:
    principal = credentials.resolve(call, users=True)
    principal.require_user_or_bridge()
    body = call.body(users.GetUser)
    return http.reply(200, users.get(body.user_id, principal))
