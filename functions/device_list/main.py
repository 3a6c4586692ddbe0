"""POST /device/list: an agent's device keys (never the keys). The bridge key for any agent; an agent for itself."""

from shared import credentials, devices, http


@http.endpoint("device/list")
def device_list(call: http.Call) -> http.Reply:
    principal = credentials.resolve(call)
    body = call.body(devices.ListKeys)
    return http.reply(200, devices.list_keys(principal.subject(body.agent_id), principal))
