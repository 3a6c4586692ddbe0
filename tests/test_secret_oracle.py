"""No timing oracle on another agent's secrets.

``secrets/get`` reads the secret in the same round trip as the credential, so that read starts
before the credential and any delegation are checked. Only a credential the service made for
the caller starts it: a device key and a delegation ID carry tags (``shared/read_ahead.py``). A
request made of anything else, such as a written key or delegation ID, or one addressed to
another agent, makes the datastore touch no secret at all. The read that did start is still
dropped unread when the delegation does not stand (revoked). Observed here through which
documents are requested and decoded, never through time (``bench/secret_oracle.py`` times it).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from shared import clock, ids, read_ahead, records, store
from tests import oauth_support
from tests.conftest import Api, forged_delegation_id, forged_device_key
from tests.reads import watch_reads

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


def secret_path(agent_id: str) -> str:
    return records.secret_path(agent_id, "db")


def delegated_get(api: Api, key: str, delegation_id: str) -> Any:
    headers = {"x-agentpack-device-key": key, "x-agentpack-delegation": delegation_id}
    return api.call("secrets/get", {"name": "db"}, headers)


def delegate(api: Api, grantor_key: str, to_agent: str, scope: list[str], ttl: int = 600) -> str:
    body = {"to_agent": to_agent, "scope": scope, "ttl_seconds": ttl}
    answer = api.device(grantor_key, "delegate", body)
    assert answer.status_code == 201, answer.get_json()
    return str(answer.get_json()["delegation_id"])


def test_a_delegation_the_caller_was_not_given_never_makes_the_grantors_secret_read(
    api: Api,
    grantor: tuple[str, str],
    asker: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    frozen_clock: Any,
) -> None:
    grantor_id, grantor_key = grantor
    asker_id, asker_key = asker
    bystander_id = api.new_agent("bystander")
    refused = {
        "written": forged_delegation_id(grantor_id),
        "other scope": delegate(api, grantor_key, asker_id, ["secrets/list"]),
        "another grantee's": delegate(api, grantor_key, bystander_id, ["secrets/get"]),
        "expired": delegate(api, grantor_key, asker_id, ["secrets/get"], ttl=60),
    }
    frozen_clock(clock.now() + timedelta(minutes=2))
    reads = watch_reads(monkeypatch)
    for kind, delegation_id in refused.items():
        reads.clear()
        answer = delegated_get(api, asker_key, delegation_id)
        assert answer.status_code == 403, (kind, answer.get_json())
        assert records.delegation_path(delegation_id) in reads.documents(), kind  # the delegation was read
        assert secret_path(grantor_id) not in reads.documents(), kind  # the secret was not
    # The control: a delegation that stands reads the same secret, in the same request shape, in one round trip.
    granted = delegate(api, grantor_key, asker_id, ["secrets/get"])
    reads.clear()
    answer = delegated_get(api, asker_key, granted)
    assert answer.status_code == 200 and answer.get_json()["value"] == BIG
    assert secret_path(grantor_id) in reads.documents() and reads.round_trips() == 1


def test_a_revoked_delegation_reads_ahead_but_never_decodes_the_grantors_secret(
    api: Api, grantor: tuple[str, str], asker: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    grantor_id, grantor_key = grantor
    asker_id, asker_key = asker
    revoked = delegate(api, grantor_key, asker_id, ["secrets/get"])
    assert api.device(grantor_key, "delegate/revoke", {"delegation_id": revoked}).status_code == 200
    reads, decoded = watch_reads(monkeypatch), Decoded(monkeypatch)
    answer = delegated_get(api, asker_key, revoked)
    assert answer.status_code == 403 and BIG not in answer.get_data(as_text=True)
    assert secret_path(grantor_id) in reads.documents()  # its tag still matches: the read started...
    assert decoded.documents != [] and decoded.secrets() == []  # ...and was dropped unread


def test_a_written_device_key_never_makes_a_secret_read(
    api: Api, grantor: tuple[str, str], asker: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    grantor_id, grantor_key = grantor
    asker_id, _ = asker
    granted = delegate(api, grantor_key, asker_id, ["secrets/get"])
    reads = watch_reads(monkeypatch)
    # Well-formed keys (the checksum is public) of the grantor itself, of the asker with the real
    # delegation, and of an agent that does not exist.
    for agent_id, delegation_id in ((grantor_id, None), (asker_id, granted), (ids.new_agent_id(), granted)):
        key_id = ids.new_device_key_id(agent_id)
        forged = forged_device_key(key_id)
        headers = {"x-agentpack-device-key": forged}
        if delegation_id is not None:
            headers["x-agentpack-delegation"] = delegation_id
        reads.clear()
        assert api.call("secrets/get", {"name": "db"}, headers).status_code == 401
        assert records.device_key_path(agent_id, key_id) in reads.documents()
        assert secret_path(grantor_id) not in reads.documents()
    reads.clear()
    assert api.device(grantor_key, "secrets/get", {"name": "db"}).get_json()["value"] == BIG  # the control
    assert secret_path(grantor_id) in reads.documents() and reads.round_trips() == 1


def test_an_access_token_without_the_route_in_its_scope_never_makes_the_secret_read(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent_id = oauth_support.new_client(api, scopes=["secrets/get", "agents/get"])
    device_key, _ = oauth_support.secret_key(api, agent_id)
    assert api.device(device_key, "secrets/put", {"name": "db", "value": BIG}).status_code == 200
    narrowed = oauth_support.access_token_for(agent_id, device_key, scope="agents/get")
    full = oauth_support.access_token_for(agent_id, device_key, scope="secrets/get")
    reads = watch_reads(monkeypatch)
    answer = api.call("secrets/get", {"name": "db"}, {"authorization": f"Bearer {narrowed}"})
    assert answer.status_code == 403 and reads.documents() != set()  # its standing was read
    assert secret_path(agent_id) not in reads.documents()  # the secret was not
    reads.clear()  # the control: a token whose scope names the route reads it, in the same round trip
    answer = api.call("secrets/get", {"name": "db"}, {"authorization": f"Bearer {full}"})
    assert answer.status_code == 200 and answer.get_json()["value"] == BIG
    assert secret_path(agent_id) in reads.documents() and reads.round_trips() == 1


def test_credentials_made_before_tags_still_work_one_round_trip_slower(
    api: Api, grantor: tuple[str, str], asker: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    grantor_id, grantor_key = grantor
    asker_id, _ = asker
    # What the service made before read-ahead tags: random secrets and random delegation IDs.
    with monkeypatch.context() as before:
        before.setattr(read_ahead, "new_device_key", lambda key_id: forged_device_key(key_id))
        before.setattr(read_ahead, "new_delegation_id", lambda grantor_id, *_: forged_delegation_id(grantor_id))
        old_grantor_key = api.new_key(grantor_id)["device_key"]
        old_asker_key = api.new_key(asker_id)["device_key"]
        old_delegation = delegate(api, grantor_key, asker_id, ["secrets/get"])
    reads = watch_reads(monkeypatch)
    answer = api.device(old_grantor_key, "secrets/get", {"name": "db"})
    assert answer.status_code == 200 and answer.get_json()["value"] == BIG
    assert reads.round_trips() == 2
    reads.clear()
    answer = delegated_get(api, old_asker_key, old_delegation)
    assert answer.status_code == 200 and answer.get_json()["value"] == BIG
    assert reads.round_trips() == 2


def test_a_dropped_read_can_not_be_collected_and_a_collected_one_is_kept(api: Api, grantor: tuple[str, str]) -> None:
    grantor_id, _ = grantor
    path = secret_path(grantor_id)
    with store.start_read([path], own_connection=True) as dropped:
        pass
    with pytest.raises(RuntimeError):
        dropped.result()
    with store.start_read([path], own_connection=True) as kept:
        (record,) = kept.result()
    assert record is not None and record["name"] == "db"
    assert kept.result() == [record]  # leaving the block after collecting drops nothing
    assert store.start_read([]).result() == []
