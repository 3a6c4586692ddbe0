"""POST /users/list: users page by page, optionally of one tenant. Bridge key only."""

from shared import credentials, http, users


@http.endpoint("users/list")
def users_list(call: http.Call) -> http.Reply:
    principal = credentials.resolve(call)
    principal.require_bridge()
    body = call.body(users.ListUsers)
    return http.reply(200, users.list_users(body))
