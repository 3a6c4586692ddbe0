"""POST /activate/decide: a signed-in user approves or denies a pending user code of an agent of its tenant."""

from shared import credentials, device_flow, http


@http.endpoint("activate/decide")
def activate_decide(call: http.Call) -> http.Reply:
    principal = credentials.resolve(call, users=True)
    principal.require_user()
    body = call.body(device_flow.Decide)
    return http.reply(200, device_flow.decide(body, principal))
