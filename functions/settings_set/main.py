"""POST /settings/set: change one allow-listed setting. Bridge key only."""

from shared import credentials, http, settings


@http.endpoint("settings/set")
def settings_set(call: http.Call) -> http.Reply:
    principal = credentials.resolve(call)
    principal.require_bridge()
    body = call.body(settings.SetSetting)
    return http.reply(200, settings.set_value(body, principal))
