"""POST /secrets/put: store a new version of a secret. The agent itself, its capability token, or its delegate."""

from shared import credentials, http, secrets


@http.endpoint("secrets/put")
def secrets_put(call: http.Call) -> http.Reply:
    principal = credentials.resolve(call, agent_record=True)
    body = call.body(secrets.Put)
    return http.reply(200, secrets.put(body, principal))
