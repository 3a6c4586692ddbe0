"""POST /settings/list: every allow-listed setting with its value. Any valid credential."""

from shared import credentials, http, settings


@http.endpoint("settings/list")
def settings_list(call: http.Call) -> http.Reply:
    credentials.resolve(call)
    call.body(settings.ListSettings)
    return http.reply(200, {"settings": settings.current()})
