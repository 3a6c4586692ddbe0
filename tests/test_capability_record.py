"""capability/record: the claims of a minted token, never the token, with its audit event."""

from __future__ import annotations

from typing import Any

import pytest

from shared import clock, ids, store
from tests.conftest import Api
from tests.test_delegations import token_for


def claims(agent_id: str, **override: Any) -> dict[str, Any]:
    now = int(clock.now().timestamp())
    return {
        "jti": "tok-1",
        "sub": agent_id,
        "scope": "secrets/get",
        "iat": now,
        "exp": now + 300,
        "kid": "dev-1",
        **override,
    }


def test_record_once_then_conflict(api: Api) -> None:
    agent_id = api.new_agent()
    first = api.bridge("capability/record", claims(agent_id))
    assert first.status_code == 201
    assert set(first.get_json()) == {"jti", "recorded_at"} and first.get_json()["jti"] == "tok-1"
    again = api.bridge("capability/record", claims(agent_id, scope="secrets/put"))
    assert again.status_code == 409 and again.get_json()["error"] == "conflict"
    stored = store.client().document("capability_tokens/j_tok-1").get().to_dict()
    assert stored is not None and stored["scope"] == "secrets/get"
    events = api.bridge("audit/list", {"action": "capability.record"}).get_json()["events"]
    assert len(events) == 1
    assert events[0]["target"] == {
        "kind": "capability",
        "jti": "tok-1",
        "agent_id": agent_id,
        "kid": "dev-1",
        "scope": "secrets/get",
    }


def test_only_the_bridge_may_record(api: Api) -> None:
    agent_id = api.new_agent()
    key = api.new_key(agent_id)["device_key"]
    assert api.device(key, "capability/record", claims(agent_id)).status_code == 403
    token = token_for(agent_id, ["capability/record"])
    assert api.call("capability/record", claims(agent_id), {"authorization": f"Bearer {token}"}).status_code == 403
    assert store.client().document("capability_tokens/j_tok-1").get().exists is False


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"jti": "a/b"}, "jti"),
        ({"jti": ""}, "jti"),
        ({"iat": True}, "iat"),
        ({"exp": "1"}, "exp"),
        ({"exp": 1.5}, "exp"),
        ({"scope": ""}, "scope"),
        ({"scope": "secrets/get  secrets/put"}, "scope"),
        ({"kid": "../k"}, "kid"),
        ({"token": "eyJ..."}, "unknown field 'token'"),
    ],
)
def test_bad_claims_are_refused(api: Api, override: dict[str, Any], field: str) -> None:
    answer = api.bridge("capability/record", claims(api.new_agent(), **override))
    assert answer.status_code == 400
    assert answer.get_json()["error_description"].startswith(field)
    assert api.bridge("audit/list", {"action": "capability.record"}).get_json()["events"] == []


def test_exp_before_iat_and_unknown_agents(api: Api) -> None:
    agent_id = api.new_agent()
    backwards = api.bridge("capability/record", claims(agent_id, exp=1, iat=2))
    assert backwards.status_code == 400
    unknown = api.bridge("capability/record", claims(ids.new_agent_id()))
    not_ours = api.bridge("capability/record", claims("someone-else"))
    assert unknown.status_code == not_ours.status_code == 404
    assert unknown.data == not_ours.data


@pytest.mark.parametrize("jti", [".", "..", "__reserved__", "a" * 128])
def test_odd_but_legal_jtis_are_recorded(api: Api, jti: str) -> None:
    answer = api.bridge("capability/record", claims(api.new_agent(), jti=jti))
    assert answer.status_code == 201 and answer.get_json()["jti"] == jti


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"kid": "never-configured"}, "kid"),
        ({"exp_after": 301}, "exp"),  # one second over capability_max_ttl_seconds (300)
        ({"exp_after": 10**9}, "exp"),
    ],
)
def test_claims_no_token_could_carry_are_refused(api: Api, override: dict[str, Any], field: str) -> None:
    agent_id = api.new_agent()
    body = claims(agent_id)
    if "exp_after" in override:
        body["exp"] = body["iat"] + override.pop("exp_after")
    body.update(override)
    answer = api.bridge("capability/record", body)
    assert answer.status_code == 400, answer.get_json()
    assert answer.get_json()["error_description"].startswith(field)
    assert store.client().document(f"capability_tokens/j_{body['jti']}").get().exists is False
