"""POST /users/create: register a Firebase Authentication account as a user of a tenant. Bridge key only."""

from shared import credentials, http, users


@http.endpoint("users/create")
def users_create(call: http.Call) -> http.Reply:
    principal = credentials.resolve(call)
    principal.require_bridge()
    body = call.body(users.CreateUser)
    return http.reply(201, users.create(body, principal))
