"""POST /agents/list: agents page by page, optionally of one tenant. Bridge key only."""

from shared import agents, credentials, http


@http.endpoint("agents/list")
def agents_list(call: http.Call) -> http.Reply:
    principal = credentials.resolve(call)
    principal.require_bridge()
    body = call.body(agents.ListAgents)
    return http.reply(200, agents.list_agents(body))
