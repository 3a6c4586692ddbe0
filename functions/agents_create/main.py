"""POST /agents/create: mint an agent. Bridge key only."""

from shared import agents, credentials, http


@http.endpoint("agents/create")
def agents_create(call: http.Call) -> http.Reply:
    principal = credentials.resolve(call)
    principal.require_bridge()
    body = call.body(agents.CreateAgent)
    return http.reply(201, agents.create(body, principal))
