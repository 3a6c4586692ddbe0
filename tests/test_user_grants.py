"""``delegate_of`` grants (issue 10): users/delegate, users/delegate/revoke, users/delegate/list."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from shared import ids
from tests.conftest import BRIDGE_KEY, Api
from tests.people import People
from tests.test_delegations import token_for

BRIDGE = {"x-agentpack-key": BRIDGE_KEY}
MAX_DEFAULT = 7776000  # user_delegation_max_ttl_seconds' default


@pytest.fixture
def people(api: Api, auth_emulator: str) -> People:
    return People(api, auth_emulator)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_a_user_grants_an_agent_of_its_tenant(people: People, api: Api) -> None:
    ada, agent = people.user(), people.agent()
    answer = people.as_user(ada, "users/delegate", {"agent_id": agent.agent_id, "actions": ["write", "read"]})
    assert answer.status_code == 201, answer.get_json()
    grant = answer.get_json()
    assert set(grant) == {"grant_id", "user_id", "agent_id", "actions", "created_at", "expires_at"}
    assert grant["grant_id"] == ids.grant_id_of(ada.user_id, agent.agent_id)
    assert ids.parties_of_grant(grant["grant_id"]) == (ada.user_id, agent.agent_id)
    assert (grant["user_id"], grant["agent_id"], grant["actions"]) == (ada.user_id, agent.agent_id, ["read", "write"])
    assert at(grant["expires_at"]) - at(grant["created_at"]) == timedelta(seconds=MAX_DEFAULT)  # default: the max
    [event] = people.events("user_delegation.grant")
    assert event["actor"] == {"kind": "user", "user_id": ada.user_id}
    assert event["target"]["grant_id"] == grant["grant_id"] and event["target"]["actions"] == ["read", "write"]


def test_granting_again_replaces_the_one_grant(people: People, api: Api, frozen_clock: Any) -> None:
    ada, agent = people.user(), people.agent()
    first = people.grant(ada, agent, ["read", "write", "delete", "share"], ttl_seconds=60)
    second = people.grant(ada, agent, ["read"], ttl_seconds=3600)
    assert first["grant_id"] == second["grant_id"]
    [listed] = people.as_user(ada, "users/delegate/list").get_json()["grants"]
    assert listed["actions"] == ["read"] and listed["expires_at"] == second["expires_at"]
    assert len(people.events("user_delegation.grant")) == 2
    # Replacing a revoked grant makes it live again.
    assert people.as_user(ada, "users/delegate/revoke", {"grant_id": first["grant_id"]}).status_code == 200
    people.grant(ada, agent, ["read"])
    [listed] = people.as_user(ada, "users/delegate/list").get_json()["grants"]
    assert listed["revoked_at"] is None


@pytest.mark.parametrize(
    "body",
    [
        {"actions": []},
        {"actions": ["read", "read"]},
        {"actions": ["read", "admin"]},
        {"actions": ["READ"]},
        {"actions": "read"},
        {"actions": ["read"], "ttl_seconds": 0},
        {"actions": ["read"], "ttl_seconds": -5},
        {"actions": ["read"], "ttl_seconds": MAX_DEFAULT + 1},
        {"actions": ["read"], "ttl_seconds": "60"},
        {"actions": ["read"], "ttl_seconds": True},
        {"actions": ["read"], "unknown": 1},
    ],
)
def test_grant_bodies_are_checked(people: People, body: dict[str, Any]) -> None:
    ada, agent = people.user(), people.agent()
    answer = people.as_user(ada, "users/delegate", {"agent_id": agent.agent_id, **body})
    assert answer.status_code == 400 and answer.get_json()["error"] == "invalid_request", answer.get_json()
    assert people.as_user(ada, "users/delegate/list").get_json()["grants"] == []


def test_ttl_bounds_follow_the_setting(people: People, api: Api) -> None:
    ada, agent = people.user(), people.agent()
    assert api.bridge("settings/set", {"key": "user_delegation_max_ttl_seconds", "value": 3600}).status_code == 200
    too_long = people.as_user(
        ada, "users/delegate", {"agent_id": agent.agent_id, "actions": ["read"], "ttl_seconds": 3601}
    )
    assert too_long.status_code == 400
    shortest = people.grant(ada, agent, ["read"], ttl_seconds=1)
    assert at(shortest["expires_at"]) - at(shortest["created_at"]) == timedelta(seconds=1)
    longest = people.grant(ada, agent, ["read"], ttl_seconds=3600)
    assert at(longest["expires_at"]) - at(longest["created_at"]) == timedelta(seconds=3600)
    default = people.grant(ada, agent, ["read"])
    assert at(default["expires_at"]) - at(default["created_at"]) == timedelta(seconds=3600)


def test_an_agent_of_another_tenant_or_unknown_is_404(people: People, api: Api) -> None:
    ada = people.user(tenant_id="acme")
    theirs = people.agent(tenant_id="evil")
    answers = [
        people.as_user(ada, "users/delegate", {"agent_id": theirs.agent_id, "actions": ["read"]}),
        people.as_user(ada, "users/delegate", {"agent_id": "agt_" + "0" * 22, "actions": ["read"]}),
    ]
    assert [a.status_code for a in answers] == [404, 404]
    assert answers[0].get_data() == answers[1].get_data()
    bridge = api.bridge("users/delegate", {"user_id": ada.user_id, "agent_id": theirs.agent_id, "actions": ["read"]})
    assert bridge.status_code == 404
    assert people.events("user_delegation.grant") == []


def test_the_bridge_grants_for_a_named_user(people: People, api: Api) -> None:
    ada, agent = people.user(), people.agent()
    missing = api.bridge("users/delegate", {"agent_id": agent.agent_id, "actions": ["read"]})
    assert missing.status_code == 400 and "user_id" in missing.get_json()["error_description"]
    unknown = api.bridge(
        "users/delegate", {"user_id": "usr_" + "0" * 22, "agent_id": agent.agent_id, "actions": ["read"]}
    )
    assert unknown.status_code == 404
    answer = api.bridge("users/delegate", {"user_id": ada.user_id, "agent_id": agent.agent_id, "actions": ["share"]})
    assert answer.status_code == 201 and answer.get_json()["user_id"] == ada.user_id
    [event] = people.events("user_delegation.grant")
    assert event["actor"] == {"kind": "bridge"}


def test_a_user_always_grants_for_itself(people: People, api: Api) -> None:
    ada, bob, agent = people.user(), people.user(), people.agent()
    answer = people.as_user(
        ada, "users/delegate", {"user_id": bob.user_id, "agent_id": agent.agent_id, "actions": ["read"]}
    )
    # The body's user_id is the bridge's; a user always grants for itself, never for bob.
    assert answer.status_code == 201 and answer.get_json()["user_id"] == ada.user_id, answer.get_json()
    assert people.as_user(bob, "users/delegate/list").get_json()["grants"] == []


def test_an_agent_may_not_grant(people: People, api: Api) -> None:
    ada, agent = people.user(), people.agent()
    other = people.agent()
    body = {"user_id": ada.user_id, "agent_id": other.agent_id, "actions": ["read"]}
    answer = api.device(agent.key, "users/delegate", body)
    assert answer.status_code == 403 and answer.get_json()["error"] == "forbidden"
    assert api.device(agent.key, "users/delegate", {**body, "agent_id": agent.agent_id}).status_code == 403
    assert people.as_user(ada, "users/delegate/list").get_json()["grants"] == []


def test_revoke_by_the_user_the_agent_or_the_bridge(people: People, api: Api) -> None:
    ada, agent = people.user(), people.agent()
    revokers = {"user": ada.headers, "agent": {"x-agentpack-device-key": agent.key}, "bridge": BRIDGE}
    for who, headers in revokers.items():
        grant_id = people.grant(ada, agent, ["read"])["grant_id"]
        answer = api.call("users/delegate/revoke", {"grant_id": grant_id}, headers)
        assert answer.status_code == 200, (who, answer.get_json())
        assert answer.get_json()["grant_id"] == grant_id and answer.get_json()["revoked_at"].endswith("Z")
        [listed] = people.as_user(ada, "users/delegate/list").get_json()["grants"]
        assert listed["revoked_at"] == answer.get_json()["revoked_at"], who
        again = api.call(
            "users/delegate/revoke", {"grant_id": grant_id}, headers
        )  # idempotent: the first revocation time stands
        assert again.status_code == 200 and again.get_json()["revoked_at"] == answer.get_json()["revoked_at"]
    events = people.events("user_delegation.revoke")
    assert [e["actor"]["kind"] for e in events] == ["bridge", "agent", "user"]  # one per revocation, newest first
    assert all(e["target"]["grant_id"] == ids.grant_id_of(ada.user_id, agent.agent_id) for e in events)


def test_a_stranger_cannot_revoke_and_learns_nothing(people: People, api: Api) -> None:
    ada, bob = people.user(), people.user()
    agent, stranger = people.agent(), people.agent()
    grant_id = people.grant(ada, agent, ["read"])["grant_id"]
    never = ids.grant_id_of(bob.user_id, stranger.agent_id)
    for headers in (bob.headers, {"x-agentpack-device-key": stranger.key}):
        refused = api.call("users/delegate/revoke", {"grant_id": grant_id}, headers)
        unknown = api.call("users/delegate/revoke", {"grant_id": never}, headers)
        assert refused.status_code == 404 and refused.get_data() == unknown.get_data()
    assert people.as_user(ada, "users/delegate/revoke", {"grant_id": "ugr_nope"}).status_code == 404
    assert api.bridge("users/delegate/revoke", {"grant_id": never}).status_code == 404
    [listed] = people.as_user(ada, "users/delegate/list").get_json()["grants"]
    assert listed["revoked_at"] is None


def test_tokens_may_not_revoke(people: People, api: Api) -> None:
    ada = people.user()
    agent = people.agent(scopes=["users/delegate/revoke", "authz:check", "read", "write"])
    grant_id = people.grant(ada, agent, ["read"])["grant_id"]
    capability = token_for(agent.agent_id, ["users/delegate/revoke"])
    answer = api.call("users/delegate/revoke", {"grant_id": grant_id}, {"authorization": f"Bearer {capability}"})
    assert answer.status_code == 403, answer.get_json()
    form = {"grant_type": "client_credentials", "client_id": agent.agent_id, "client_secret": agent.key}
    from tests.conftest import function_client

    issued = function_client("oauth_token").post("/", data=form)
    assert issued.status_code == 200, issued.get_json()
    access = issued.get_json()["access_token"]
    assert "users/delegate/revoke" in issued.get_json()["scope"].split()
    answer = api.call("users/delegate/revoke", {"grant_id": grant_id}, {"authorization": f"Bearer {access}"})
    assert answer.status_code == 403, answer.get_json()
    [listed] = people.as_user(ada, "users/delegate/list").get_json()["grants"]
    assert listed["revoked_at"] is None


def test_list_shows_a_users_grants_and_an_agents(people: People, api: Api) -> None:
    ada, bob = people.user(), people.user()
    one, two = people.agent(), people.agent()
    g1 = people.grant(ada, one, ["read"])["grant_id"]
    g2 = people.grant(ada, two, ["write"])["grant_id"]
    g3 = people.grant(bob, one, ["delete"])["grant_id"]
    mine = people.as_user(ada, "users/delegate/list").get_json()["grants"]
    assert sorted(g["grant_id"] for g in mine) == sorted([g1, g2])
    assert set(mine[0]) == {"grant_id", "user_id", "agent_id", "actions", "created_at", "expires_at", "revoked_at"}
    held = api.device(one.key, "users/delegate/list", {}).get_json()["grants"]
    assert sorted(g["grant_id"] for g in held) == sorted([g1, g3])
    assert [g["grant_id"] for g in api.device(two.key, "users/delegate/list", {}).get_json()["grants"]] == [g2]
    assert api.bridge("users/delegate/list", {}).status_code == 403
    assert people.as_user(ada, "users/delegate/list", {"user_id": bob.user_id}).status_code == 400  # strict body
