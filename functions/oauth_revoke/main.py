"""POST /oauth/revoke: revoke an access or refresh token (RFC 7009). The client it was issued to."""

from shared import http, oauth


@http.endpoint("oauth/revoke", media=http.FORM)
def oauth_revoke(call: http.Call) -> http.Reply:
    form = call.form(oauth.RevokeForm)
    return http.reply(200, oauth.revoke(call, form))
