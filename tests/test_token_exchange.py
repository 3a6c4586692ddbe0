"""RFC 8693 token exchange (issue 10): an agent trades its user's Firebase ID token for a token to act for them."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import pytest

from shared import clock, config
from tests.conftest import Api, function_client
from tests.people import (
    ACCESS_TOKEN_TYPE,
    ID_TOKEN_TYPE,
    TOKEN_EXCHANGE,
    Agent,
    People,
    User,
    claims_of,
    sign_up,
)


@pytest.fixture
def people(api: Api, auth_emulator: str) -> People:
    return People(api, auth_emulator)


def error_of(answer: Any, status: int = 400) -> str:
    assert answer.status_code == status, (answer.status_code, answer.get_json())
    return str(answer.get_json()["error"])


def pair(people: People, actions: list[str] | None = None) -> tuple[User, Agent]:
    user, agent = people.user(), people.agent()
    if actions:
        people.grant(user, agent, actions)
    return user, agent


def test_the_issued_token(people: People, api: Api) -> None:
    user, agent = pair(people, ["read", "write"])
    answer = people.exchange(agent, user.token)
    assert answer.status_code == 200, answer.get_json()
    assert answer.headers["Cache-Control"] == "no-store"
    body = answer.get_json()
    assert body["issued_token_type"] == ACCESS_TOKEN_TYPE and body["token_type"] == "Bearer"
    assert body["scope"] == "read write" and body["expires_in"] == 900 and "refresh_token" not in body
    claims = claims_of(body["access_token"])
    grant_id = people.as_user(user, "users/delegate/list").get_json()["grants"][0]["grant_id"]
    assert claims["sub"] == user.user_id and claims["act"] == {"sub": agent.agent_id}
    assert claims["client_id"] == agent.agent_id and claims["tenant_id"] == "default"
    assert claims["aud"] == config.issuer() and claims["iss"] == config.issuer()
    assert claims["grant_id"] == grant_id and claims["scope"] == "read write"
    assert claims["exp"] - claims["iat"] == 900
    narrow = people.exchange(agent, user.token, scope="write", resource="https://docs.example.com")
    assert narrow.status_code == 200, narrow.get_json()
    narrowed = claims_of(narrow.get_json()["access_token"])
    assert narrowed["scope"] == "write" and narrowed["aud"] == "https://docs.example.com"
    [second, first] = people.events("token.issue")
    assert first["target"]["user_id"] == user.user_id and first["target"]["grant_id"] == grant_id
    assert first["target"]["grant_type"] == "urn:ietf:params:oauth:grant-type:token-exchange"
    assert first["actor"] == {"kind": "agent", "agent_id": agent.agent_id}
    assert first["target"]["jti"] == claims["jti"] and second["target"]["jti"] == narrowed["jti"]
    assert body["access_token"] not in str(first)


def test_introspection_follows_the_grant_and_the_user(people: People, api: Api, frozen_clock: Any) -> None:
    user, agent = pair(people, ["read"])
    start = clock.now()
    frozen_clock(start)
    token = people.exchanged(agent, user)
    found = people.introspect(token)
    assert found["active"] is True and found["sub"] == user.user_id and found["act"] == {"sub": agent.agent_id}
    assert found["scope"] == "read" and found["token_type"] == "Bearer" and found["tenant_id"] == "default"
    people.disable_user(user)
    assert people.introspect(token) == {"active": False}
    people.disable_user(user, disabled=False)
    assert people.introspect(token)["active"] is True
    grant_id = people.as_user(user, "users/delegate/list").get_json()["grants"][0]["grant_id"]
    assert people.as_user(user, "users/delegate/revoke", {"grant_id": grant_id}).status_code == 200
    assert people.introspect(token) == {"active": False}
    frozen_clock(start + timedelta(seconds=5))
    people.grant(user, agent, ["read"])  # a new grant: the token of the revoked one stays inactive
    assert people.introspect(token) == {"active": False}


def test_no_grant_revoked_or_expired_is_invalid_request(people: People, api: Api, frozen_clock: Any) -> None:
    user, agent = pair(people)
    assert error_of(people.exchange(agent, user.token)) == "invalid_request"
    grant = people.grant(user, agent, ["read"], ttl_seconds=60)
    assert people.exchange(agent, user.token).status_code == 200
    frozen_clock(clock.now() + timedelta(seconds=61))
    assert error_of(people.exchange(agent, user.token)) == "invalid_request"
    clock.set_source(None)
    assert people.exchange(agent, user.token).status_code == 200
    assert people.as_user(user, "users/delegate/revoke", {"grant_id": grant["grant_id"]}).status_code == 200
    answer = people.exchange(agent, user.token)
    assert error_of(answer) == "invalid_request"
    # Another agent's grant does not serve this one.
    other = people.agent()
    people.grant(user, other, ["read"])
    assert error_of(people.exchange(agent, user.token)) == "invalid_request"
    assert people.exchange(other, user.token).status_code == 200


def test_bad_subject_tokens_are_invalid_request(people: People, api: Api) -> None:
    user, agent = pair(people, ["read"])
    stranger = people.user(tenant_id="evil")
    _, unregistered = sign_up(people.auth_host)
    exchanged = people.exchanged(agent, user)
    cases = {
        "another tenant's user": people.exchange(agent, stranger.token),
        "unregistered account": people.exchange(agent, unregistered),
        "garbage": people.exchange(agent, "garbage"),
        "an access token as an id_token": people.exchange(agent, exchanged),
        "a second hop": people.exchange(agent, exchanged, subject_token_type=ACCESS_TOKEN_TYPE),
        "an unknown token type": people.exchange(agent, user.token, subject_token_type="urn:x"),
        "no subject token": people.exchange(agent, "", subject_token_type=""),
    }
    people.disable_user(user)
    cases["a disabled user"] = people.exchange(agent, user.token)
    wrong = {name: (a.status_code, a.get_json()) for name, a in cases.items() if a.status_code != 400}
    wrong.update({name: a.get_json() for name, a in cases.items() if a.get_json()["error"] != "invalid_request"})
    assert not wrong, wrong
    assert len(people.events("token.issue")) == 1  # the one exchanged above


def test_a_second_hop_with_the_agents_own_token_is_refused(people: People) -> None:
    _user, agent = pair(people, ["read"])
    form = {"grant_type": "client_credentials", "client_id": agent.agent_id, "client_secret": agent.key}
    own = function_client("oauth_token").post("/", data=form).get_json()["access_token"]
    answer = people.exchange(agent, own, subject_token_type=ACCESS_TOKEN_TYPE)
    assert error_of(answer) == "invalid_request"


def test_a_scope_wider_than_the_grant_is_invalid_scope(people: People) -> None:
    user, agent = pair(people, ["read"])
    for scope in ("read write", "share", "admin", "read authz:check"):
        assert error_of(people.exchange(agent, user.token, scope=scope)) == "invalid_scope", scope
    assert claims_of(people.exchanged(agent, user, scope="read"))["scope"] == "read"


def test_client_authentication(people: People, api: Api) -> None:
    user, agent = pair(people, ["read"])
    other = people.agent()
    cases = {
        "no client authentication": people.exchange(None, user.token),
        "another agent's key": people.exchange(agent, user.token, client_secret=other.key),
        "a made-up key": people.exchange(agent, user.token, client_secret="apkd_notakey"),
    }
    for name, answer in cases.items():
        assert error_of(answer, 401) == "invalid_client", name
    wrong = base64.b64encode(f"{agent.agent_id}:{other.key}".encode()).decode()
    basic = function_client("oauth_token").post(
        "/",
        data={"grant_type": TOKEN_EXCHANGE, "subject_token": user.token, "subject_token_type": ID_TOKEN_TYPE},
        headers={"authorization": f"Basic {wrong}"},
    )
    assert error_of(basic, 401) == "invalid_client" and basic.headers["WWW-Authenticate"].startswith("Basic")
    assert api.bridge("device/revoke", {"key_id": agent.key_id}).status_code == 200
    assert error_of(people.exchange(agent, user.token), 401) == "invalid_client"
    fresh = api.new_key(agent.agent_id)
    rekeyed = Agent(agent.agent_id, fresh["device_key"], fresh["key_id"], agent.tenant_id)
    assert people.exchange(rekeyed, user.token).status_code == 200
    people.disable_agent(rekeyed)
    assert error_of(people.exchange(rekeyed, user.token), 401) == "invalid_client"
    assert people.events("token.issue")[0]["target"]["agent_id"] == agent.agent_id
    assert len(people.events("token.issue")) == 1


def test_a_public_agent_is_unauthorized_client(people: People, api: Api) -> None:
    user = people.user()
    created = api.bridge("agents/create", {"display_name": "cli", "public": True})
    assert created.status_code == 201, created.get_json()
    public_id = created.get_json()["agent_id"]
    grant = people.as_user(user, "users/delegate", {"agent_id": public_id, "actions": ["read"]})
    assert grant.status_code == 201, grant.get_json()
    answer = function_client("oauth_token").post(
        "/",
        data={
            "grant_type": TOKEN_EXCHANGE,
            "client_id": public_id,
            "subject_token": user.token,
            "subject_token_type": ID_TOKEN_TYPE,
        },
    )
    assert error_of(answer) == "unauthorized_client"


def test_an_exchanged_token_is_no_credential_for_routes(people: People, api: Api) -> None:
    user, agent = pair(people, ["read"])
    token = people.exchanged(agent, user)
    for route in ("users/get", "users/delegate/list", "agents/get", "authz/check"):
        answer = api.call(route, {}, {"authorization": f"Bearer {token}"})
        assert answer.status_code in (401, 403), (route, answer.get_json())


def test_an_exchanged_token_stands_on_the_key_the_agent_used(people: People, api: Api) -> None:
    user, agent = pair(people, ["read"])
    token = people.exchanged(agent, user)
    outsider = people.agent(tenant_id="evil")
    form = {"token": token, "client_id": outsider.agent_id, "client_secret": outsider.key}
    foreign = function_client("oauth_introspect").post("/", data=form)
    assert foreign.status_code == 200 and foreign.get_json() == {"active": False}  # another tenant's client
    assert api.bridge("device/revoke", {"key_id": agent.key_id}).status_code == 200
    assert people.introspect(token) == {"active": False}


def test_a_token_for_a_user_never_exceeds_the_agents_own_scopes(people: People) -> None:
    user = people.user()
    agent = people.agent(scopes=["read"])  # may read, never write
    people.grant(user, agent, ["read", "write"])
    assert error_of(people.exchange(agent, user.token, scope="write")) == "invalid_scope"
    assert claims_of(people.exchanged(agent, user))["scope"] == "read"
