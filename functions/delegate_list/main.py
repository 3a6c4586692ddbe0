"""POST /delegate/list: the delegations the calling agent granted and received."""

from shared import credentials, delegations, http


@http.endpoint("delegate/list")
def delegate_list(call: http.Call) -> http.Reply:
    principal = credentials.resolve(call)
    principal.require_agent()
    call.body(delegations.ListDelegations)
    return http.reply(200, delegations.list_for(principal))
