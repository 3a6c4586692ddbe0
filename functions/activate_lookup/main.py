"""POST /activate/lookup: which agent, tenant and actions a pending user code asks for. A signed-in user."""

from shared import credentials, device_flow, http


@http.endpoint("activate/lookup")
def activate_lookup(call: http.Call) -> http.Reply:
    principal = credentials.resolve(call, users=True)
    principal.require_user()
    body = call.body(device_flow.Lookup)
    return http.reply(200, device_flow.lookup(body, principal))
