"""Faults: a datastore that cannot be reached, and a deployment that is misconfigured.

The contract: ``503 unavailable`` (datastore unreachable; nothing half-written), within seconds,
never a hung request, never a 500, and never a weaker check. The datastore is made unreachable
by pointing the next client at a closed port, or at a port that accepts TCP but never speaks.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from shared import config, keys, store
from tests.conftest import BRIDGE_KEY, DEV_ENV, Api
from tests.emulator_rest import admin

UNAVAILABLE_BODY_KEYS = {"error", "error_description"}
ANSWER_WITHIN_SECONDS = 5.0  # the deadline is 0.5 s; leave room for a loaded CI machine


# ---------------------------------------------------------------- helpers


def assert_unavailable(answer: Any) -> None:
    assert answer.status_code == 503, (answer.status_code, answer.data[:300])
    body = json.loads(answer.data)
    assert set(body) == UNAVAILABLE_BODY_KEYS, body
    assert body["error"] == "unavailable"
    assert isinstance(body["error_description"], str) and body["error_description"]
    assert "Traceback" not in body["error_description"]
    assert answer.headers.get("x-request-id")


def snapshot(host: str) -> dict[str, Any]:
    """Every document in the datastore (any depth), by full name, with its fields: read as admin over REST."""
    found: dict[str, Any] = {}

    def walk(parent: str) -> None:
        listed = admin(host, "POST", f"{parent}:listCollectionIds", {"pageSize": 1000})
        for collection in listed.get("collectionIds", []):
            page = admin(host, "GET", f"{parent}/{collection}?pageSize=1000&showMissing=true")
            for doc in page.get("documents", []):
                name = doc["name"]
                found[name] = doc.get("fields")
                walk(name.split("/documents", 1)[1])

    walk("")
    return found


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _black_hole() -> Iterator[int]:
    """A port that completes TCP handshakes (the kernel's backlog) but never answers a byte."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield int(s.getsockname()[1])


class Datastore:
    def __init__(self, monkeypatch: pytest.MonkeyPatch, host: str) -> None:
        self.monkeypatch = monkeypatch
        self.host = host

    def point_at(self, address: str) -> None:
        self.monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", address)
        self.monkeypatch.setenv("AGENTPACK_DATASTORE_DEADLINE_SECONDS", "0.5")
        config.reset()
        store.reset()

    def restore(self) -> None:
        self.monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", self.host)
        self.monkeypatch.delenv("AGENTPACK_DATASTORE_DEADLINE_SECONDS", raising=False)
        config.reset()
        store.reset()


@pytest.fixture
def datastore(monkeypatch: pytest.MonkeyPatch, emulator_host: str) -> Iterator[Datastore]:
    handle = Datastore(monkeypatch, emulator_host)
    yield handle
    handle.restore()


@pytest.fixture
def world(api: Api) -> dict[str, Any]:
    """One agent with two device keys, a changed setting: enough for every route to have something to do."""
    agent = api.new_agent("victim")
    first = api.new_key(agent, label="one")
    second = api.new_key(agent, label="two")
    assert api.bridge("settings/set", {"key": "rotation_grace_seconds", "value": 120}).status_code == 200
    return {"agent": agent, "key": first, "other": second}


Request = Callable[[Api, dict[str, Any]], Any]

REQUESTS: dict[str, Request] = {
    "device-key agents/get": lambda api, w: api.device(w["key"]["device_key"], "agents/get", {}),
    "device-key device/issue": lambda api, w: api.device(w["key"]["device_key"], "device/issue", {}),
    "agents/create": lambda api, w: api.bridge("agents/create", {"display_name": "new"}),
    "agents/update": lambda api, w: api.bridge("agents/update", {"agent_id": w["agent"], "disabled": True}),
    "agents/list": lambda api, w: api.bridge("agents/list", {}),
    "device/issue": lambda api, w: api.bridge("device/issue", {"agent_id": w["agent"]}),
    "device/issue rotation": lambda api, w: api.bridge(
        "device/issue", {"agent_id": w["agent"], "replaces_key_id": w["key"]["key_id"]}
    ),
    "device/revoke": lambda api, w: api.bridge("device/revoke", {"key_id": w["key"]["key_id"]}),
    "settings/set": lambda api, w: api.bridge("settings/set", {"key": "device_key_max_active", "value": 3}),
    "settings/list": lambda api, w: api.bridge("settings/list", {}),
    "audit/list": lambda api, w: api.bridge("audit/list", {}),
}


def _secrets_of(world: dict[str, Any]) -> list[str]:
    plain = [BRIDGE_KEY, world["key"]["device_key"], world["other"]["device_key"]]
    return plain + [keys.hash_key(k) for k in plain]


def _assert_clean_logs(caplog: pytest.LogCaptureFixture, secrets: list[str]) -> None:
    text = caplog.text + "".join(r.getMessage() for r in caplog.records)
    for secret in secrets:
        assert secret not in text
    assert "Traceback" not in text
    assert not any(r.exc_info for r in caplog.records)


# ---------------------------------------------------------------- the datastore is unreachable


UNREACHABLE_CASES = [
    "device-key agents/get",
    "device-key device/issue",
    "agents/create",
    "agents/list",
    "device/issue",
    "device/revoke",
    "settings/set",
    "settings/list",
    "audit/list",
]


@pytest.mark.parametrize("name", UNREACHABLE_CASES)
def test_unreachable_datastore_is_503_quickly_and_nothing_is_written(
    api: Api, world: dict[str, Any], datastore: Datastore, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    before = snapshot(datastore.host)
    assert before  # the world is there: the comparison below can fail
    datastore.point_at(f"127.0.0.1:{_closed_port()}")
    started = time.monotonic()
    answer = REQUESTS[name](api, world)
    elapsed = time.monotonic() - started
    assert_unavailable(answer)
    assert elapsed < ANSWER_WITHIN_SECONDS, elapsed
    datastore.restore()
    assert snapshot(datastore.host) == before
    _assert_clean_logs(caplog, _secrets_of(world))


@pytest.mark.parametrize("name", ["device-key agents/get", "agents/create"])
def test_a_datastore_that_accepts_but_never_answers_is_503_within_the_deadline(
    api: Api, world: dict[str, Any], datastore: Datastore, name: str
) -> None:
    before = snapshot(datastore.host)
    with _black_hole() as port:
        datastore.point_at(f"127.0.0.1:{port}")
        started = time.monotonic()
        answer = REQUESTS[name](api, world)
        elapsed = time.monotonic() - started
    assert_unavailable(answer)
    assert elapsed < ANSWER_WITHIN_SECONDS, elapsed
    datastore.restore()
    assert snapshot(datastore.host) == before


def test_the_service_recovers_once_the_datastore_is_back(api: Api, world: dict[str, Any], datastore: Datastore) -> None:
    datastore.point_at(f"127.0.0.1:{_closed_port()}")
    assert_unavailable(REQUESTS["device-key agents/get"](api, world))
    datastore.restore()
    # The same credentials work again, and what was refused can now be done.
    assert REQUESTS["device-key agents/get"](api, world).status_code == 200
    assert api.bridge("agents/create", {"display_name": "after"}).status_code == 201
    events = api.bridge("audit/list", {"action": "agent.create"}).get_json()["events"]
    assert events[0]["target"]["agent_id"] != world["agent"]
    assert len(events) == 2


def test_failed_writes_leave_no_audit_event_and_no_agent(api: Api, world: dict[str, Any], datastore: Datastore) -> None:
    """The API's own view agrees with the raw snapshot: no agent, no key, no event from refused writes."""
    agents_before = api.bridge("agents/list", {}).get_json()
    events_before = {
        action: api.bridge("audit/list", {"action": action}).get_json()
        for action in ("agent.create", "device.issue", "device.revoke", "setting.set", "agent.update")
    }
    keys_before = api.bridge("device/list", {"agent_id": world["agent"]}).get_json()
    settings_before = api.bridge("settings/list", {}).get_json()
    datastore.point_at(f"127.0.0.1:{_closed_port()}")
    for name in ("agents/create", "device/revoke", "settings/set"):
        assert REQUESTS[name](api, world).status_code not in (200, 201)
    datastore.restore()
    assert api.bridge("agents/list", {}).get_json() == agents_before
    for action, page in events_before.items():
        assert api.bridge("audit/list", {"action": action}).get_json() == page
    assert api.bridge("device/list", {"agent_id": world["agent"]}).get_json() == keys_before
    assert api.bridge("settings/list", {}).get_json() == settings_before


# ---------------------------------------------------------------- a malformed configuration

SOME_HASH = "0" * 64

MALFORMED: dict[str, dict[str, str | None]] = {
    "hashes not hex": {"AGENTPACK_BRIDGE_KEY_HASHES": "nothex"},
    "one bad hash beside a good one": {
        "AGENTPACK_BRIDGE_KEY_HASHES": keys.hash_key(BRIDGE_KEY) + ",nothex",
        "AGENTPACK_BRIDGE_KEY": None,
    },
    "bridge key malformed": {"AGENTPACK_BRIDGE_KEY": "apkb_notakey"},
    "bridge key bad checksum": {"AGENTPACK_BRIDGE_KEY": BRIDGE_KEY[:-1] + ("A" if BRIDGE_KEY[-1] != "A" else "B")},
    "deadline not a number": {"AGENTPACK_DATASTORE_DEADLINE_SECONDS": "soon"},
    "deadline zero": {"AGENTPACK_DATASTORE_DEADLINE_SECONDS": "0"},
    "deadline huge": {"AGENTPACK_DATASTORE_DEADLINE_SECONDS": "1e9"},
    "capability ttl not a number": {"AGENTPACK_CAPABILITY_MAX_TTL_SECONDS": "300s"},
    "capability keys not json": {"AGENTPACK_CAPABILITY_PUBLIC_KEYS": "{nope"},
    "capability key not 32 bytes": {"AGENTPACK_CAPABILITY_PUBLIC_KEYS": '{"k": "AAAA"}'},
    "secret source unknown": {"AGENTPACK_SECRET_SOURCE": "vault"},
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_a_malformed_configuration_refuses_to_serve_with_503(
    api: Api, monkeypatch: pytest.MonkeyPatch, emulator_host: str, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    agent = api.new_agent()
    device_key = api.new_key(agent)["device_key"]
    before = snapshot(emulator_host)
    for variable, value in MALFORMED[name].items():
        if value is None:
            monkeypatch.delenv(variable, raising=False)
        else:
            monkeypatch.setenv(variable, value)
    config.reset()
    store.reset()
    assert_unavailable(api.bridge("settings/list", {}))
    assert_unavailable(api.bridge("agents/create", {"display_name": "x"}))
    assert_unavailable(api.bridge("settings/set", {"key": "device_key_max_active", "value": 2}))
    assert_unavailable(api.device(device_key, "agents/get", {}))
    # Without a credential: refused too, never served and never a 500.
    anonymous = api.call("settings/list", {}, {})
    assert anonymous.status_code in (401, 503), anonymous.data
    assert set(anonymous.get_json()) == UNAVAILABLE_BODY_KEYS
    for variable in MALFORMED[name]:
        if variable in DEV_ENV:
            monkeypatch.setenv(variable, DEV_ENV[variable])
        else:
            monkeypatch.delenv(variable, raising=False)
    config.reset()
    store.reset()
    assert api.bridge("settings/list", {}).status_code == 200  # the control: it was the configuration
    assert snapshot(emulator_host) == before
    _assert_clean_logs(caplog, [BRIDGE_KEY, device_key, keys.hash_key(BRIDGE_KEY), keys.hash_key(device_key)])


def test_bridge_key_hashes_alone_are_a_valid_configuration(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """The control for the test above: the production shape (hashes only) serves the bridge key."""
    monkeypatch.delenv("AGENTPACK_BRIDGE_KEY", raising=False)
    monkeypatch.setenv("AGENTPACK_BRIDGE_KEY_HASHES", f" {SOME_HASH} , {keys.hash_key(BRIDGE_KEY)} ")
    config.reset()
    assert api.bridge("settings/list", {}).status_code == 200
    other = keys.new_bridge_key()
    answer = api.call("settings/list", {}, {"x-agentpack-key": other})
    assert answer.status_code == 401


def test_no_bridge_key_configured_means_no_bridge_access(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTPACK_BRIDGE_KEY", raising=False)
    monkeypatch.delenv("AGENTPACK_BRIDGE_KEY_HASHES", raising=False)
    config.reset()
    answer = api.bridge("settings/list", {})
    assert answer.status_code in (401, 503)
    assert answer.status_code != 200


def test_no_datastore_credentials_is_503_not_500(api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside the emulator with no Google credentials, the client cannot even be built."""
    from shared import config, store

    monkeypatch.delenv("FIRESTORE_EMULATOR_HOST")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/credentials.json")
    config.reset()
    store.reset()
    answer = api.bridge("agents/create", {"display_name": "x"})
    assert answer.status_code == 503
    assert answer.get_json()["error"] == "unavailable"
