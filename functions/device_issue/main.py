"""POST /device/issue: issue (or rotate) a device key. The bridge key for any agent; an agent for itself."""

from shared import credentials, devices, http


@http.endpoint("device/issue")
def device_issue(call: http.Call) -> http.Reply:
    principal = credentials.resolve(call)
    principal.require_full_credential()
    body = call.body(devices.IssueKey)
    agent_id = principal.subject(body.agent_id)
    return http.reply(201, devices.issue(body, agent_id, principal))
