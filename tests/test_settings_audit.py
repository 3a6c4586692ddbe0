"""Settings (the allow-list) and the audit trail, attacked.

Settings: every allow-listed key with its default, readable by any valid credential, settable by the
bridge key only, each bound exact. Audit: newest first, paging without gaps or duplicates, filters
that keep exactly the events naming an agent, events of a fixed shape whose ``request_id`` is the
``x-request-id`` of the answer that caused them, and never a key or a hash.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared import keys
from tests.conftest import BRIDGE_KEY, Api
from tests.test_http import MARK, assert_error, assert_no_echo

DEFAULTS = {
    "delegation_max_ttl_seconds": 86400,
    "device_key_max_active": 10,
    "rotation_grace_seconds": 3600,
    "secret_max_bytes": 32768,
    "audit_retention_days": 400,
    "access_token_ttl_seconds": 900,
    "refresh_token_ttl_seconds": 2592000,
    "user_delegation_max_ttl_seconds": 7776000,
}
BOUNDS = {
    "delegation_max_ttl_seconds": (60, 2592000),
    "device_key_max_active": (1, 100),
    "rotation_grace_seconds": (0, 604800),
    "secret_max_bytes": (1, 49152),
    "audit_retention_days": (30, 3650),
    "access_token_ttl_seconds": (60, 3600),
    "refresh_token_ttl_seconds": (3600, 7776000),
    "user_delegation_max_ttl_seconds": (3600, 31536000),
}
ACTIONS = {
    "agent.create",
    "agent.update",
    "device.issue",
    "device.rotate",
    "device.revoke",
    "delegation.grant",
    "delegation.revoke",
    "secret.put",
    "secret.delete",
    "setting.set",
    "capability.record",
}
EVENT_FIELDS = {"event_id", "at", "category", "action", "actor", "target", "request_id"}
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
T0 = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)


def parse_time(text: str) -> datetime:
    assert RFC3339.fullmatch(text), text
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def all_events(api: Api, **filters: Any) -> list[dict[str, Any]]:
    answer = api.bridge("audit/list", {**filters, "page_size": 200})
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["next_page_token"] is None
    return list(body["events"])


def names(event: dict[str, Any]) -> set[str]:
    """Every agent an event names: actor, the agent acted for, target, grantor."""
    actor, target = event["actor"], event["target"]
    return {
        v
        for v in (actor.get("agent_id"), actor.get("on_behalf_of"), target.get("agent_id"), target.get("from_agent"))
        if v
    }


# ================================================================ settings


def test_settings_list_has_every_allow_listed_key_with_its_default(api: Api) -> None:
    answer = api.bridge("settings/list", {})
    assert answer.status_code == 200
    assert answer.get_json() == {"settings": DEFAULTS}
    assert all(type(v) is int for v in answer.get_json()["settings"].values())


def test_any_valid_credential_may_read_settings(api: Api) -> None:
    agent = api.new_agent()
    issued = api.new_key(agent)
    assert api.bridge("settings/set", {"key": "device_key_max_active", "value": 7}).status_code == 200
    expected = {"settings": {**DEFAULTS, "device_key_max_active": 7}}
    answer = api.device(issued["device_key"], "settings/list", {})
    assert answer.status_code == 200
    assert answer.get_json() == expected
    assert api.bridge("settings/list", {}).get_json() == expected
    # ... but only a valid one.
    assert_error(api.call("settings/list", {}, {}), 401, "unauthenticated")
    api.bridge("device/revoke", {"key_id": issued["key_id"]})
    assert_error(api.device(issued["device_key"], "settings/list", {}), 401, "unauthenticated")
    other = api.new_key(agent)["device_key"]
    assert api.device(other, "settings/list", {}).status_code == 200
    api.bridge("agents/update", {"agent_id": agent, "disabled": True})
    assert_error(api.device(other, "settings/list", {}), 401, "unauthenticated")


def test_only_the_bridge_key_may_set(api: Api) -> None:
    agent = api.new_agent()
    device_key = api.new_key(agent)["device_key"]
    body = {"key": "device_key_max_active", "value": 100}
    assert_error(api.device(device_key, "settings/set", body), 403, "forbidden")
    # Forbidden whatever the body: the role is checked before the body.
    assert_error(api.device(device_key, "settings/set", {"key": MARK}), 403, "forbidden")
    assert_error(api.call("settings/set", body, {}), 401, "unauthenticated")
    assert api.bridge("settings/list", {}).get_json() == {"settings": DEFAULTS}
    assert all_events(api, action="setting.set") == []


def test_an_unknown_key_is_400_naming_key(api: Api) -> None:
    for key in [MARK, "DEVICE_KEY_MAX_ACTIVE", "device_key_max_active ", "capability_max_ttl_seconds", "", "__proto__"]:
        answer = api.bridge("settings/set", {"key": key, "value": 5})
        assert "key" in assert_error(answer, 400, "invalid_request")
        assert_no_echo(answer)
    assert api.bridge("settings/list", {}).get_json() == {"settings": DEFAULTS}


@pytest.mark.parametrize("key", list(BOUNDS))
def test_each_bound_is_exact(api: Api, key: str) -> None:
    low, high = BOUNDS[key]
    for value in (low, high):
        answer = api.bridge("settings/set", {"key": key, "value": value})
        assert answer.status_code == 200, answer.get_json()
        assert answer.get_json()["value"] == value
        assert api.bridge("settings/list", {}).get_json()["settings"][key] == value
    for value in (low - 1, high + 1, -(2**53), 2**53):
        answer = api.bridge("settings/set", {"key": key, "value": value})
        assert "value" in assert_error(answer, 400, "invalid_request")
    assert api.bridge("settings/list", {}).get_json()["settings"][key] == high
    assert len(all_events(api, action="setting.set")) == 2


@pytest.mark.parametrize("key", list(BOUNDS))
def test_wrong_types_are_400_naming_value(api: Api, key: str) -> None:
    for raw in ["true", "false", '"60"', "60.0", "6e1", "null", "[60]", '{"v": 60}', f'"{MARK}"']:
        data = f'{{"key": "{key}", "value": {raw}}}'.encode()
        answer = api.bridge("settings/set", None, data=data, content_type="application/json")
        assert "value" in assert_error(answer, 400, "invalid_request"), raw
        assert_no_echo(answer)
    for key_value in [5, None, True, [key], {"k": key}]:
        answer = api.bridge("settings/set", {"key": key_value, "value": 60})
        assert "key" in assert_error(answer, 400, "invalid_request")
    assert "value" in assert_error(api.bridge("settings/set", {"key": key}), 400, "invalid_request")
    assert "key" in assert_error(api.bridge("settings/set", {"value": 60}), 400, "invalid_request")
    answer = api.bridge("settings/set", {"key": key, "value": 60, "zz_extra": MARK})
    assert "zz_extra" in assert_error(answer, 400, "invalid_request")
    assert_no_echo(answer)
    assert api.bridge("settings/list", {}).get_json() == {"settings": DEFAULTS}
    assert all_events(api, action="setting.set") == []


def test_set_answers_key_value_and_an_rfc3339_updated_at(api: Api, frozen_clock: Any) -> None:
    frozen_clock(T0 + timedelta(microseconds=654321))
    answer = api.bridge("settings/set", {"key": "rotation_grace_seconds", "value": 0})
    assert answer.status_code == 200
    assert answer.get_json() == {"key": "rotation_grace_seconds", "value": 0, "updated_at": "2026-11-22T10:00:00Z"}


def test_updated_at_is_now_with_the_system_clock(api: Api) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    answer = api.bridge("settings/set", {"key": "audit_retention_days", "value": 31})
    after = datetime.now(UTC)
    assert set(answer.get_json()) == {"key", "value", "updated_at"}
    assert before <= parse_time(answer.get_json()["updated_at"]) <= after


def test_setting_set_is_audited_with_its_request_id(api: Api) -> None:
    answer = api.call(
        "settings/set",
        {"key": "secret_max_bytes", "value": 1024},
        {"x-agentpack-key": BRIDGE_KEY, "x-request-id": "set-secret-max-1"},
    )
    assert answer.status_code == 200
    assert answer.headers["x-request-id"] == "set-secret-max-1"
    (event,) = all_events(api, action="setting.set")
    assert event["request_id"] == "set-secret-max-1"
    assert event["actor"] == {"kind": "bridge"}
    assert event["target"]["key"] == "secret_max_bytes"
    assert event["target"]["value"] == 1024
    assert event["category"] == "auth"
    assert set(event) == EVENT_FIELDS


def test_settings_take_effect_on_the_next_request(api: Api) -> None:
    agent = api.new_agent()
    api.new_key(agent)
    assert api.bridge("settings/set", {"key": "device_key_max_active", "value": 1}).status_code == 200
    assert_error(api.bridge("device/issue", {"agent_id": agent}), 409, "conflict")
    assert api.bridge("settings/set", {"key": "device_key_max_active", "value": 2}).status_code == 200
    assert api.bridge("device/issue", {"agent_id": agent}).status_code == 201


# ================================================================ audit


@pytest.fixture
def story(api: Api) -> dict[str, Any]:
    """Three agents and a little history, with the request ID of every answer that changed something."""
    caused: dict[str, str] = {}  # request_id -> action

    def bridge(route: str, body: dict[str, Any], action: str) -> Any:
        answer = api.bridge(route, body)
        assert answer.status_code in (200, 201), (route, answer.get_json())
        caused[answer.headers["x-request-id"]] = action
        return answer.get_json()

    def device(key: str, route: str, body: dict[str, Any], action: str, **headers: str) -> Any:
        answer = api.call(route, body, {"x-agentpack-device-key": key, **headers})
        assert answer.status_code in (200, 201), (route, answer.get_json())
        caused[answer.headers["x-request-id"]] = action
        return answer.get_json()

    alice = bridge("agents/create", {"display_name": "alice"}, "agent.create")["agent_id"]
    bob = bridge("agents/create", {"display_name": "bob"}, "agent.create")["agent_id"]
    carol = bridge("agents/create", {"display_name": "carol"}, "agent.create")["agent_id"]
    alice_key = bridge("device/issue", {"agent_id": alice}, "device.issue")
    bob_key = bridge("device/issue", {"agent_id": bob}, "device.issue")
    carol_key = bridge("device/issue", {"agent_id": carol, "label": "c"}, "device.issue")
    rotated = device(alice_key["device_key"], "device/issue", {"replaces_key_id": alice_key["key_id"]}, "device.rotate")
    device(rotated["device_key"], "device/revoke", {"key_id": alice_key["key_id"]}, "device.revoke")
    grant = device(
        rotated["device_key"],
        "delegate",
        {"to_agent": bob, "scope": ["secrets/put"], "ttl_seconds": 600},
        "delegation.grant",
    )
    # Bob acts for alice: bob is only the actor; alice is the one acted for (and the target).
    device(
        bob_key["device_key"],
        "secrets/put",
        {"name": "shared", "value": "ZQX-secret-value"},
        "secret.put",
        **{"x-agentpack-delegation": grant["delegation_id"]},
    )
    bridge("agents/update", {"agent_id": carol, "display_name": "carol 2"}, "agent.update")
    bridge("settings/set", {"key": "rotation_grace_seconds", "value": 60}, "setting.set")
    return {
        "alice": alice,
        "bob": bob,
        "carol": carol,
        "caused": caused,
        "keys": [alice_key["device_key"], bob_key["device_key"], carol_key["device_key"], rotated["device_key"]],
        "delegation_id": grant["delegation_id"],
    }


def test_every_change_has_exactly_one_event_of_the_contract_shape(api: Api, story: dict[str, Any]) -> None:
    events = all_events(api)
    assert len(events) == len(story["caused"]) == 12
    assert len({e["event_id"] for e in events}) == len(events)
    for event in events:
        assert set(event) == EVENT_FIELDS, event
        assert event["category"] == "auth"
        assert event["action"] in ACTIONS
        assert isinstance(event["event_id"], str) and event["event_id"]
        parse_time(event["at"])
        actor = event["actor"]
        assert actor["kind"] in ("bridge", "agent")
        assert set(actor) <= {"kind", "agent_id", "on_behalf_of"}
        if actor["kind"] == "bridge":
            assert actor == {"kind": "bridge"}
        else:
            assert actor["agent_id"].startswith("agt_")
        assert isinstance(event["target"], dict)


def test_every_event_carries_the_request_id_of_the_answer_that_caused_it(api: Api, story: dict[str, Any]) -> None:
    by_request = {e["request_id"]: e["action"] for e in all_events(api)}
    assert by_request == story["caused"]


def test_a_sane_request_id_sent_by_the_caller_is_the_one_on_the_event(api: Api) -> None:
    rids = {"agent.create": "op-2026.11.22:create-1", "device.issue": "op-issue-1", "agent.update": "u" * 128}
    headers = {"x-agentpack-key": BRIDGE_KEY}
    created = api.call("agents/create", {"display_name": "x"}, {**headers, "x-request-id": rids["agent.create"]})
    agent = created.get_json()["agent_id"]
    api.call("device/issue", {"agent_id": agent}, {**headers, "x-request-id": rids["device.issue"]})
    api.call("agents/update", {"agent_id": agent, "disabled": True}, {**headers, "x-request-id": rids["agent.update"]})
    # An insane one is replaced, and the replacement is what the event carries.
    answer = api.call("agents/update", {"agent_id": agent, "disabled": False}, {**headers, "x-request-id": "a b\tc"})
    fresh = answer.headers["x-request-id"]
    assert fresh != "a b\tc"
    events = all_events(api, agent_id=agent)
    assert [(e["action"], e["request_id"]) for e in events] == [
        ("agent.update", fresh),
        ("agent.update", rids["agent.update"]),
        ("device.issue", rids["device.issue"]),
        ("agent.create", rids["agent.create"]),
    ]


def test_events_are_newest_first(api: Api, story: dict[str, Any]) -> None:
    events = all_events(api)
    assert [e["request_id"] for e in events] == list(reversed(story["caused"]))  # the order they were caused in
    times = [parse_time(e["at"]) for e in events]
    assert times == sorted(times, reverse=True)
    assert events[0]["action"] == "setting.set"
    assert events[-1]["action"] == "agent.create"
    created = [e["target"]["agent_id"] for e in events if e["action"] == "agent.create"]
    assert created == [story["carol"], story["bob"], story["alice"]]


@pytest.mark.parametrize(
    "filters",
    [{}, {"action": "agent.create"}, {"action": "device.issue"}, {"agent_id": "alice"}, {"agent_id": "bob"}],
    ids=["all", "agent.create", "device.issue", "alice", "bob"],
)
def test_paging_visits_every_event_once_in_order(api: Api, story: dict[str, Any], filters: dict[str, Any]) -> None:
    if "agent_id" in filters:
        filters = {"agent_id": story[filters["agent_id"]]}
    everything = all_events(api, **filters)
    assert everything
    for page_size in (1, 2, 5):
        assert _paged(api, filters, page_size) == everything


def _paged(api: Api, filters: dict[str, Any], page_size: int) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    sizes: list[int] = []
    token = None
    for _ in range(100):
        body = {**filters, "page_size": page_size, **({"page_token": token} if token else {})}
        answer = api.bridge("audit/list", body)
        assert answer.status_code == 200, answer.get_json()
        page = answer.get_json()
        assert set(page) == {"events", "next_page_token"}
        assert 1 <= len(page["events"]) <= page_size
        seen += page["events"]
        sizes.append(len(page["events"]))
        token = page["next_page_token"]
        if token is None:
            break
        assert isinstance(token, str) and token
    assert token is None
    assert len({e["event_id"] for e in seen}) == len(seen)
    # Every page but the last is full, and there is no empty last page.
    assert all(size == page_size for size in sizes[:-1])
    assert len(sizes) == -(-len(seen) // page_size)
    return seen


def test_paging_with_the_default_page_size_and_an_exact_multiple(api: Api) -> None:
    for i in range(4):
        api.new_agent(f"a{i}")
    first = api.bridge("audit/list", {"page_size": 2}).get_json()
    second = api.bridge("audit/list", {"page_size": 2, "page_token": first["next_page_token"]}).get_json()
    assert len(first["events"]) == len(second["events"]) == 2
    assert second["next_page_token"] is None  # no empty third page
    default = api.bridge("audit/list", {}).get_json()
    assert default["next_page_token"] is None and len(default["events"]) == 4


def test_events_written_between_pages_do_not_shift_the_pages(api: Api) -> None:
    for i in range(3):
        api.new_agent(f"a{i}")
    first = api.bridge("audit/list", {"page_size": 2}).get_json()
    api.new_agent("late")  # newer than every event already listed
    rest = api.bridge("audit/list", {"page_size": 200, "page_token": first["next_page_token"]}).get_json()
    seen = [e["event_id"] for e in first["events"] + rest["events"]]
    assert len(seen) == len(set(seen)) == 3


def test_the_agent_filter_keeps_exactly_the_events_that_name_the_agent(api: Api, story: dict[str, Any]) -> None:
    everything = all_events(api)
    for who in ("alice", "bob", "carol"):
        agent = story[who]
        kept = all_events(api, agent_id=agent)
        assert kept == [e for e in everything if agent in names(e)], who
        assert kept
    alice = {e["action"] for e in all_events(api, agent_id=story["alice"])}
    assert alice == {
        "agent.create",
        "device.issue",
        "device.rotate",
        "device.revoke",
        "delegation.grant",
        "secret.put",
    }
    bob = [e["action"] for e in all_events(api, agent_id=story["bob"])]
    # bob: created, issued a key, granted to (target), and the actor of a delegated put for alice.
    assert sorted(bob) == ["agent.create", "delegation.grant", "device.issue", "secret.put"]
    (put,) = [e for e in all_events(api, agent_id=story["bob"]) if e["action"] == "secret.put"]
    assert put["actor"] == {"kind": "agent", "agent_id": story["bob"], "on_behalf_of": story["alice"]}
    carol = [e["action"] for e in all_events(api, agent_id=story["carol"])]
    assert carol == ["agent.update", "device.issue", "agent.create"]
    # An agent that never existed, and a well-formed one that names nothing: no events, no error.
    assert all_events(api, agent_id="agt_" + "0" * 22) == []
    assert all_events(api, agent_id="nobody") == []


def test_the_action_filter_and_both_filters_together(api: Api, story: dict[str, Any]) -> None:
    everything = all_events(api)
    for action in ACTIONS:
        assert all_events(api, action=action) == [e for e in everything if e["action"] == action]
    both = all_events(api, agent_id=story["alice"], action="device.issue")
    assert [e["target"]["agent_id"] for e in both] == [story["alice"]]
    assert all_events(api, agent_id=story["carol"], action="secret.put") == []


def test_an_unknown_action_is_400_naming_action(api: Api, story: dict[str, Any]) -> None:
    for action in [MARK, "agent.*", "agent.create ", "Agent.Create", "agent", ""]:
        answer = api.bridge("audit/list", {"action": action})
        assert "action" in assert_error(answer, 400, "invalid_request")
        assert_no_echo(answer)
    for wrong_type in [5, True, ["agent.create"], {"a": 1}]:
        answer = api.bridge("audit/list", {"action": wrong_type})
        assert "action" in assert_error(answer, 400, "invalid_request")


def test_a_bad_page_token_is_400_naming_page_token(api: Api, story: dict[str, Any]) -> None:
    good = api.bridge("audit/list", {"page_size": 1}).get_json()["next_page_token"]
    assert good
    for token in [
        MARK,
        "",
        "evt_" + MARK,
        good + "x",
        good[:-1],
        good + "/..",
        story["alice"],
        "a" * 257,
        "evt_0000000000000" + "\u0000" * 10,
        good.replace(good[0], "+" if good[0] != "+" else "/", 1),  # standard base64, not base64url
        _token(T0, "evt_" + "!" * 22),  # decodes, but to no event ID
    ]:
        answer = api.bridge("audit/list", {"page_token": token})
        assert "page_token" in assert_error(answer, 400, "invalid_request"), token
        assert_no_echo(answer)
    for token in [5, True, ["x"]]:
        answer = api.bridge("audit/list", {"page_token": token})
        assert "page_token" in assert_error(answer, 400, "invalid_request")


def _token(logged_at: datetime, event_id: str) -> str:
    raw = ((logged_at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)).to_bytes(8, "big", signed=True)
    return base64.urlsafe_b64encode(raw + event_id[4:].encode()).decode()


def test_a_well_formed_page_token_that_names_no_event_still_pages(api: Api, story: dict[str, Any]) -> None:
    # Older than every event: nothing after it. Newer than every event: everything.
    old = _token(datetime(2000, 1, 1, tzinfo=UTC), "evt_" + "0" * 22)
    assert api.bridge("audit/list", {"page_token": old}).get_json() == {"events": [], "next_page_token": None}
    answer = api.bridge("audit/list", {"page_token": _token(datetime(2999, 1, 1, tzinfo=UTC), "evt_" + "z" * 22)})
    assert answer.status_code == 200
    assert answer.get_json()["events"] == all_events(api)


def test_page_size_bounds(api: Api, story: dict[str, Any]) -> None:
    for size in (0, -1, 201, True, "5", 5.0):
        answer = api.bridge("audit/list", {"page_size": size})
        assert "page_size" in assert_error(answer, 400, "invalid_request")
    assert len(api.bridge("audit/list", {"page_size": 200}).get_json()["events"]) == 12
    assert len(api.bridge("audit/list", {"page_size": 1}).get_json()["events"]) == 1


def test_only_the_bridge_key_may_read_the_audit_trail(api: Api, story: dict[str, Any]) -> None:
    device_key = story["keys"][1]
    assert_error(api.device(device_key, "audit/list", {}), 403, "forbidden")
    assert_error(api.device(device_key, "audit/list", {"agent_id": story["bob"]}), 403, "forbidden")
    assert_error(api.call("audit/list", {}, {}), 401, "unauthenticated")


def test_events_never_carry_keys_hashes_or_secret_values(api: Api, story: dict[str, Any]) -> None:
    text = json.dumps(all_events(api))
    for key in [BRIDGE_KEY, *story["keys"]]:
        assert key not in text
        assert keys.hash_key(key) not in text
        assert key[-40:] not in text  # not even a fragment of the random part
    assert "ZQX-secret-value" not in text
    assert '"key_hash"' not in text
    assert '"device_key":' not in text  # the field that carries a key (as a kind, "device_key" is fine)


def test_reads_and_refusals_write_no_event(api: Api) -> None:
    agent = api.new_agent()
    issued = api.new_key(agent)
    before = all_events(api)
    api.bridge("agents/get", {"agent_id": agent})
    api.bridge("agents/list", {})
    api.bridge("device/list", {"agent_id": agent})
    api.bridge("settings/list", {})
    api.device(issued["device_key"], "agents/get", {})
    api.bridge("settings/set", {"key": "device_key_max_active", "value": 0})  # out of bounds
    api.bridge("settings/set", {"key": MARK, "value": 1})
    api.device(issued["device_key"], "settings/set", {"key": "device_key_max_active", "value": 5})  # forbidden
    api.bridge("device/revoke", {"key_id": "dk_" + "0" * 44})  # names nothing
    api.bridge("agents/update", {"agent_id": agent})  # changes nothing
    assert all_events(api) == before
