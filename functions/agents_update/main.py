"""POST /agents/update: rename, disable or re-enable an agent. Bridge key only."""

from shared import agents, credentials, http


@http.endpoint("agents/update")
def agents_update(call: http.Call) -> http.Reply:
    principal = credentials.resolve(call)
    principal.require_bridge()
    body = call.body(agents.UpdateAgent)
    return http.reply(200, agents.update(body, principal))
