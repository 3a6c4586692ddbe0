"""POST /secrets/delete: delete a secret. The agent itself, its capability token, or its delegate."""

from shared import credentials, http, secrets


@http.endpoint("secrets/delete")
def secrets_delete(call: http.Call) -> http.Reply:
    principal = credentials.resolve(call, agent_record=True)
    body = call.body(secrets.Delete)
    return http.reply(200, secrets.delete(body, principal))
