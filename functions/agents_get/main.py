"""POST /agents/get: one agent. The bridge key for any agent; an agent for itself."""

from shared import agents, credentials, http


@http.endpoint("agents/get")
def agents_get(call: http.Call) -> http.Reply:
    principal = credentials.resolve(call)
    body = call.body(agents.GetAgent)
    return http.reply(200, agents.get(principal.subject(body.agent_id), principal))
