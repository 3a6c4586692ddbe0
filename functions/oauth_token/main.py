"""POST /oauth/token: OAuth 2.0 access (and refresh) tokens for agents: client credentials, jwt-bearer, refresh."""

from shared import http, oauth


@http.endpoint("oauth/token", media=http.FORM)
def oauth_token(call: http.Call) -> http.Reply:
    form = call.form(oauth.TokenForm)
    return http.reply(200, oauth.token(call, form))
