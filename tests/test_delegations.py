"""Delegations: granting, using, refusing and revoking, as an attacker would try them."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared import clock, ids, tokens
from tests.conftest import ROOT, Api, forged_delegation_id
from tests.reads import watch_reads

DEV_SEED = base64.urlsafe_b64decode((ROOT / "emulator-config/dev-capability-signing.key").read_text().strip() + "=")
REFUSED = {"error": "forbidden", "error_description": "The delegation does not allow this request."}


def token_for(agent_id: str, scopes: list[str], ttl: int = 300) -> str:
    return tokens.mint(DEV_SEED, "dev-1", agent_id, scopes, ttl, clock.now())


class World:
    """A grantor, a grantee and a bystander in one tenant, and an outsider in another."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.grantor = api.new_agent("grantor")
        self.grantee = api.new_agent("grantee")
        self.bystander = api.new_agent("bystander")
        self.outsider = api.new_agent("outsider", tenant_id="other")
        self.keys = {a: api.new_key(a)["device_key"] for a in (self.grantor, self.grantee, self.bystander)}

    def grant(self, scope: list[str], ttl: int = 600, **extra: Any) -> Any:
        body = {"to_agent": self.grantee, "scope": scope, "ttl_seconds": ttl, **extra}
        return self.api.device(self.keys[self.grantor], "delegate", body)

    def as_delegate(self, route: str, body: Any, delegation_id: str, key: str | None = None) -> Any:
        headers = {"x-agentpack-device-key": key or self.keys[self.grantee], "x-agentpack-delegation": delegation_id}
        return self.api.call(route, body, headers)


@pytest.fixture
def world(api: Api) -> World:
    return World(api)


def test_grant_answers_the_contract_fields_and_ignores_a_forged_grantor(world: World) -> None:
    answer = world.grant(["secrets/get", "secrets/put"], from_agent=world.bystander)
    assert answer.status_code == 201
    body = answer.get_json()
    assert set(body) == {"delegation_id", "from_agent", "to_agent", "scope", "created_at", "expires_at"}
    assert body["from_agent"] == world.grantor and body["to_agent"] == world.grantee
    assert body["scope"] == ["secrets/get", "secrets/put"]
    assert ids.DELEGATION_ID.fullmatch(body["delegation_id"])
    created = datetime.strptime(body["created_at"], "%Y-%m-%dT%H:%M:%SZ")
    assert datetime.strptime(body["expires_at"], "%Y-%m-%dT%H:%M:%SZ") - created == timedelta(seconds=600)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scope": [], "ttl_seconds": 600}, "scope"),
        ({"scope": ["agents/get"], "ttl_seconds": 600}, "scope"),
        ({"scope": ["delegate"], "ttl_seconds": 600}, "scope"),
        ({"scope": ["secrets/get", "secrets/get"], "ttl_seconds": 600}, "scope"),
        ({"scope": "secrets/get", "ttl_seconds": 600}, "scope"),
        ({"scope": ["secrets/get"], "ttl_seconds": 59}, "ttl_seconds"),
        ({"scope": ["secrets/get"], "ttl_seconds": 86401}, "ttl_seconds"),
        ({"scope": ["secrets/get"], "ttl_seconds": "600"}, "ttl_seconds"),
        ({"scope": ["secrets/get"], "ttl_seconds": True}, "ttl_seconds"),
        ({"scope": ["secrets/get"]}, "ttl_seconds"),
    ],
)
def test_grant_refuses_bad_scope_and_ttl(world: World, body: dict[str, Any], field: str) -> None:
    answer = world.api.device(world.keys[world.grantor], "delegate", {"to_agent": world.grantee, **body})
    assert answer.status_code == 400
    assert answer.get_json()["error"] == "invalid_request"
    assert answer.get_json()["error_description"].startswith(field)
    assert world.api.device(world.keys[world.grantor], "delegate/list", {}).get_json()["granted"] == []


def test_ttl_is_bounded_by_the_setting(world: World) -> None:
    assert world.api.bridge("settings/set", {"key": "delegation_max_ttl_seconds", "value": 120}).status_code == 200
    assert world.grant(["secrets/get"], ttl=121).status_code == 400
    assert world.grant(["secrets/get"], ttl=120).status_code == 201


def test_self_other_tenant_and_unknown_grantees(world: World) -> None:
    key = world.keys[world.grantor]
    to_self = world.api.device(
        key, "delegate", {"to_agent": world.grantor, "scope": ["secrets/get"], "ttl_seconds": 600}
    )
    assert to_self.status_code == 400
    other_tenant = world.api.device(
        key, "delegate", {"to_agent": world.outsider, "scope": ["secrets/get"], "ttl_seconds": 600}
    )
    never_made = world.api.device(
        key, "delegate", {"to_agent": ids.new_agent_id(), "scope": ["secrets/get"], "ttl_seconds": 600}
    )
    assert other_tenant.status_code == never_made.status_code == 404
    assert other_tenant.data == never_made.data


def test_only_an_agent_may_grant(world: World) -> None:
    answer = world.api.bridge("delegate", {"to_agent": world.grantee, "scope": ["secrets/get"], "ttl_seconds": 600})
    assert answer.status_code == 403


def test_a_delegate_acts_for_the_grantor_and_the_audit_names_both(world: World) -> None:
    delegation = world.grant(["secrets/put", "secrets/get"]).get_json()["delegation_id"]
    put = world.as_delegate("secrets/put", {"name": "db", "value": "for-the-grantor"}, delegation)
    assert put.status_code == 200, put.get_json()
    own = world.api.device(world.keys[world.grantor], "secrets/get", {"name": "db"})
    assert own.get_json()["value"] == "for-the-grantor"
    assert world.api.device(world.keys[world.grantee], "secrets/get", {"name": "db"}).status_code == 404
    events = world.api.bridge("audit/list", {"action": "secret.put"}).get_json()["events"]
    assert events[0]["actor"] == {"kind": "agent", "agent_id": world.grantee, "on_behalf_of": world.grantor}
    assert events[0]["target"]["agent_id"] == world.grantor
    assert events[0]["request_id"] == put.headers["x-request-id"]
    grant_events = world.api.bridge("audit/list", {"action": "delegation.grant"}).get_json()["events"]
    assert grant_events[0]["target"]["delegation_id"] == delegation


def test_a_delegate_is_refused_outside_the_scope_with_one_answer(world: World) -> None:
    delegation = world.grant(["secrets/get"]).get_json()["delegation_id"]
    out_of_scope = world.as_delegate("secrets/put", {"name": "x", "value": "v"}, delegation)
    not_delegable = world.as_delegate("agents/get", {}, delegation)
    one_hop = world.as_delegate(
        "delegate", {"to_agent": world.bystander, "scope": ["secrets/get"], "ttl_seconds": 600}, delegation
    )
    for answer in (out_of_scope, not_delegable, one_hop):
        assert answer.status_code == 403
        assert answer.get_json() == REFUSED
    assert world.api.device(world.keys[world.grantor], "secrets/list", {}).get_json()["secrets"] == []


def test_stolen_unknown_and_malformed_delegations_get_the_same_403(world: World) -> None:
    delegation = world.grant(["secrets/get"]).get_json()["delegation_id"]
    stolen = world.as_delegate("secrets/get", {"name": "x"}, delegation, key=world.keys[world.bystander])
    unknown = world.as_delegate("secrets/get", {"name": "x"}, forged_delegation_id(world.grantor))
    forged_grantor = world.as_delegate(
        "secrets/get", {"name": "x"}, "dlg_" + ids.agent_part(world.bystander) + delegation[-22:]
    )
    malformed = world.as_delegate("secrets/get", {"name": "x"}, "dlg_../../agents")
    for answer in (stolen, unknown, forged_grantor, malformed):
        assert answer.status_code == 403
        assert answer.data == stolen.data


def test_delegation_beside_the_bridge_key_or_twice_is_refused(world: World, api: Api) -> None:
    delegation = world.grant(["secrets/get"]).get_json()["delegation_id"]
    from tests.conftest import BRIDGE_KEY

    bridge = api.call(
        "secrets/get", {"name": "x"}, {"x-agentpack-key": BRIDGE_KEY, "x-agentpack-delegation": delegation}
    )
    assert bridge.status_code == 403
    twice = api.call(
        "secrets/get",
        {"name": "x"},
        [
            ("x-agentpack-device-key", world.keys[world.grantee]),
            ("x-agentpack-delegation", delegation),
            ("x-agentpack-delegation", delegation),
        ],  # type: ignore[arg-type]
    )
    assert twice.status_code == 403


def test_a_bad_grantee_credential_is_401_before_any_delegation_check(world: World) -> None:
    delegation = world.grant(["secrets/get"]).get_json()["delegation_id"]
    key = world.keys[world.grantee]
    answer = world.as_delegate(
        "secrets/get", {"name": "x"}, delegation, key=key[:-1] + ("A" if key[-1] != "A" else "B")
    )
    assert answer.status_code == 401


def test_expiry_revocation_and_disabling_take_effect_on_the_next_request(world: World, frozen_clock: Any) -> None:
    delegation = world.grant(["secrets/list"], ttl=60).get_json()["delegation_id"]
    assert world.as_delegate("secrets/list", {}, delegation).status_code == 200
    start = clock.now()
    frozen_clock(start + timedelta(seconds=59))
    assert world.as_delegate("secrets/list", {}, delegation).status_code == 200
    frozen_clock(start + timedelta(seconds=61))
    assert world.as_delegate("secrets/list", {}, delegation).get_json() == REFUSED
    frozen_clock(start)

    delegation = world.grant(["secrets/list"]).get_json()["delegation_id"]
    world.api.bridge("agents/update", {"agent_id": world.grantor, "disabled": True})
    assert world.as_delegate("secrets/list", {}, delegation).get_json() == REFUSED
    world.api.bridge("agents/update", {"agent_id": world.grantor, "disabled": False})
    assert world.as_delegate("secrets/list", {}, delegation).status_code == 200
    world.api.bridge("agents/update", {"agent_id": world.grantee, "disabled": True})
    assert world.as_delegate("secrets/list", {}, delegation).status_code == 401  # its own key is suspended
    world.api.bridge("agents/update", {"agent_id": world.grantee, "disabled": False})

    revoked = world.api.device(world.keys[world.grantor], "delegate/revoke", {"delegation_id": delegation})
    assert revoked.status_code == 200
    assert world.as_delegate("secrets/list", {}, delegation).get_json() == REFUSED


def test_who_may_revoke(world: World) -> None:
    first = world.grant(["secrets/get"]).get_json()["delegation_id"]
    second = world.grant(["secrets/get"]).get_json()["delegation_id"]
    third = world.grant(["secrets/get"]).get_json()["delegation_id"]
    by_bystander = world.api.device(world.keys[world.bystander], "delegate/revoke", {"delegation_id": first})
    never_made = world.api.device(
        world.keys[world.bystander], "delegate/revoke", {"delegation_id": forged_delegation_id(world.grantor)}
    )
    assert by_bystander.status_code == never_made.status_code == 404
    assert by_bystander.data == never_made.data
    assert world.as_delegate("secrets/get", {"name": "x"}, first).status_code == 404  # still usable: no such secret
    by_grantor = world.api.device(world.keys[world.grantor], "delegate/revoke", {"delegation_id": first})
    by_grantee = world.api.device(world.keys[world.grantee], "delegate/revoke", {"delegation_id": second})
    by_bridge = world.api.bridge("delegate/revoke", {"delegation_id": third})
    assert [a.status_code for a in (by_grantor, by_grantee, by_bridge)] == [200, 200, 200]
    again = world.api.device(world.keys[world.grantor], "delegate/revoke", {"delegation_id": first})
    assert again.get_json() == by_grantor.get_json()
    events = world.api.bridge("audit/list", {"action": "delegation.revoke"}).get_json()["events"]
    assert len(events) == 3
    assert {e["actor"]["kind"] for e in events} == {"agent", "bridge"}


def test_list_shows_granted_and_received(world: World) -> None:
    delegation = world.grant(["secrets/get"]).get_json()["delegation_id"]
    granted = world.api.device(world.keys[world.grantor], "delegate/list", {}).get_json()
    received = world.api.device(world.keys[world.grantee], "delegate/list", {}).get_json()
    assert [d["delegation_id"] for d in granted["granted"]] == [delegation] and granted["received"] == []
    assert [d["delegation_id"] for d in received["received"]] == [delegation] and received["granted"] == []
    assert world.api.device(world.keys[world.bystander], "delegate/list", {}).get_json() == {
        "granted": [],
        "received": [],
    }
    assert world.api.bridge("delegate/list", {}).status_code == 403


def test_a_delegated_request_costs_one_round_trip(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    delegation = world.grant(["secrets/get", "secrets/put"]).get_json()["delegation_id"]
    world.as_delegate("secrets/put", {"name": "db", "value": "v"}, delegation)
    reads = watch_reads(monkeypatch)
    answer = world.as_delegate("secrets/get", {"name": "db"}, delegation)
    assert answer.get_json()["value"] == "v"
    # Grantee, its key, the delegation and the grantor; the grantor's secret beside them, in flight at
    # the same time (one round trip of latency) and collected only once the delegation stands.
    assert reads.sizes() == [("start", 4), ("start", 1), ("collect", 4), ("collect", 1)]


def test_a_capability_token_can_carry_a_delegation(world: World) -> None:
    delegation = world.grant(["secrets/put", "secrets/get"]).get_json()["delegation_id"]
    token = token_for(world.grantee, ["secrets/put"])
    headers = {"authorization": f"Bearer {token}", "x-agentpack-delegation": delegation}
    assert world.api.call("secrets/put", {"name": "t", "value": "v"}, headers).status_code == 200
    # The token's own scope still binds: it does not name secrets/get.
    assert world.api.call("secrets/get", {"name": "t"}, headers).status_code == 403
    world.api.bridge("agents/update", {"agent_id": world.grantee, "disabled": True})
    assert world.api.call("secrets/put", {"name": "t", "value": "v"}, headers).status_code == 401  # its own credential


def test_a_superseded_key_or_a_token_may_not_mint_or_revoke(world: World, api: Api) -> None:
    """A thief holding a key the owner rotated away keeps only ordinary access during the grace window."""
    owner = world.grantor
    old_key = world.keys[owner]
    old_id = api.bridge("device/list", {"agent_id": owner}).get_json()["keys"][0]["key_id"]
    rotated = api.device(old_key, "device/issue", {"replaces_key_id": old_id}).get_json()
    assert api.device(old_key, "agents/get", {}).status_code == 200  # still in its grace window
    grant = {"to_agent": world.grantee, "scope": ["secrets/get"], "ttl_seconds": 600}
    attempts = [
        api.device(old_key, "delegate", grant),
        api.device(old_key, "device/revoke", {"key_id": rotated["key_id"]}),
        api.device(old_key, "device/issue", {}),
        api.call("delegate", grant, {"authorization": "Bearer " + token_for(owner, ["delegate"])}),
        api.call("device/issue", {}, {"authorization": "Bearer " + token_for(owner, ["device/issue"])}),
    ]
    for answer in attempts:
        assert answer.status_code == 403, answer.get_json()
    assert api.device(rotated["device_key"], "agents/get", {}).status_code == 200
    assert api.device(rotated["device_key"], "delegate/list", {}).get_json()["granted"] == []
    assert len(api.bridge("device/list", {"agent_id": owner}).get_json()["keys"]) == 2


def test_a_capability_token_alone_is_bounded_by_its_scope(world: World) -> None:
    token = token_for(world.grantor, ["agents/get"])
    answer = world.api.call("agents/get", {}, {"authorization": f"Bearer {token}"})
    assert answer.status_code == 200 and answer.get_json()["agent_id"] == world.grantor
    assert world.api.call("device/list", {}, {"authorization": f"Bearer {token}"}).status_code == 403
    expired = tokens.mint(DEV_SEED, "dev-1", world.grantor, ["agents/get"], 60, datetime.now(UTC) - timedelta(hours=1))
    assert world.api.call("agents/get", {}, {"authorization": f"Bearer {expired}"}).status_code == 401
