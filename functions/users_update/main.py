"""POST /users/update: rename, disable (a cascade, at once) or re-enable a user. Bridge key only."""

from shared import credentials, http, users


@http.endpoint("users/update")
def users_update(call: http.Call) -> http.Reply:
    principal = credentials.resolve(call)
    principal.require_bridge()
    body = call.body(users.UpdateUser)
    return http.reply(200, users.update(body, principal))
