"""POST /capability/record: record the claims (never the token) of an offline-minted capability token. Bridge only."""

from shared import capabilities, credentials, http


@http.endpoint("capability/record")
def capability_record(call: http.Call) -> http.Reply:
    principal = credentials.resolve(call)
    principal.require_bridge()
    body = call.body(capabilities.Record)
    return http.reply(201, capabilities.record(body, principal))
