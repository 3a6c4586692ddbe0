"""POST /oauth/device_authorization: a device code and a user code for a program to show a person (RFC 8628)."""

from shared import device_flow, http, oauth


@http.endpoint("oauth/device_authorization", media=http.FORM)
def oauth_device_authorization(call: http.Call) -> http.Reply:
    form = call.form(device_flow.AuthorizationForm)
    return http.reply(200, oauth.device_authorization(call, form))
