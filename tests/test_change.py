"""The one audited change: no write without its event, no write after its credential fell.

These call ``change.apply`` directly, with principals resolved for real from
keys and delegations in the emulator, to reach the moments between resolution
and commit that an HTTP test cannot time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from shared import change, credentials, errors, records, store
from shared.principal import BRIDGE
from tests.conftest import Api


@dataclass(frozen=True)
class Request:
    headers: dict[str, list[str]]
    route: str = "secrets/put"
    request_id: str = "req-change-test"


def _documents(collection: str) -> list[Any]:
    return [doc.to_dict() for doc in store.client().collection(collection).stream()]


def _write_probe(c: change.Change) -> None:
    c.create("probe/one", {"written": True})
    c.record("agent.update", {"kind": "agent", "agent_id": "agt_probe"})


def test_a_write_without_its_event_is_refused_and_nothing_lands() -> None:
    def unaudited(c: change.Change) -> None:
        c.create("probe/one", {"written": True})

    with pytest.raises(errors.Internal):
        change.apply(BRIDGE.for_request("r1"), [], unaudited)
    assert _documents("probe") == [] and _documents(records.AUDIT_EVENTS) == []


def test_a_change_and_its_event_land_together_with_the_request_id() -> None:
    change.apply(BRIDGE.for_request("r2"), [], _write_probe)
    assert _documents("probe") == [{"written": True}]
    (event,) = _documents(records.AUDIT_EVENTS)
    assert event["request_id"] == "r2" and event["action"] == "agent.update"


def test_an_event_may_stand_alone_and_a_read_only_change_writes_nothing() -> None:
    assert change.apply(BRIDGE, [], lambda c: c.record("secret.integrity_failure", {"kind": "secret"})) is None
    assert len(_documents(records.AUDIT_EVENTS)) == 1
    assert change.apply(BRIDGE, ["probe/none"], lambda c: c["probe/none"]) is None
    assert len(_documents(records.AUDIT_EVENTS)) == 1


def test_a_document_not_named_in_reads_cannot_be_read() -> None:
    with pytest.raises(KeyError):
        change.apply(BRIDGE, [], lambda c: c["probe/unnamed"])


@pytest.mark.parametrize("fall", ["revoke the key", "disable the agent", "expire the key"])
def test_a_write_resolved_before_its_key_fell_does_not_land(api: Api, fall: str, frozen_clock: Any) -> None:
    agent_id = api.new_agent()
    issued = api.new_key(agent_id, ttl_seconds=600)
    principal = credentials.resolve(Request({"x-agentpack-device-key": [issued["device_key"]]}), agent_record=True)
    if fall == "revoke the key":
        assert api.bridge("device/revoke", {"key_id": issued["key_id"]}).status_code == 200
    elif fall == "disable the agent":
        assert api.bridge("agents/update", {"agent_id": agent_id, "disabled": True}).status_code == 200
    else:
        from datetime import UTC, datetime, timedelta

        frozen_clock(datetime.now(UTC) + timedelta(seconds=601))
    events_before = len(_documents(records.AUDIT_EVENTS))
    with pytest.raises(errors.Unauthenticated):
        change.apply(principal, [], _write_probe)
    assert _documents("probe") == [] and len(_documents(records.AUDIT_EVENTS)) == events_before


def test_a_write_resolved_before_its_delegation_fell_does_not_land(api: Api) -> None:
    grantor, grantee = api.new_agent("grantor"), api.new_agent("grantee")
    grantor_key = api.new_key(grantor)["device_key"]
    grantee_key = api.new_key(grantee)["device_key"]
    body = {"to_agent": grantee, "scope": ["secrets/put"], "ttl_seconds": 600}
    delegation_id = api.device(grantor_key, "delegate", body).get_json()["delegation_id"]
    headers = {"x-agentpack-device-key": [grantee_key], "x-agentpack-delegation": [delegation_id]}
    principal = credentials.resolve(Request(headers), agent_record=True)
    assert principal.agent_id == grantor and principal.actor_id == grantee
    assert api.device(grantor_key, "delegate/revoke", {"delegation_id": delegation_id}).status_code == 200
    with pytest.raises(errors.Forbidden):
        change.apply(principal, [], _write_probe)
    assert _documents("probe") == []
