"""GET /openapi.json: the OpenAPI 3.1 description of every route, built from the request and answer models."""

from shared import http, openapi


@http.endpoint("openapi.json", method="GET")
def openapi_json(call: http.Call) -> http.Reply:
    return http.reply(200, openapi.document())
