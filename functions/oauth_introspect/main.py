"""POST /oauth/introspect: whether a token is active, and its claims (RFC 7662). An agent client or the bridge key."""

from shared import http, oauth


@http.endpoint("oauth/introspect", media=http.FORM)
def oauth_introspect(call: http.Call) -> http.Reply:
    form = call.form(oauth.IntrospectForm)
    return http.reply(200, oauth.introspect(call, form))
