"""Device keys, attacked: issue, list, revoke, rotate, the active-key limit, forged IDs and the audit trail."""

from __future__ import annotations

import hashlib
import re
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared import ids, keys
from tests.conftest import BRIDGE_KEY

T0 = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
ISSUE_FIELDS = {"key_id", "agent_id", "device_key", "label", "created_at", "expires_at", "scopes"}
LIST_FIELDS = {"key_id", "label", "created_at", "expires_at", "revoked_at", "replaced_by", "scopes", "kind"}
KEY_ID = re.compile(r"dk_[0-9A-Za-z]{44}")
DEVICE_KEY = re.compile(r"apkd_[0-9A-Za-z]{44}[0-9A-Za-z]{43}[0-9A-Za-z]{6}")
NOT_FOUND = b'{"error":"not_found","error_description":"No such object."}'
UNAUTHENTICATED = b'{"error":"unauthenticated","error_description":"A valid credential is required."}'
TOO_MANY = {"error": "conflict", "error_description": "The agent already has the most active device keys allowed."}
NOT_LIVE = {"error": "conflict", "error_description": "The key to replace is already revoked, expired or replaced."}
ACTIONS = ("agent.create", "agent.update", "device.issue", "device.rotate", "device.revoke", "setting.set")


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def events(api: Any, action: str, **filters: Any) -> list[dict[str, Any]]:
    answer = api.bridge("audit/list", {"action": action, **filters})
    assert answer.status_code == 200, answer.get_json()
    return list(answer.get_json()["events"])


def all_events(api: Any) -> list[dict[str, Any]]:
    return [event for action in ACTIONS for event in events(api, action)]


def live(api: Any, key: str) -> bool:
    answer = api.device(key, "agents/get", {})
    if answer.status_code == 401:
        assert answer.data == UNAUTHENTICATED
        return False
    assert answer.status_code == 200, answer.get_json()
    return True


def key_list(api: Any, agent_id: str) -> dict[str, dict[str, Any]]:
    answer = api.bridge("device/list", {"agent_id": agent_id})
    assert answer.status_code == 200, answer.get_json()
    return {k["key_id"]: k for k in answer.get_json()["keys"]}


def set_setting(api: Any, key: str, value: int) -> None:
    answer = api.bridge("settings/set", {"key": key, "value": value})
    assert answer.status_code == 200, answer.get_json()


def assert_invalid(answer: Any, field: str) -> None:
    assert answer.status_code == 400, answer.get_json()
    body = answer.get_json()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == "invalid_request"
    assert body["error_description"].startswith(field), body


def assert_not_found(answer: Any) -> None:
    assert answer.status_code == 404, answer.get_json()
    assert answer.data == NOT_FOUND


def assert_conflict(answer: Any, body: dict[str, str]) -> None:
    assert answer.status_code == 409, answer.get_json()
    assert answer.get_json() == body


# --- issue -------------------------------------------------------------------------------------------


def test_issue_answers_exactly_the_new_key(api, frozen_clock):
    frozen_clock(T0)
    agent_id = api.new_agent()
    answer = api.bridge("device/issue", {"agent_id": agent_id, "label": "laptop", "ttl_seconds": 3600})
    assert answer.status_code == 201
    body = answer.get_json()
    assert set(body) == ISSUE_FIELDS
    assert KEY_ID.fullmatch(body["key_id"])
    assert ids.agent_of_device_key(body["key_id"]) == agent_id
    assert body["agent_id"] == agent_id
    assert DEVICE_KEY.fullmatch(body["device_key"])
    assert keys.has_valid_check(body["device_key"])
    assert body["label"] == "laptop"
    assert body["created_at"] == "2026-11-22T10:00:00Z"
    assert body["expires_at"] == "2026-11-22T11:00:00Z"
    assert answer.headers["Cache-Control"] == "no-store"
    assert live(api, body["device_key"])
    (event,) = events(api, "device.issue")
    assert event["actor"] == {"kind": "bridge"}
    assert event["target"] == {"kind": "device_key", "key_id": body["key_id"], "agent_id": agent_id}
    assert event["request_id"] == answer.headers["x-request-id"]
    assert event["at"] == "2026-11-22T10:00:00Z"


def test_issue_without_label_or_ttl(api):
    agent_id = api.new_agent()
    body = api.new_key(agent_id)
    assert set(body) == ISSUE_FIELDS
    assert body["label"] is None and body["expires_at"] is None


def test_issued_keys_are_unique(api):
    agent_id = api.new_agent()
    made = [api.new_key(agent_id) for _ in range(3)]
    assert len({k["device_key"] for k in made}) == len({k["key_id"] for k in made}) == 3


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"ttl_seconds": 59}, "ttl_seconds"),
        ({"ttl_seconds": 31536001}, "ttl_seconds"),
        ({"ttl_seconds": 0}, "ttl_seconds"),
        ({"ttl_seconds": -60}, "ttl_seconds"),
        ({"ttl_seconds": "60"}, "ttl_seconds"),
        ({"ttl_seconds": True}, "ttl_seconds"),
        ({"ttl_seconds": 60.0}, "ttl_seconds"),
        ({"ttl_seconds": 2**60}, "ttl_seconds"),
        ({"label": ""}, "label"),
        ({"label": "l" * 65}, "label"),
        ({"label": "a\nb"}, "label"),
        ({"label": 3}, "label"),
        ({"replaces_key_id": "a/b"}, "replaces_key_id"),
        ({"replaces_key_id": ""}, "replaces_key_id"),
        ({"device_key": "apkd_x"}, "unknown field 'device_key'"),
        ({"key_hash": "00"}, "unknown field 'key_hash'"),
        ({"expires_at": "2099-01-01T00:00:00Z"}, "unknown field 'expires_at'"),
    ],
)
def test_issue_refuses_bad_bodies_and_writes_nothing(api, extra, field):
    agent_id = api.new_agent()
    assert_invalid(api.bridge("device/issue", {"agent_id": agent_id, **extra}), field)
    assert key_list(api, agent_id) == {}
    assert events(api, "device.issue") == []


def test_issue_accepts_the_ttl_bounds(api, frozen_clock):
    frozen_clock(T0)
    agent_id = api.new_agent()
    assert api.new_key(agent_id, ttl_seconds=60)["expires_at"] == stamp(at(60))
    assert api.new_key(agent_id, ttl_seconds=31536000)["expires_at"] == stamp(at(31536000))


def test_issue_for_an_unknown_agent_is_404(api):
    never = api.bridge("device/issue", {"agent_id": ids.new_agent_id()})
    malformed = api.bridge("device/issue", {"agent_id": "agt_nope"})
    assert_not_found(never)
    assert_not_found(malformed)
    assert all_events(api) == []


def test_issue_by_the_bridge_needs_an_agent_id(api):
    assert_invalid(api.bridge("device/issue", {}), "agent_id")


def test_an_agent_issues_for_itself_whatever_agent_id_it_sends(api):
    me = api.new_agent("me")
    victim = api.new_agent("victim")
    mine = api.new_key(me)["device_key"]
    answer = api.device(mine, "device/issue", {"agent_id": victim, "label": "forged"})
    assert answer.status_code == 201
    body = answer.get_json()
    assert body["agent_id"] == me
    assert ids.agent_of_device_key(body["key_id"]) == me
    assert keys.parse_device_key(body["device_key"]) == keys.DeviceKeyName(key_id=body["key_id"], agent_id=me)
    assert key_list(api, victim) == {}
    assert body["key_id"] in key_list(api, me)
    got = api.device(body["device_key"], "agents/get", {"agent_id": victim})
    assert got.status_code == 200 and got.get_json()["agent_id"] == me
    (event,) = [e for e in events(api, "device.issue", agent_id=me) if e["target"]["key_id"] == body["key_id"]]
    assert event["actor"] == {"kind": "agent", "agent_id": me}
    assert event["target"] == {"kind": "device_key", "key_id": body["key_id"], "agent_id": me}
    assert event["request_id"] == answer.headers["x-request-id"]
    assert events(api, "device.issue", agent_id=victim) == []


# --- list --------------------------------------------------------------------------------------------


def test_list_shows_every_key_without_any_secret(api, frozen_clock):
    frozen_clock(T0)
    agent_id = api.new_agent()
    plain = api.new_key(agent_id, label="plain")
    short = api.new_key(agent_id, label="short", ttl_seconds=120)
    gone = api.new_key(agent_id, label="gone")
    frozen_clock(at(30))
    assert api.bridge("device/revoke", {"key_id": gone["key_id"]}).status_code == 200
    answer = api.bridge("device/list", {"agent_id": agent_id})
    assert answer.status_code == 200
    assert set(answer.get_json()) == {"keys"}
    listed = answer.get_json()["keys"]
    assert sorted(k["key_id"] for k in listed) == sorted([plain["key_id"], short["key_id"], gone["key_id"]])
    for k in listed:
        assert set(k) == LIST_FIELDS
    by_id = {k["key_id"]: k for k in listed}
    assert by_id[plain["key_id"]] == {
        "key_id": plain["key_id"],
        "label": "plain",
        "created_at": stamp(T0),
        "expires_at": None,
        "revoked_at": None,
        "replaced_by": None,
        "scopes": None,
        "kind": "secret",
    }
    assert by_id[short["key_id"]]["expires_at"] == stamp(at(120))
    assert by_id[short["key_id"]]["revoked_at"] is None
    assert by_id[gone["key_id"]]["revoked_at"] == stamp(at(30))
    for made in (plain, short, gone):
        assert made["device_key"].encode() not in answer.data
        assert keys.hash_key(made["device_key"]).encode() not in answer.data
    assert b"hash" not in answer.data and b"device_key" not in answer.data


def test_list_names_the_key_that_replaced_a_rotated_one(api):
    agent_id = api.new_agent()
    old = api.new_key(agent_id)
    new = api.new_key(agent_id, replaces_key_id=old["key_id"])
    listed = {k["key_id"]: k for k in api.bridge("device/list", {"agent_id": agent_id}).get_json()["keys"]}
    assert listed[old["key_id"]]["replaced_by"] == new["key_id"]
    assert listed[new["key_id"]]["replaced_by"] is None


def test_agent_lists_only_its_own_keys_whatever_agent_id_it_sends(api):
    me = api.new_agent()
    victim = api.new_agent()
    mine = api.new_key(me)
    theirs = api.new_key(victim)
    for forged in (victim, "agt_nope", me):
        answer = api.device(mine["device_key"], "device/list", {"agent_id": forged})
        assert answer.status_code == 200
        assert [k["key_id"] for k in answer.get_json()["keys"]] == [mine["key_id"]]
        assert theirs["key_id"].encode() not in answer.data
    answer = api.device(mine["device_key"], "device/list", {})
    assert [k["key_id"] for k in answer.get_json()["keys"]] == [mine["key_id"]]


def test_list_of_an_unknown_agent_by_the_bridge_is_404(api):
    assert_not_found(api.bridge("device/list", {"agent_id": ids.new_agent_id()}))
    assert_not_found(api.bridge("device/list", {"agent_id": "nope"}))
    assert_invalid(api.bridge("device/list", {}), "agent_id")


# --- revoke ------------------------------------------------------------------------------------------


def test_revoke_answers_and_audits(api, frozen_clock):
    frozen_clock(T0)
    agent_id = api.new_agent()
    key = api.new_key(agent_id)
    answer = api.call(
        "device/revoke", {"key_id": key["key_id"]}, {"x-agentpack-key": BRIDGE_KEY, "x-request-id": "rv-1"}
    )
    assert answer.status_code == 200
    assert answer.get_json() == {"key_id": key["key_id"], "revoked_at": stamp(T0)}
    assert not live(api, key["device_key"])
    (event,) = events(api, "device.revoke")
    assert event["actor"] == {"kind": "bridge"}
    assert event["target"] == {"kind": "device_key", "key_id": key["key_id"], "agent_id": agent_id}
    assert event["request_id"] == "rv-1"
    assert event["at"] == stamp(T0)


def test_agent_revokes_its_own_key_and_is_the_actor(api):
    agent_id = api.new_agent()
    keeper = api.new_key(agent_id)
    doomed = api.new_key(agent_id)
    answer = api.device(keeper["device_key"], "device/revoke", {"key_id": doomed["key_id"]})
    assert answer.status_code == 200
    assert not live(api, doomed["device_key"])
    assert live(api, keeper["device_key"])
    (event,) = events(api, "device.revoke")
    assert event["actor"] == {"kind": "agent", "agent_id": agent_id}
    assert event["target"]["key_id"] == doomed["key_id"]
    assert event["request_id"] == answer.headers["x-request-id"]


def test_agent_cannot_revoke_another_agents_key(api):
    attacker = api.new_agent()
    victim = api.new_agent()
    attacker_key = api.new_key(attacker)["device_key"]
    victim_key = api.new_key(victim)
    before = all_events(api)
    stolen = api.device(attacker_key, "device/revoke", {"key_id": victim_key["key_id"]})
    never_made = api.device(attacker_key, "device/revoke", {"key_id": ids.new_device_key_id(ids.new_agent_id())})
    never_made_mine = api.device(attacker_key, "device/revoke", {"key_id": ids.new_device_key_id(attacker)})
    for answer in (stolen, never_made, never_made_mine):
        assert_not_found(answer)
    assert stolen.data == never_made.data == never_made_mine.data
    assert live(api, victim_key["device_key"])
    assert key_list(api, victim)[victim_key["key_id"]]["revoked_at"] is None
    assert all_events(api) == before


@pytest.mark.parametrize("key_id", ["nope", "dk_short", "agt_" + "A" * 22, "x" * 128])
def test_revoke_of_a_malformed_key_id_is_the_same_404(api, key_id):
    never_made = api.bridge("device/revoke", {"key_id": ids.new_device_key_id(ids.new_agent_id())})
    assert_not_found(never_made)
    assert_not_found(api.bridge("device/revoke", {"key_id": key_id}))


def test_revoke_refuses_bad_bodies(api):
    assert_invalid(api.bridge("device/revoke", {}), "key_id")
    assert_invalid(api.bridge("device/revoke", {"key_id": "a/b"}), "key_id")
    assert_invalid(api.bridge("device/revoke", {"key_id": 5}), "key_id")
    assert_invalid(api.bridge("device/revoke", {"key_id": "x", "agent_id": "y"}), "unknown field 'agent_id'")


def test_revoking_twice_changes_nothing_the_second_time(api, frozen_clock):
    frozen_clock(T0)
    key = api.new_key(api.new_agent())
    first = api.bridge("device/revoke", {"key_id": key["key_id"]})
    frozen_clock(at(100))
    second = api.bridge("device/revoke", {"key_id": key["key_id"]})
    assert first.status_code == second.status_code == 200
    assert second.get_json() == first.get_json() == {"key_id": key["key_id"], "revoked_at": stamp(T0)}
    assert len(events(api, "device.revoke")) == 1


# --- rotation ----------------------------------------------------------------------------------------


def test_rotation_keeps_the_old_key_for_the_grace_period_only(api, frozen_clock):
    frozen_clock(T0)
    agent_id = api.new_agent()
    old = api.new_key(agent_id, label="old")
    frozen_clock(at(10))
    answer = api.call(
        "device/issue",
        {"agent_id": agent_id, "replaces_key_id": old["key_id"], "label": "new"},
        {"x-agentpack-key": BRIDGE_KEY, "x-request-id": "rot-1"},
    )
    assert answer.status_code == 201
    new = answer.get_json()
    assert set(new) == ISSUE_FIELDS
    assert new["key_id"] != old["key_id"] and new["expires_at"] is None
    listed = key_list(api, agent_id)
    assert listed[old["key_id"]]["expires_at"] == stamp(at(10 + 3600))
    assert listed[old["key_id"]]["revoked_at"] is None

    frozen_clock(at(10 + 3599))
    assert live(api, old["device_key"]) and live(api, new["device_key"])
    frozen_clock(at(10 + 3600))
    assert not live(api, old["device_key"])
    assert live(api, new["device_key"])
    frozen_clock(at(10 + 7200))
    assert not live(api, old["device_key"])

    (event,) = events(api, "device.rotate")
    assert event["actor"] == {"kind": "bridge"}
    assert event["target"] == {
        "kind": "device_key",
        "key_id": new["key_id"],
        "agent_id": agent_id,
        "replaces_key_id": old["key_id"],
    }
    assert event["request_id"] == "rot-1"
    assert len(events(api, "device.issue")) == 1  # the first key only: a rotation is not also an issue


def test_rotation_uses_the_grace_setting(api, frozen_clock):
    frozen_clock(T0)
    set_setting(api, "rotation_grace_seconds", 120)
    agent_id = api.new_agent()
    old = api.new_key(agent_id)
    api.new_key(agent_id, replaces_key_id=old["key_id"])
    frozen_clock(at(119))
    assert live(api, old["device_key"])
    frozen_clock(at(120))
    assert not live(api, old["device_key"])


def test_rotation_with_no_grace_stops_the_old_key_at_once(api, frozen_clock):
    frozen_clock(T0)
    set_setting(api, "rotation_grace_seconds", 0)
    agent_id = api.new_agent()
    old = api.new_key(agent_id)
    new = api.new_key(agent_id, replaces_key_id=old["key_id"])
    assert not live(api, old["device_key"])
    assert live(api, new["device_key"])


def test_rotation_never_extends_a_keys_life(api, frozen_clock):
    frozen_clock(T0)
    agent_id = api.new_agent()
    old = api.new_key(agent_id, ttl_seconds=600)
    api.new_key(agent_id, replaces_key_id=old["key_id"])
    assert key_list(api, agent_id)[old["key_id"]]["expires_at"] == stamp(at(600))
    frozen_clock(at(600))
    assert not live(api, old["device_key"])


def test_agent_rotates_its_own_key(api, frozen_clock):
    frozen_clock(T0)
    set_setting(api, "rotation_grace_seconds", 60)
    agent_id = api.new_agent()
    victim = api.new_agent()
    old = api.new_key(agent_id)
    answer = api.device(old["device_key"], "device/issue", {"agent_id": victim, "replaces_key_id": old["key_id"]})
    assert answer.status_code == 201
    new = answer.get_json()
    assert new["agent_id"] == agent_id
    assert live(api, old["device_key"])
    frozen_clock(at(60))
    assert not live(api, old["device_key"])
    assert live(api, new["device_key"])
    (event,) = events(api, "device.rotate")
    assert event["actor"] == {"kind": "agent", "agent_id": agent_id}
    assert event["target"]["replaces_key_id"] == old["key_id"]
    assert key_list(api, victim) == {}


def test_replacing_a_revoked_or_expired_key_is_409_and_changes_nothing(api, frozen_clock):
    frozen_clock(T0)
    agent_id = api.new_agent()
    revoked = api.new_key(agent_id)
    expired = api.new_key(agent_id, ttl_seconds=60)
    api.bridge("device/revoke", {"key_id": revoked["key_id"]})
    frozen_clock(at(60))
    before = key_list(api, agent_id)
    before_events = all_events(api)
    assert_conflict(api.bridge("device/issue", {"agent_id": agent_id, "replaces_key_id": revoked["key_id"]}), NOT_LIVE)
    assert_conflict(api.bridge("device/issue", {"agent_id": agent_id, "replaces_key_id": expired["key_id"]}), NOT_LIVE)
    assert key_list(api, agent_id) == before
    assert all_events(api) == before_events


def test_replacing_another_agents_key_is_404_and_changes_nothing(api, frozen_clock):
    frozen_clock(T0)
    me = api.new_agent()
    victim = api.new_agent()
    mine = api.new_key(me)
    theirs = api.new_key(victim)
    before_events = all_events(api)
    by_agent = api.device(mine["device_key"], "device/issue", {"replaces_key_id": theirs["key_id"]})
    by_bridge = api.bridge("device/issue", {"agent_id": me, "replaces_key_id": theirs["key_id"]})
    never_made = api.bridge("device/issue", {"agent_id": me, "replaces_key_id": ids.new_device_key_id(me)})
    malformed = api.bridge("device/issue", {"agent_id": me, "replaces_key_id": "dk_nope"})
    for answer in (by_agent, by_bridge, never_made, malformed):
        assert_not_found(answer)
    assert list(key_list(api, me)) == [mine["key_id"]]
    assert key_list(api, victim)[theirs["key_id"]]["expires_at"] is None
    frozen_clock(at(10 * 86400))
    assert live(api, theirs["device_key"])
    assert all_events(api) == before_events


# --- the active-key limit ----------------------------------------------------------------------------


def test_max_active_keys_is_enforced_and_revoking_frees_a_slot(api):
    set_setting(api, "device_key_max_active", 2)
    agent_id = api.new_agent()
    first = api.new_key(agent_id)
    api.new_key(agent_id)
    before_events = all_events(api)
    assert_conflict(api.bridge("device/issue", {"agent_id": agent_id}), TOO_MANY)
    assert_conflict(api.device(first["device_key"], "device/issue", {}), TOO_MANY)
    assert len(key_list(api, agent_id)) == 2
    assert all_events(api) == before_events
    api.bridge("device/revoke", {"key_id": first["key_id"]})
    assert api.bridge("device/issue", {"agent_id": agent_id}).status_code == 201
    assert_conflict(api.bridge("device/issue", {"agent_id": agent_id}), TOO_MANY)


@pytest.mark.usefixtures("patient_datastore")
def test_concurrent_issues_cannot_overrun_the_limit(api):
    set_setting(api, "device_key_max_active", 2)
    agent_id = api.new_agent()
    api.new_key(agent_id)
    answers: list[Any] = []
    lock = threading.Lock()

    def issue() -> None:
        answer = api.bridge("device/issue", {"agent_id": agent_id})
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=issue) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    statuses = [a.status_code for a in answers]
    assert len(statuses) == 3 and set(statuses) <= {201, 409, 503}, statuses
    assert statuses.count(201) <= 1
    listed = key_list(api, agent_id)
    assert len(listed) == 1 + statuses.count(201)
    assert len(events(api, "device.issue")) == len(listed)


def test_max_active_is_per_agent(api):
    set_setting(api, "device_key_max_active", 1)
    first = api.new_agent()
    second = api.new_agent()
    api.new_key(first)
    assert api.bridge("device/issue", {"agent_id": second}).status_code == 201
    assert_conflict(api.bridge("device/issue", {"agent_id": first}), TOO_MANY)


def test_expired_keys_do_not_count(api, frozen_clock):
    frozen_clock(T0)
    set_setting(api, "device_key_max_active", 2)
    agent_id = api.new_agent()
    api.new_key(agent_id, ttl_seconds=60)
    api.new_key(agent_id)
    assert_conflict(api.bridge("device/issue", {"agent_id": agent_id}), TOO_MANY)
    frozen_clock(at(59))
    assert_conflict(api.bridge("device/issue", {"agent_id": agent_id}), TOO_MANY)
    frozen_clock(at(60))
    assert api.bridge("device/issue", {"agent_id": agent_id}).status_code == 201


def test_rotation_is_allowed_at_the_limit(api, frozen_clock):
    frozen_clock(T0)
    set_setting(api, "device_key_max_active", 2)
    agent_id = api.new_agent()
    old = api.new_key(agent_id)
    api.new_key(agent_id)
    rotated = api.bridge("device/issue", {"agent_id": agent_id, "replaces_key_id": old["key_id"]})
    assert rotated.status_code == 201
    assert live(api, old["device_key"])  # in its grace period, not counted
    assert_conflict(api.bridge("device/issue", {"agent_id": agent_id}), TOO_MANY)


def test_lowering_the_limit_blocks_new_keys_but_keeps_old_ones(api):
    agent_id = api.new_agent()
    made = [api.new_key(agent_id) for _ in range(3)]
    set_setting(api, "device_key_max_active", 2)
    assert_conflict(api.bridge("device/issue", {"agent_id": agent_id}), TOO_MANY)
    assert all(live(api, k["device_key"]) for k in made)


# --- secrets never leave, and only changes are audited ----------------------------------------------


def test_no_answer_ever_carries_a_hash_or_a_key_after_issue(api, frozen_clock):
    frozen_clock(T0)
    agent_id = api.new_agent()
    other = api.new_agent(tenant_id="t2")
    answers: list[Any] = []
    issued: list[dict[str, Any]] = []

    def call(answer: Any) -> Any:
        answers.append(answer)
        return answer

    first = api.new_key(agent_id, label="a")
    second = api.new_key(agent_id, label="b", ttl_seconds=600)
    issued += [first, second]
    rotated = api.device(first["device_key"], "device/issue", {"replaces_key_id": first["key_id"]})
    assert rotated.status_code == 201  # an issue answer: the one place a device key may appear
    issued.append(rotated.get_json())
    call(api.device(second["device_key"], "agents/get", {}))
    call(api.device(second["device_key"], "device/list", {}))
    call(api.bridge("device/list", {"agent_id": agent_id}))
    call(api.bridge("agents/get", {"agent_id": agent_id}))
    call(api.bridge("agents/list", {}))
    call(api.bridge("device/revoke", {"key_id": second["key_id"]}))
    call(api.device(second["device_key"], "agents/get", {}))  # 401 now
    call(api.device(rotated.get_json()["device_key"], "device/revoke", {"key_id": ids.new_device_key_id(other)}))
    call(api.bridge("device/issue", {"agent_id": agent_id, "replaces_key_id": second["key_id"]}))  # 409
    call(api.bridge("device/issue", {"agent_id": agent_id, "ttl_seconds": 1}))  # 400
    call(api.bridge("agents/update", {"agent_id": agent_id, "disabled": True}))
    call(api.device(rotated.get_json()["device_key"], "device/list", {}))  # 401
    for action in ACTIONS:
        call(api.bridge("audit/list", {"action": action}))
    call(api.bridge("audit/list", {"agent_id": agent_id}))
    call(api.bridge("settings/list", {}))
    call(api.bridge("agents/update", {"agent_id": agent_id, "disabled": False}))

    statuses = [a.status_code for a in answers]
    assert 500 not in statuses
    assert {200, 400, 401, 404, 409} <= set(statuses)
    forbidden = {BRIDGE_KEY, keys.hash_key(BRIDGE_KEY), hashlib.sha256(BRIDGE_KEY.encode()).hexdigest()}
    for key in issued:
        forbidden |= {key["device_key"], keys.hash_key(key["device_key"])}
    for answer in answers:
        text = answer.data.decode()
        for value in forbidden:
            assert value not in text, answer.request.path
        assert "key_hash" not in text
        assert "apkd_" not in text
        assert not re.search(r"\b[0-9a-f]{64}\b", text)
        assert not any(value in v for _, v in answer.headers.items() for value in forbidden)


def test_rejected_requests_write_no_event_and_change_nothing(api, frozen_clock):
    frozen_clock(T0)
    set_setting(api, "device_key_max_active", 1)
    agent_id = api.new_agent()
    other = api.new_agent()
    key = api.new_key(agent_id)
    other_key = api.new_key(other)
    before_events = all_events(api)
    before_keys = (key_list(api, agent_id), key_list(api, other))
    rejected = [
        api.bridge("device/issue", {"agent_id": agent_id}),  # 409: the limit
        api.bridge("device/issue", {"agent_id": agent_id, "ttl_seconds": 59}),  # 400
        api.bridge("device/issue", {"agent_id": agent_id, "replaces_key_id": other_key["key_id"]}),  # 404
        api.device(key["device_key"], "device/revoke", {"key_id": other_key["key_id"]}),  # 404
        api.bridge("device/revoke", {"key_id": ids.new_device_key_id(agent_id)}),  # 404
        api.bridge("agents/update", {"agent_id": ids.new_agent_id(), "disabled": True}),  # 404
        api.bridge("agents/update", {"agent_id": agent_id, "display_name": ""}),  # 400
        api.bridge("agents/create", {"display_name": "x", "tenant_id": "a/b"}),  # 400
        api.device(key["device_key"], "agents/update", {"agent_id": other, "disabled": True}),  # 403
        api.device(key["device_key"], "agents/create", {"display_name": "x"}),  # 403
        api.bridge("settings/set", {"key": "device_key_max_active", "value": 0}),  # 400
    ]
    assert [a.status_code for a in rejected] == [409, 400, 404, 404, 404, 404, 400, 400, 403, 403, 400]
    assert all_events(api) == before_events
    assert (key_list(api, agent_id), key_list(api, other)) == before_keys
    assert len(api.bridge("agents/list", {}).get_json()["agents"]) == 2
    assert live(api, other_key["device_key"])


def test_every_change_writes_exactly_one_event(api, frozen_clock):
    frozen_clock(T0)
    agent_id = api.new_agent()
    first = api.new_key(agent_id)
    second = api.new_key(agent_id, replaces_key_id=first["key_id"])
    api.bridge("device/revoke", {"key_id": second["key_id"]})
    api.bridge("agents/update", {"agent_id": agent_id, "display_name": "renamed"})
    counts = {action: len(events(api, action, agent_id=agent_id)) for action in ACTIONS}
    assert counts == {
        "agent.create": 1,
        "agent.update": 1,
        "device.issue": 1,
        "device.rotate": 1,
        "device.revoke": 1,
        "setting.set": 0,
    }


def test_a_replaced_key_authenticates_in_its_grace_window_but_may_not_issue(api) -> None:
    agent_id = api.new_agent()
    old = api.new_key(agent_id)
    rotated = api.device(old["device_key"], "device/issue", {"replaces_key_id": old["key_id"]})
    assert rotated.status_code == 201
    assert api.device(old["device_key"], "agents/get", {}).status_code == 200  # grace window
    again = api.device(old["device_key"], "device/issue", {"replaces_key_id": old["key_id"]})
    fresh = api.device(old["device_key"], "device/issue", {})
    for answer in (again, fresh):
        assert answer.status_code == 403
        assert answer.get_json()["error"] == "forbidden"
    # The new key, or the bridge, cannot replace the superseded key a second time either.
    twice = api.bridge("device/issue", {"agent_id": agent_id, "replaces_key_id": old["key_id"]})
    assert twice.status_code == 409
    listed = api.bridge("device/list", {"agent_id": agent_id}).get_json()["keys"]
    assert len(listed) == 2


def test_rotations_cannot_be_chained_past_the_key_limit(api) -> None:
    agent_id = api.new_agent()
    assert api.bridge("settings/set", {"key": "device_key_max_active", "value": 1}).status_code == 200
    first = api.new_key(agent_id)
    second = api.device(first["device_key"], "device/issue", {"replaces_key_id": first["key_id"]})
    assert second.status_code == 201  # at the limit, one rotation may exceed it by the key in grace
    new = second.get_json()
    third = api.device(new["device_key"], "device/issue", {"replaces_key_id": new["key_id"]})
    assert third.status_code == 409
    live = [k for k in api.bridge("device/list", {"agent_id": agent_id}).get_json()["keys"] if k["revoked_at"] is None]
    assert len(live) == 2
