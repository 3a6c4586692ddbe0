"""POST /device/revoke: revoke a device key. The bridge key for any key; an agent for its own."""

from shared import credentials, devices, http


@http.endpoint("device/revoke")
def device_revoke(call: http.Call) -> http.Reply:
    principal = credentials.resolve(call)
    principal.require_full_credential()
    body = call.body(devices.RevokeKey)
    return http.reply(200, devices.revoke(body, principal))
