"""POST /secrets/list: the names and versions of an agent's secrets, never their values."""

from shared import credentials, http, secrets


@http.endpoint("secrets/list")
def secrets_list(call: http.Call) -> http.Reply:
    principal = credentials.resolve(call, agent_record=True)
    call.body(secrets.ListSecrets)
    return http.reply(200, secrets.list_names(principal))
