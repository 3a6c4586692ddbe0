"""No timing oracle on another agent's secrets: a refused request never receives nor decodes them.

A delegated ``secrets/get`` names the grantor's secret before the delegation is checked (a
delegation ID names its grantor, so anyone can write one). The secret is read beside the
credential, in flight at the same time, but collected only once the credential and the
delegation stand: a refusal drops it unread. Observed here through what the store decodes, never
through time. (A device key's own agent's secret comes in its key's read: docs/security.md.)
"""

from __future__ import annotations

from typing import Any

import pytest

from shared import ids, keys, store
from tests.conftest import Api

BIG = "s" * 30_000


class Decoded:
    """Every document the store decodes from an answer (observation only: decoding still happens)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.documents: list[dict[str, Any]] = []
        real = store._decode_fields

        def recording(fields: Any) -> Any:
            document = real(fields)
            self.documents.append(document)
            return document

        monkeypatch.setattr(store, "_decode_fields", recording)

    def secrets(self) -> list[dict[str, Any]]:
        return [d for d in self.documents if "ciphertext" in d]


@pytest.fixture
def grantor(api: Api) -> tuple[str, str]:
    agent_id = api.new_agent("grantor")
    key = api.new_key(agent_id)["device_key"]
    assert api.device(key, "secrets/put", {"name": "db", "value": BIG}).status_code == 200
    return agent_id, key


@pytest.fixture
def asker(api: Api) -> tuple[str, str]:
    agent_id = api.new_agent("asker")
    return agent_id, api.new_key(agent_id)["device_key"]


def delegated_get(api: Api, key: str, delegation_id: str) -> Any:
    headers = {"x-agentpack-device-key": key, "x-agentpack-delegation": delegation_id}
    return api.call("secrets/get", {"name": "db"}, headers)


def test_a_refused_delegated_get_never_decodes_the_grantors_secret(
    api: Api, grantor: tuple[str, str], asker: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    grantor_id, grantor_key = grantor
    asker_id, asker_key = asker
    other_scope = api.device(
        grantor_key, "delegate", {"to_agent": asker_id, "scope": ["secrets/list"], "ttl_seconds": 600}
    ).get_json()["delegation_id"]
    revoked = api.device(
        grantor_key, "delegate", {"to_agent": asker_id, "scope": ["secrets/get"], "ttl_seconds": 600}
    ).get_json()["delegation_id"]
    assert api.device(grantor_key, "delegate/revoke", {"delegation_id": revoked}).status_code == 200
    decoded = Decoded(monkeypatch)
    for delegation_id in (ids.new_delegation_id(grantor_id), other_scope, revoked):
        answer = delegated_get(api, asker_key, delegation_id)
        assert answer.status_code == 403, answer.get_json()
        assert BIG not in answer.get_data(as_text=True)
    assert decoded.documents != []  # the credentials and delegations were read and decoded
    assert decoded.secrets() == []
    # The control: a delegation that stands reads the same secret, in the same request shape.
    granted = api.device(
        grantor_key, "delegate", {"to_agent": asker_id, "scope": ["secrets/get"], "ttl_seconds": 600}
    ).get_json()["delegation_id"]
    answer = delegated_get(api, asker_key, granted)
    assert answer.status_code == 200 and answer.get_json()["value"] == BIG
    assert [d["agent_id"] for d in decoded.secrets()] == [grantor_id]


def test_a_forged_device_key_with_a_delegation_never_decodes_the_grantors_secret(
    api: Api, grantor: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    grantor_id, grantor_key = grantor
    # A well-formed key (the checksum is public) of an agent that does not exist, with a delegation ID
    # naming the grantor: the grantor's secret is named before any check.
    forged = keys.new_device_key(ids.new_device_key_id(ids.new_agent_id()))
    delegation_id = ids.new_delegation_id(grantor_id)
    decoded = Decoded(monkeypatch)
    headers = {"x-agentpack-device-key": forged, "x-agentpack-delegation": delegation_id}
    assert api.call("secrets/get", {"name": "db"}, headers).status_code == 401
    assert decoded.secrets() == []
    assert api.device(grantor_key, "secrets/get", {"name": "db"}).get_json()["value"] == BIG  # the control
    assert len(decoded.secrets()) == 1


def test_a_dropped_read_can_not_be_collected_and_a_collected_one_is_kept(api: Api, grantor: tuple[str, str]) -> None:
    grantor_id, _ = grantor
    path = f"agents/{grantor_id}/secrets/s_db"
    with store.start_read([path], own_connection=True) as dropped:
        pass
    with pytest.raises(RuntimeError):
        dropped.result()
    with store.start_read([path], own_connection=True) as kept:
        (record,) = kept.result()
    assert record is not None and record["name"] == "db"
    assert kept.result() == [record]  # leaving the block after collecting drops nothing
    assert store.start_read([]).result() == []
