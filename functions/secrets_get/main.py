"""POST /secrets/get: one secret's value. The agent itself, its capability token, or its delegate."""

from shared import credentials, http, secrets


@http.endpoint("secrets/get")
def secrets_get(call: http.Call) -> http.Reply:
    hint = call.peek(secrets.Get)  # names the record, so it is read beside the credential in one round trip
    principal = credentials.resolve(call, also_read=secrets.record_named(hint.name if hint else None))
    body = call.body(secrets.Get)
    return http.reply(200, secrets.get(body, principal))
