"""GET /.well-known/jwks.json: the public keys that sign access tokens. No credential; cacheable five minutes."""

from shared import http, oauth


@http.endpoint(".well-known/jwks.json", method="GET")
def well_known_jwks_json(call: http.Call) -> http.Reply:
    return http.reply(200, oauth.jwks(), {"Cache-Control": "public, max-age=300"})
