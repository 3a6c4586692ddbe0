"""POST /users/delegate/list: a user's grants to agents, or the grants an agent holds from users."""

from shared import credentials, http, user_grants


@http.endpoint("users/delegate/list")
def users_delegate_list(call: http.Call) -> http.Reply:
    principal = credentials.resolve(call, users=True)
    call.body(user_grants.ListGrants)
    return http.reply(200, user_grants.list_for(principal))
