"""Agents, attacked: creation, reading, paging, updating, who may call, strict bodies and the audit trail."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared import ids
from tests.conftest import BRIDGE_KEY

T0 = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
AGENT_FIELDS = {"agent_id", "display_name", "tenant_id", "created_at", "disabled", "scopes", "public"}
AGENT_ID = re.compile(r"agt_[0-9A-Za-z]{22}")
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
NOT_FOUND = b'{"error":"not_found","error_description":"No such object."}'
BRIDGE_ONLY = {"error": "forbidden", "error_description": "Only the bridge key may do this."}
UNAUTHENTICATED = b'{"error":"unauthenticated","error_description":"A valid credential is required."}'
ACTIONS = ("agent.create", "agent.update", "device.issue", "device.rotate", "device.revoke", "setting.set")


def events(api: Any, action: str, **filters: Any) -> list[dict[str, Any]]:
    answer = api.bridge("audit/list", {"action": action, **filters})
    assert answer.status_code == 200, answer.get_json()
    return list(answer.get_json()["events"])


def event_count(api: Any) -> int:
    return sum(len(events(api, action)) for action in ACTIONS)


def assert_invalid(answer: Any, field: str) -> None:
    assert answer.status_code == 400, answer.get_json()
    body = answer.get_json()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == "invalid_request"
    assert body["error_description"].startswith(field), body


def all_agents(api: Any) -> list[dict[str, Any]]:
    answer = api.bridge("agents/list", {"page_size": 200})
    assert answer.status_code == 200
    return list(answer.get_json()["agents"])


# --- create ------------------------------------------------------------------------------------------


def test_create_answers_exactly_the_agent(api, frozen_clock):
    frozen_clock(T0)
    answer = api.bridge("agents/create", {"display_name": "build bot"})
    assert answer.status_code == 201
    body = answer.get_json()
    assert set(body) == AGENT_FIELDS
    assert AGENT_ID.fullmatch(body["agent_id"])
    assert body["display_name"] == "build bot"
    assert body["tenant_id"] == "default"
    assert body["created_at"] == "2026-11-22T10:00:00Z"
    assert body["disabled"] is False
    assert answer.headers["Cache-Control"] == "no-store"


def test_create_in_a_tenant_and_read_back(api):
    answer = api.bridge("agents/create", {"display_name": "ops", "tenant_id": "acme.prod-1_x"})
    assert answer.status_code == 201
    created = answer.get_json()
    assert created["tenant_id"] == "acme.prod-1_x"
    got = api.bridge("agents/get", {"agent_id": created["agent_id"]})
    assert got.status_code == 200
    assert got.get_json() == created


def test_two_creates_make_two_distinct_agents(api):
    first = api.new_agent("same")
    second = api.new_agent("same")
    assert first != second
    assert {a["agent_id"] for a in all_agents(api)} == {first, second}


def test_create_records_its_audit_event_with_the_request_id(api):
    answer = api.call(
        "agents/create",
        {"display_name": "audited", "tenant_id": "t1"},
        {"x-agentpack-key": BRIDGE_KEY, "x-request-id": "trace-0001:abc"},
    )
    assert answer.status_code == 201
    assert answer.headers["x-request-id"] == "trace-0001:abc"
    agent_id = answer.get_json()["agent_id"]
    (event,) = events(api, "agent.create")
    assert set(event) == {"event_id", "at", "category", "action", "actor", "target", "request_id"}
    assert event["category"] == "auth"
    assert event["actor"] == {"kind": "bridge"}
    assert event["target"]["kind"] == "agent"
    assert event["target"]["agent_id"] == agent_id
    assert event["target"]["tenant_id"] == "t1"
    assert event["request_id"] == "trace-0001:abc"
    assert RFC3339.fullmatch(event["at"])
    assert events(api, "agent.create", agent_id=agent_id) == [event]


def test_create_without_a_request_id_uses_the_generated_one(api):
    answer = api.bridge("agents/create", {"display_name": "x"})
    assert answer.status_code == 201
    request_id = answer.headers["x-request-id"]
    assert request_id
    (event,) = events(api, "agent.create")
    assert event["request_id"] == request_id


@pytest.mark.parametrize("sent", ["has spaces", "x" * 129, "semi;colon", "new\u00e9"])
def test_an_insane_request_id_is_replaced_and_the_event_carries_the_replacement(api, sent):
    answer = api.call("agents/create", {"display_name": "x"}, {"x-agentpack-key": BRIDGE_KEY, "x-request-id": sent})
    assert answer.status_code == 201
    used = answer.headers["x-request-id"]
    assert used and used != sent
    (event,) = events(api, "agent.create")
    assert event["request_id"] == used


def test_audit_list_without_a_filter_answers(api):
    """/audit/list with no filter is the most ordinary call an operator makes."""
    agent_id = api.new_agent()
    answer = api.bridge("audit/list", {})
    assert answer.status_code == 200, answer.get_json()
    listed = answer.get_json()["events"]
    assert [e["action"] for e in listed] == ["agent.create"]
    assert listed[0]["target"]["agent_id"] == agent_id


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "display_name"),
        ({"display_name": ""}, "display_name"),
        ({"display_name": "x" * 129}, "display_name"),
        ({"display_name": "a\x00b"}, "display_name"),
        ({"display_name": "line\nbreak"}, "display_name"),
        ({"display_name": "tab\there"}, "display_name"),
        ({"display_name": "del\x7f"}, "display_name"),
        ({"display_name": "c1\x85"}, "display_name"),
        ({"display_name": 5}, "display_name"),
        ({"display_name": None}, "display_name"),
        ({"display_name": ["x"]}, "display_name"),
        ({"display_name": "ok", "tenant_id": ""}, "tenant_id"),
        ({"display_name": "ok", "tenant_id": "a/b"}, "tenant_id"),
        ({"display_name": "ok", "tenant_id": "a b"}, "tenant_id"),
        ({"display_name": "ok", "tenant_id": "t" * 65}, "tenant_id"),
        ({"display_name": "ok", "tenant_id": "x\n"}, "tenant_id"),
        ({"display_name": "ok", "tenant_id": "ünï"}, "tenant_id"),
        ({"display_name": "ok", "tenant_id": 7}, "tenant_id"),
        ({"display_name": "ok", "tenant_id": None}, "tenant_id"),
        ({"display_name": "ok", "agent_id": "agt_" + "A" * 22}, "unknown field 'agent_id'"),
        ({"display_name": "ok", "disabled": True}, "unknown field 'disabled'"),
        ({"display_name": "ok", "created_at": "2020-01-01T00:00:00Z"}, "unknown field 'created_at'"),
    ],
)
def test_create_refuses_bad_bodies_and_writes_nothing(api, body, field):
    assert_invalid(api.bridge("agents/create", body), field)
    assert all_agents(api) == []
    assert events(api, "agent.create") == []


def test_create_error_does_not_echo_the_input(api):
    marker = "SECRETMARKER" * 11
    answer = api.bridge("agents/create", {"display_name": marker})
    assert_invalid(answer, "display_name")
    assert b"SECRETMARKER" not in answer.data


def test_create_accepts_the_bounds(api):
    longest = api.bridge("agents/create", {"display_name": "x" * 128, "tenant_id": "t" * 64})
    assert longest.status_code == 201
    assert longest.get_json()["display_name"] == "x" * 128
    shortest = api.bridge("agents/create", {"display_name": "é"})
    assert shortest.status_code == 201


# --- who may call ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("agents/create", {"display_name": "minted by an agent"}),
        ("agents/list", {}),
        ("agents/update", {"agent_id": "SELF", "disabled": True}),
        ("agents/update", {"agent_id": "OTHER", "display_name": "pwned"}),
        ("audit/list", {"action": "agent.create"}),
        ("settings/set", {"key": "device_key_max_active", "value": 100}),
    ],
)
def test_bridge_only_routes_refuse_a_device_key(api, route, body):
    me = api.new_agent("me")
    other = api.new_agent("other")
    key = api.new_key(me)["device_key"]
    before = event_count(api)
    body = {k: {"SELF": me, "OTHER": other}.get(v, v) if isinstance(v, str) else v for k, v in body.items()}
    answer = api.device(key, route, body)
    assert answer.status_code == 403
    assert answer.get_json() == BRIDGE_ONLY
    assert event_count(api) == before
    listed = {a["agent_id"]: a for a in all_agents(api)}
    assert set(listed) == {me, other}
    assert listed[me]["disabled"] is False and listed[other]["display_name"] == "other"


def test_bridge_only_routes_check_the_caller_before_the_body(api):
    key = api.new_key(api.new_agent())["device_key"]
    answer = api.device(key, "agents/create", {"nonsense": True})
    assert answer.status_code == 403
    assert answer.get_json() == BRIDGE_ONLY


# --- get ---------------------------------------------------------------------------------------------


def test_get_by_the_bridge_and_by_the_agent_itself(api):
    agent_id = api.new_agent("me", tenant_id="t9")
    key = api.new_key(agent_id)["device_key"]
    by_bridge = api.bridge("agents/get", {"agent_id": agent_id})
    by_self = api.device(key, "agents/get", {})
    assert by_bridge.status_code == by_self.status_code == 200
    assert by_bridge.get_json() == by_self.get_json()
    assert by_self.get_json()["agent_id"] == agent_id
    assert set(by_self.get_json()) == AGENT_FIELDS


def test_get_with_a_forged_agent_id_answers_the_caller(api):
    me = api.new_agent("me")
    victim = api.new_agent("victim", tenant_id="elsewhere")
    key = api.new_key(me)["device_key"]
    for forged in (victim, ids.new_agent_id(), "agt_nope"):
        answer = api.device(key, "agents/get", {"agent_id": forged})
        assert answer.status_code == 200
        assert answer.get_json()["agent_id"] == me
        assert answer.get_json()["display_name"] == "me"


@pytest.mark.parametrize("unknown", ["UNMADE", "nope", "agt_", "agt_short", "AGT_" + "A" * 22, "x" * 128, "é"])
def test_get_of_an_unknown_agent_is_one_404(api, unknown):
    api.new_agent()
    never_made = api.bridge("agents/get", {"agent_id": ids.new_agent_id()})
    assert never_made.status_code == 404
    assert never_made.data == NOT_FOUND
    if unknown == "UNMADE":
        unknown = ids.new_agent_id()
    answer = api.bridge("agents/get", {"agent_id": unknown})
    assert answer.status_code == 404
    assert answer.data == never_made.data


@pytest.mark.parametrize("bad", ["a/b", "x" * 129, "a\x00b", ""])
def test_get_with_an_illegal_id_is_400(api, bad):
    assert_invalid(api.bridge("agents/get", {"agent_id": bad}), "agent_id")


def test_get_by_the_bridge_needs_an_agent_id(api):
    assert_invalid(api.bridge("agents/get", {}), "agent_id")


# --- list --------------------------------------------------------------------------------------------


def _page_through(api: Any, page_size: int, **filters: Any) -> tuple[list[str], int]:
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        body: dict[str, Any] = {"page_size": page_size, **filters}
        if token is not None:
            body["page_token"] = token
        answer = api.bridge("agents/list", body)
        assert answer.status_code == 200, answer.get_json()
        page = answer.get_json()
        assert set(page) == {"agents", "next_page_token"}
        assert len(page["agents"]) <= page_size
        for agent in page["agents"]:
            assert set(agent) == AGENT_FIELDS
        seen.extend(a["agent_id"] for a in page["agents"])
        pages += 1
        assert pages <= 20, "paging does not end"
        token = page["next_page_token"]
        if token is None:
            return seen, pages


def test_list_pages_through_every_agent_once(api):
    made = [api.new_agent(f"d{i}") for i in range(5)]
    acme = [api.new_agent(f"a{i}", tenant_id="acme") for i in range(2)]
    seen, pages = _page_through(api, 2)
    assert len(seen) == len(set(seen)) == 7
    assert set(seen) == set(made + acme)
    assert pages == 4
    default, pages = _page_through(api, 2, tenant_id="default")
    assert sorted(default) == sorted(made) and len(default) == 5
    assert pages == 3
    only_acme, pages = _page_through(api, 2, tenant_id="acme")
    assert sorted(only_acme) == sorted(acme)
    assert pages == 1  # exactly one full page: no trailing empty page
    none, _ = _page_through(api, 2, tenant_id="nobody")
    assert none == []


def test_list_of_exactly_full_pages_ends_with_a_null_token(api):
    for i in range(4):
        api.new_agent(f"a{i}")
    seen, pages = _page_through(api, 2)
    assert len(set(seen)) == 4 and pages == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"page_size": 0}, "page_size"),
        ({"page_size": 201}, "page_size"),
        ({"page_size": -1}, "page_size"),
        ({"page_size": True}, "page_size"),
        ({"page_size": "2"}, "page_size"),
        ({"page_size": 2.0}, "page_size"),
        ({"page_token": ""}, "page_token"),
        ({"page_token": "not-a-token"}, "page_token"),
        ({"page_token": "../agents"}, "page_token"),
        ({"tenant_id": "a/b"}, "tenant_id"),
        ({"cursor": "x"}, "unknown field 'cursor'"),
    ],
)
def test_list_refuses_bad_bodies(api, body, field):
    assert_invalid(api.bridge("agents/list", body), field)


# --- update ------------------------------------------------------------------------------------------


def test_update_display_name_and_disabled_are_audited(api):
    agent_id = api.new_agent("before")
    renamed = api.call(
        "agents/update",
        {"agent_id": agent_id, "display_name": "after"},
        {"x-agentpack-key": BRIDGE_KEY, "x-request-id": "rename-1"},
    )
    assert renamed.status_code == 200
    assert set(renamed.get_json()) == AGENT_FIELDS
    assert renamed.get_json()["display_name"] == "after"
    assert api.bridge("agents/get", {"agent_id": agent_id}).get_json()["display_name"] == "after"
    disabled = api.bridge("agents/update", {"agent_id": agent_id, "disabled": True})
    assert disabled.status_code == 200 and disabled.get_json()["disabled"] is True
    assert api.bridge("agents/get", {"agent_id": agent_id}).get_json()["disabled"] is True

    updates = events(api, "agent.update")
    assert len(updates) == 2
    by_request = {e["request_id"]: e for e in updates}
    rename = by_request["rename-1"]
    assert rename["actor"] == {"kind": "bridge"}
    assert rename["target"]["agent_id"] == agent_id
    assert rename["target"]["kind"] == "agent"
    assert rename["target"]["changes"] == ["display_name"]
    disable = by_request[disabled.headers["x-request-id"]]
    assert disable["target"]["changes"] == ["disabled"]
    assert disable["actor"] == {"kind": "bridge"}
    assert disable["target"]["agent_id"] == agent_id


def test_update_that_changes_nothing_writes_no_event(api):
    agent_id = api.new_agent("same")
    answer = api.bridge("agents/update", {"agent_id": agent_id, "display_name": "same", "disabled": False})
    assert answer.status_code == 200
    assert answer.get_json()["display_name"] == "same"
    assert events(api, "agent.update") == []


def test_update_of_an_unknown_agent_is_404_and_creates_nothing(api):
    never = api.bridge("agents/update", {"agent_id": ids.new_agent_id(), "disabled": True})
    malformed = api.bridge("agents/update", {"agent_id": "nope", "disabled": True})
    assert never.status_code == malformed.status_code == 404
    assert never.data == malformed.data == NOT_FOUND
    assert all_agents(api) == []
    assert events(api, "agent.update") == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"display_name": ""}, "display_name"),
        ({"display_name": "y" * 129}, "display_name"),
        ({"display_name": "a\rb"}, "display_name"),
        ({"disabled": "true"}, "disabled"),
        ({"disabled": 1}, "disabled"),
        ({"tenant_id": "other"}, "unknown field 'tenant_id'"),
        ({"created_at": "2020-01-01T00:00:00Z"}, "unknown field 'created_at'"),
    ],
)
def test_update_refuses_bad_bodies_and_changes_nothing(api, body, field):
    agent_id = api.new_agent("orig")
    assert_invalid(api.bridge("agents/update", {"agent_id": agent_id, **body}), field)
    got = api.bridge("agents/get", {"agent_id": agent_id}).get_json()
    assert got["display_name"] == "orig" and got["disabled"] is False and got["tenant_id"] == "default"
    assert events(api, "agent.update") == []


def test_update_needs_an_agent_id(api):
    assert_invalid(api.bridge("agents/update", {"disabled": True}), "agent_id")


def test_disabling_takes_effect_on_the_next_request_and_enabling_restores(api, frozen_clock):
    frozen_clock(T0)
    agent_id = api.new_agent()
    key = api.new_key(agent_id)["device_key"]
    assert api.device(key, "agents/get", {}).status_code == 200
    api.bridge("agents/update", {"agent_id": agent_id, "disabled": True})
    refused = api.device(key, "agents/get", {})
    assert refused.status_code == 401 and refused.data == UNAUTHENTICATED
    frozen_clock(T0 + timedelta(hours=1))
    api.bridge("agents/update", {"agent_id": agent_id, "disabled": False})
    assert api.device(key, "agents/get", {}).status_code == 200
