"""Credentials, attacked: missing, doubled, mistyped, forged, unknown, revoked, expired, disabled keys.

Every refusal of a primary credential is the same ``401`` byte for byte (no oracle), a mistyped key is
refused before any datastore read, and revocation or disabling holds from the very next request.
"""

from __future__ import annotations

import base64
import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared import ids, keys, store
from tests.conftest import BRIDGE_KEY, forged_device_key, function_client

UNAUTHENTICATED = b'{"error":"unauthenticated","error_description":"A valid credential is required."}'
AMBIGUOUS = {"error": "ambiguous_credentials", "error_description": "Send exactly one primary credential."}
T0 = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)

DEVICE = "x-agentpack-device-key"
BRIDGE = "x-agentpack-key"

# Routes of the identity core, each with a body that would be valid for the bridge key if it were sent.
CORE_ROUTES = (
    "agents/create",
    "agents/get",
    "agents/list",
    "agents/update",
    "device/issue",
    "device/revoke",
    "device/list",
    "audit/list",
    "settings/list",
    "settings/set",
)


def assert_unauthenticated(answer: Any) -> None:
    assert answer.status_code == 401, answer.get_json()
    assert answer.data == UNAUTHENTICATED
    assert answer.headers["Content-Type"].startswith("application/json")


def agent_with_key(api: Any, **extra: Any) -> tuple[str, dict[str, Any]]:
    agent_id = api.new_agent()
    return agent_id, api.new_key(agent_id, **extra)


def works(api: Any, key: str) -> bool:
    answer = api.device(key, "agents/get", {})
    assert answer.status_code in (200, 401), answer.get_json()
    return bool(answer.status_code == 200)


def recheck(text: str) -> str:
    """``text`` (a key without its checksum) with the checksum an honest client would compute."""
    return text + keys.checksum(text)


class StoreReads:
    """Records every datastore call the service makes (observation only: each call still goes through)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        for name in ("get_many", "start_read", "transact", "query", "list_children", "scan_group"):
            original = getattr(store, name)
            monkeypatch.setattr(store, name, self._recording(name, original))

    def _recording(self, name: str, original: Any) -> Any:
        def record(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return original(*args, **kwargs)

        return record


# --- missing, doubled and foreign credentials ---------------------------------------------------------


@pytest.mark.parametrize("route", CORE_ROUTES)
def test_no_credential_is_401_whatever_the_body(api, route):
    assert_unauthenticated(api.call(route, {"agent_id": 5, "junk": [1, 2]}))
    assert_unauthenticated(api.call(route, {}))
    assert_unauthenticated(api.call(route))


def test_no_credential_writes_nothing(api):
    assert_unauthenticated(api.call("agents/create", {"display_name": "sneaky"}))
    listed = api.bridge("agents/list", {})
    assert listed.status_code == 200
    assert listed.get_json() == {"agents": [], "next_page_token": None}
    for action in ("agent.create", "device.issue", "setting.set"):
        assert api.bridge("audit/list", {"action": action}).get_json()["events"] == []


def test_bridge_and_device_key_together_is_ambiguous(api):
    _, key = agent_with_key(api)
    answer = api.call("agents/get", {}, {BRIDGE: BRIDGE_KEY, DEVICE: key["device_key"]})
    assert answer.status_code == 400
    assert answer.get_json() == AMBIGUOUS


def test_bridge_key_and_authorization_together_is_ambiguous(api):
    answer = api.call("agents/list", {}, {BRIDGE: BRIDGE_KEY, "Authorization": "Bearer abc.def.ghi"})
    assert answer.status_code == 400
    assert answer.get_json() == AMBIGUOUS


def test_device_key_and_authorization_together_is_ambiguous(api):
    _, key = agent_with_key(api)
    answer = api.call("agents/get", {}, {DEVICE: key["device_key"], "Authorization": "Basic dXNlcjpwYXNz"})
    assert answer.status_code == 400
    assert answer.get_json() == AMBIGUOUS


def test_ambiguous_credentials_win_over_an_invalid_body(api):
    _, key = agent_with_key(api)
    answer = api.call("agents/create", {"nope": 1}, {BRIDGE: BRIDGE_KEY, DEVICE: key["device_key"]})
    assert answer.status_code == 400
    assert answer.get_json() == AMBIGUOUS
    assert len(api.bridge("agents/list", {}).get_json()["agents"]) == 1  # only the agent made above


def _post_raw_headers(route: str, headers: list[tuple[str, str]], body: Any) -> Any:
    return function_client(route.replace("/", "_")).post("/", headers=headers, json=body)


def test_the_same_device_key_header_twice_is_ambiguous(api):
    _, key = agent_with_key(api)
    headers = [(DEVICE, key["device_key"]), (DEVICE, key["device_key"])]
    answer = _post_raw_headers("agents/get", headers, {})
    assert answer.status_code == 400, answer.get_json()
    assert answer.get_json() == AMBIGUOUS


def test_two_different_device_keys_are_ambiguous(api):
    _, first = agent_with_key(api)
    _, second = agent_with_key(api)
    headers = [(DEVICE, first["device_key"]), (DEVICE, second["device_key"])]
    answer = _post_raw_headers("agents/get", headers, {})
    assert answer.status_code == 400, answer.get_json()
    assert answer.get_json() == AMBIGUOUS


def test_the_same_bridge_header_twice_is_ambiguous(api):
    answer = _post_raw_headers("agents/list", [(BRIDGE, BRIDGE_KEY), (BRIDGE, BRIDGE_KEY)], {})
    assert answer.status_code == 400, answer.get_json()
    assert answer.get_json() == AMBIGUOUS


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic " + base64.b64encode(b"admin:admin").decode(),
        "Basic " + base64.b64encode(f"x:{BRIDGE_KEY}".encode()).decode(),
        "Bearer garbage",
        "Bearer ",
        "Bearer",
        f"Bearer {BRIDGE_KEY}",
        "Digest username=admin",
        "bearer a.b.c",
    ],
)
def test_authorization_that_is_not_a_capability_token_is_401(api, authorization):
    assert_unauthenticated(api.call("agents/get", {}, {"Authorization": authorization}))


def test_device_key_as_a_bearer_token_is_401(api):
    _, key = agent_with_key(api)
    assert_unauthenticated(api.call("agents/get", {}, {"Authorization": f"Bearer {key['device_key']}"}))


def test_keys_in_the_wrong_header_are_401(api):
    _, key = agent_with_key(api)
    assert_unauthenticated(api.call("agents/list", {}, {BRIDGE: key["device_key"]}))
    assert_unauthenticated(api.call("agents/get", {}, {DEVICE: BRIDGE_KEY}))


# --- mistyped keys: refused before any datastore read --------------------------------------------------


def _flip(char: str) -> str:
    return "B" if char == "A" else "A"


def test_device_key_with_a_wrong_checksum_is_refused_before_any_read(api, monkeypatch):
    _, key = agent_with_key(api)
    good = key["device_key"]
    flipped_check = good[:-1] + _flip(good[-1])
    middle = len("apkd_") + 50  # inside the secret part
    flipped_body = good[:middle] + _flip(good[middle]) + good[middle + 1 :]
    flipped_agent_part = good[:6] + _flip(good[6]) + good[7:]
    reads = StoreReads(monkeypatch)
    for bad in (flipped_check, flipped_body, flipped_agent_part):
        assert_unauthenticated(api.device(bad, "agents/get", {}))
        assert_unauthenticated(api.device(bad, "device/issue", {"label": "x"}))
    assert reads.calls == []
    assert works(api, good)  # the real key is untouched
    assert reads.calls != []  # and the observation does see reads when there are some


def test_bridge_key_with_a_wrong_checksum_is_refused_before_any_read(api, monkeypatch):
    reads = StoreReads(monkeypatch)
    bad = BRIDGE_KEY[:-1] + _flip(BRIDGE_KEY[-1])
    assert_unauthenticated(api.call("agents/list", {}, {BRIDGE: bad}))
    assert_unauthenticated(api.call("agents/create", {"display_name": "x"}, {BRIDGE: bad}))
    assert reads.calls == []


def test_unconfigured_bridge_key_with_a_valid_checksum_is_401_with_no_read(api, monkeypatch):
    other = keys.new_bridge_key()
    assert keys.is_bridge_key(other)
    reads = StoreReads(monkeypatch)
    assert_unauthenticated(api.call("agents/create", {"display_name": "x"}, {BRIDGE: other}))
    assert_unauthenticated(api.call("agents/list", {}, {BRIDGE: other}))
    assert reads.calls == []
    assert api.bridge("agents/list", {}).get_json()["agents"] == []


@pytest.mark.parametrize(
    "malformed",
    [
        "",
        " ",
        "apkd_",
        "apkd",
        "APKD_abc",
        "apkd_" + "A" * 200,
        "apkd_" + "A" * 10_000,
        "apkd_!!!!",
        "apkb_" + "A" * 49,
        "dk_abc",
        "null",
        "apkd_../../agents",
    ],
)
def test_malformed_device_keys_are_401_with_no_read(api, monkeypatch, malformed):
    reads = StoreReads(monkeypatch)
    assert_unauthenticated(api.device(malformed, "agents/get", {}))
    assert reads.calls == []


def test_well_formed_key_of_an_unknown_key_id_is_401(api):
    agent_id, _ = agent_with_key(api)
    of_real_agent = forged_device_key(ids.new_device_key_id(agent_id))
    of_no_agent = forged_device_key(ids.new_device_key_id(ids.new_agent_id()))
    assert keys.parse_device_key(of_real_agent) is not None
    assert_unauthenticated(api.device(of_real_agent, "agents/get", {}))
    assert_unauthenticated(api.device(of_no_agent, "agents/get", {}))
    assert_unauthenticated(api.device(of_no_agent, "device/issue", {}))


def test_altered_secret_with_recomputed_checksum_is_401(api):
    _, key = agent_with_key(api)
    good = key["device_key"]
    text = good[: -keys.CHECK_LENGTH]
    at = len("apkd_") + 2 * ids.PART_LENGTH + 5  # inside the 43-digit secret
    forged = recheck(text[:at] + _flip(text[at]) + text[at + 1 :])
    assert keys.parse_device_key(forged) is not None  # passes the checksum: it reaches the hash check
    assert_unauthenticated(api.device(forged, "agents/get", {}))
    assert works(api, good)


def test_key_with_another_agents_id_embedded_is_401(api):
    agent_a, key_a = agent_with_key(api)
    agent_b, key_b = agent_with_key(api)
    text = key_a["device_key"][: -keys.CHECK_LENGTH]
    part_a, part_b = ids.agent_part(agent_a), ids.agent_part(agent_b)
    assert text.startswith("apkd_" + part_a)
    swapped = recheck(text.replace(part_a, part_b, 1))
    name = keys.parse_device_key(swapped)
    assert name is not None and name.agent_id == agent_b
    assert_unauthenticated(api.device(swapped, "agents/get", {}))
    assert_unauthenticated(api.device(swapped, "device/list", {}))
    # Worse: B's real key ID with A's secret.
    b_id_part = key_b["key_id"][len("dk_") :]
    a_secret = text[len("apkd_") + 2 * ids.PART_LENGTH :]
    grafted = recheck("apkd_" + b_id_part + a_secret)
    assert keys.parse_device_key(grafted) is not None
    assert_unauthenticated(api.device(grafted, "agents/get", {}))
    assert works(api, key_a["device_key"]) and works(api, key_b["device_key"])


def test_secret_of_one_key_under_a_sibling_key_id_is_401(api):
    """A's first key's secret presented under the key ID of A's second key."""
    agent_id = api.new_agent()
    first = api.new_key(agent_id)["device_key"]
    second = api.new_key(agent_id)
    text = first[: -keys.CHECK_LENGTH]
    swapped = recheck("apkd_" + second["key_id"][len("dk_") :] + text[len("apkd_") + 2 * ids.PART_LENGTH :])
    assert_unauthenticated(api.device(swapped, "agents/get", {}))


# --- revoked, expired, disabled -----------------------------------------------------------------------


def test_revoked_key_is_401_on_the_very_next_request(api):
    agent_id, key = agent_with_key(api)
    assert works(api, key["device_key"])
    revoked = api.bridge("device/revoke", {"key_id": key["key_id"]})
    assert revoked.status_code == 200
    assert_unauthenticated(api.device(key["device_key"], "agents/get", {}))
    assert_unauthenticated(api.device(key["device_key"], "device/issue", {}))
    assert_unauthenticated(api.device(key["device_key"], "device/revoke", {"key_id": key["key_id"]}))
    assert api.bridge("agents/get", {"agent_id": agent_id}).status_code == 200


def test_key_that_revokes_itself_is_dead_at_once(api):
    _, key = agent_with_key(api)
    answer = api.device(key["device_key"], "device/revoke", {"key_id": key["key_id"]})
    assert answer.status_code == 200
    assert set(answer.get_json()) == {"key_id", "revoked_at"}
    assert_unauthenticated(api.device(key["device_key"], "agents/get", {}))


def test_expired_key_is_401(api, frozen_clock):
    frozen_clock(T0)
    _, key = agent_with_key(api, ttl_seconds=60)
    assert key["expires_at"] == "2026-11-22T10:01:00Z"
    frozen_clock(T0 + timedelta(seconds=59))
    assert works(api, key["device_key"])
    frozen_clock(T0 + timedelta(seconds=60))
    assert_unauthenticated(api.device(key["device_key"], "agents/get", {}))
    frozen_clock(T0 + timedelta(days=3))
    assert_unauthenticated(api.device(key["device_key"], "agents/get", {}))


def test_disabled_agent_has_every_key_refused_and_re_enabling_restores_the_live_ones(api, frozen_clock):
    frozen_clock(T0)
    agent_id = api.new_agent()
    other_id, other_key = agent_with_key(api)
    keep = api.new_key(agent_id)
    short = api.new_key(agent_id, ttl_seconds=60)
    revoke_me = api.new_key(agent_id)
    everyone = (keep, short, revoke_me)
    assert all(works(api, k["device_key"]) for k in everyone)

    disabled = api.bridge("agents/update", {"agent_id": agent_id, "disabled": True})
    assert disabled.status_code == 200 and disabled.get_json()["disabled"] is True
    for k in everyone:
        assert_unauthenticated(api.device(k["device_key"], "agents/get", {}))
        assert_unauthenticated(api.device(k["device_key"], "device/list", {}))
    assert works(api, other_key["device_key"])  # another agent is untouched
    assert other_id != agent_id

    # While disabled: one key revoked, one expires.
    assert api.bridge("device/revoke", {"key_id": revoke_me["key_id"]}).status_code == 200
    frozen_clock(T0 + timedelta(seconds=120))

    enabled = api.bridge("agents/update", {"agent_id": agent_id, "disabled": False})
    assert enabled.status_code == 200 and enabled.get_json()["disabled"] is False
    assert works(api, keep["device_key"])
    assert_unauthenticated(api.device(short["device_key"], "agents/get", {}))
    assert_unauthenticated(api.device(revoke_me["device_key"], "agents/get", {}))


def test_every_refusal_is_byte_identical(api, frozen_clock):
    frozen_clock(T0)
    agent_id = api.new_agent()
    revoked = api.new_key(agent_id)
    expiring = api.new_key(agent_id, ttl_seconds=60)
    disabled_id, disabled_key = agent_with_key(api)
    api.bridge("device/revoke", {"key_id": revoked["key_id"]})
    api.bridge("agents/update", {"agent_id": disabled_id, "disabled": True})
    frozen_clock(T0 + timedelta(seconds=61))
    good = api.new_key(agent_id)["device_key"]
    cases: list[dict[str, str]] = [
        {},
        {DEVICE: ""},
        {DEVICE: "apkd_short"},
        {DEVICE: good[:-1] + _flip(good[-1])},
        {DEVICE: forged_device_key(ids.new_device_key_id(agent_id))},
        {DEVICE: forged_device_key(ids.new_device_key_id(ids.new_agent_id()))},
        {DEVICE: revoked["device_key"]},
        {DEVICE: expiring["device_key"]},
        {DEVICE: disabled_key["device_key"]},
        {BRIDGE: keys.new_bridge_key()},
        {BRIDGE: "apkb_nope"},
        {"Authorization": "Bearer garbage"},
        {"Authorization": "Basic YTpi"},
    ]
    answers = [api.call("agents/get", {"agent_id": agent_id}, headers) for headers in cases]
    for answer in answers:
        assert_unauthenticated(answer)
    # Nothing but the request id may differ between the answers.
    shapes = {
        (a.status_code, a.data, tuple(sorted((k, v) for k, v in a.headers.items() if k.lower() != "x-request-id")))
        for a in answers
    }
    assert len(shapes) == 1
    assert json.loads(UNAUTHENTICATED) == {
        "error": "unauthenticated",
        "error_description": "A valid credential is required.",
    }


# --- revocation racing use ----------------------------------------------------------------------------


@pytest.mark.usefixtures("patient_datastore")
def test_revoke_racing_use_never_500_and_holds_after_it_returns(api):
    agent_id, key = agent_with_key(api)
    device_key = key["device_key"]
    assert works(api, device_key)  # warm the app before the threads start
    revoked = threading.Event()
    problems: list[str] = []
    after_revoke: list[int] = []
    lock = threading.Lock()

    def use() -> None:
        for _ in range(25):
            started_after = revoked.is_set()
            answer = api.device(device_key, "agents/get", {"agent_id": agent_id})
            with lock:
                if answer.status_code not in (200, 401):
                    problems.append(f"status {answer.status_code}")
                elif answer.status_code == 200 and answer.get_json()["agent_id"] != agent_id:
                    problems.append("wrong agent")
                if started_after:
                    after_revoke.append(answer.status_code)

    def revoke() -> None:
        answer = api.bridge("device/revoke", {"key_id": key["key_id"]})
        with lock:
            if answer.status_code != 200:
                problems.append(f"revoke status {answer.status_code}")
        revoked.set()

    users = [threading.Thread(target=use) for _ in range(3)]
    for thread in users:
        thread.start()
    revoker = threading.Timer(0.05, revoke)
    revoker.start()
    for thread in users:
        thread.join(timeout=60)
    revoker.join(timeout=60)
    assert revoked.is_set()
    assert problems == []
    assert all(status == 401 for status in after_revoke), after_revoke
    for _ in range(5):
        assert_unauthenticated(api.device(device_key, "agents/get", {}))
    events = api.bridge("audit/list", {"action": "device.revoke"}).get_json()["events"]
    assert len(events) == 1


@pytest.mark.usefixtures("patient_datastore")
def test_two_revokes_racing_write_one_event(api):
    """Contention may cost a 503 (nothing half-written), never a 500, a second event or a live key."""
    _, key = agent_with_key(api)
    answers: list[Any] = []
    lock = threading.Lock()

    def revoke() -> None:
        answer = api.bridge("device/revoke", {"key_id": key["key_id"]})
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=revoke) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    statuses = sorted(a.status_code for a in answers)
    assert statuses[0] == 200 and set(statuses) <= {200, 503}, statuses
    assert len({a.get_json()["revoked_at"] for a in answers if a.status_code == 200}) == 1
    events = api.bridge("audit/list", {"action": "device.revoke"}).get_json()["events"]
    assert len(events) == 1
    assert_unauthenticated(api.device(key["device_key"], "agents/get", {}))
