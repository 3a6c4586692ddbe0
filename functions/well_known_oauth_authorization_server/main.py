"""GET /.well-known/oauth-authorization-server: the RFC 8414 metadata of this authorization server."""

from shared import http, oauth


@http.endpoint(".well-known/oauth-authorization-server", method="GET")
def well_known_oauth_authorization_server(call: http.Call) -> http.Reply:
    return http.reply(200, oauth.metadata())
