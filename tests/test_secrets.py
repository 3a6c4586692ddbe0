"""The encrypted secrets store: routes, encryption at rest, key rotation and Secret Manager."""

from __future__ import annotations

import base64
import json
import os
import secrets as random
from collections.abc import Iterator
from typing import Any

import pytest

from scripts import reseal
from shared import config, keys, records, store
from tests.conftest import BRIDGE_KEY, DEV_ENV, Api
from tests.fake_secret_manager import FakeSecretManager
from tests.reads import watch_reads
from tests.test_delegations import token_for

FIRST_KEY = json.loads(DEV_ENV["AGENTPACK_SECRETS_KEYS"])["1"]
SECOND_KEY = base64.urlsafe_b64encode(random.token_bytes(32)).decode().rstrip("=")


@pytest.fixture
def agent(api: Api) -> tuple[str, str]:
    agent_id = api.new_agent("holder")
    return agent_id, api.new_key(agent_id)["device_key"]


def put(api: Api, key: str, name: str, value: str) -> Any:
    return api.device(key, "secrets/put", {"name": name, "value": value})


def stored(path: str) -> dict[str, Any]:
    record = store.client().document(path).get().to_dict()
    assert record is not None
    return record


def every_document() -> list[dict[str, Any]]:
    db = store.client()
    found = []
    for collection in db.collections():
        for snap in collection.stream():
            found.append(snap.to_dict())
            for sub in snap.reference.collections():
                found.extend(s.to_dict() for s in sub.stream())
    return found


def test_put_get_list_delete_with_versions(api: Api, agent: tuple[str, str]) -> None:
    _, key = agent
    first = put(api, key, "db.password", "one")
    assert first.status_code == 200
    assert set(first.get_json()) == {"name", "version", "updated_at"} and first.get_json()["version"] == 1
    assert put(api, key, "db.password", "two").get_json()["version"] == 2
    got = api.device(key, "secrets/get", {"name": "db.password"})
    assert got.get_json() == {**got.get_json(), "name": "db.password", "value": "two", "version": 2}
    assert got.headers["Cache-Control"] == "no-store"
    put(api, key, "api_token", "three")
    listed = api.device(key, "secrets/list", {}).get_json()["secrets"]
    assert [s["name"] for s in listed] == ["api_token", "db.password"]
    assert all(set(s) == {"name", "version", "updated_at"} for s in listed)
    deleted = api.device(key, "secrets/delete", {"name": "db.password"})
    assert deleted.get_json() == {"name": "db.password", "deleted": True}
    assert api.device(key, "secrets/get", {"name": "db.password"}).status_code == 404
    assert api.device(key, "secrets/delete", {"name": "db.password"}).status_code == 404
    actions = [e["action"] for e in api.bridge("audit/list", {}).get_json()["events"]]
    assert actions[:4] == ["secret.delete", "secret.put", "secret.put", "secret.put"]


def test_values_never_rest_in_the_clear_in_any_encoding(api: Api, agent: tuple[str, str]) -> None:
    _, key = agent
    value = "marker-" + random.token_hex(8)
    put(api, key, "plain", value)
    dump = json.dumps(every_document(), default=str)
    raw = value.encode()
    for encoded in (value, raw.hex(), base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()):
        assert encoded.rstrip("=") not in dump
    assert "plain" in dump  # the test can see the record: names are not secret


def test_the_bridge_key_may_not_touch_secrets(api: Api, agent: tuple[str, str]) -> None:
    agent_id, key = agent
    put(api, key, "x", "v")
    for route, body in (
        ("secrets/get", {"name": "x"}),
        ("secrets/put", {"name": "x", "value": "w"}),
        ("secrets/list", {}),
    ):
        answer = api.bridge(route, {**body, "agent_id": agent_id})
        assert answer.status_code == 403
    assert api.device(key, "secrets/get", {"name": "x"}).get_json()["value"] == "v"


def test_a_forged_agent_id_is_a_no_op(api: Api, agent: tuple[str, str]) -> None:
    _, key = agent
    victim = api.new_agent("victim")
    victim_key = api.new_key(victim)["device_key"]
    put(api, victim_key, "x", "victim's")
    assert api.device(key, "secrets/get", {"name": "x", "agent_id": victim}).status_code == 404
    api.device(key, "secrets/put", {"name": "x", "value": "attacker's", "agent_id": victim})
    assert api.device(victim_key, "secrets/get", {"name": "x"}).get_json()["value"] == "victim's"


@pytest.mark.parametrize("name", ["", "a/b", "../x", "a b", "x" * 129, "é", "a\u0000"])
def test_bad_names_are_refused(api: Api, agent: tuple[str, str], name: str) -> None:
    answer = put(api, agent[1], name, "v")
    assert answer.status_code == 400
    assert answer.get_json()["error_description"].startswith("name")


@pytest.mark.parametrize("name", [".", "..", "__reserved__", "a" * 128, "A-z_0.9"])
def test_odd_but_legal_names_work(api: Api, agent: tuple[str, str], name: str) -> None:
    assert put(api, agent[1], name, "v").status_code == 200
    assert api.device(agent[1], "secrets/get", {"name": name}).get_json()["value"] == "v"


def test_values_are_bounded_in_utf8_bytes_at_the_exact_limit(api: Api, agent: tuple[str, str]) -> None:
    _, key = agent
    assert put(api, key, "big", "a" * 32768).status_code == 200
    too_big = put(api, key, "big", "a" * 32769)
    assert too_big.status_code == 400 and too_big.get_json()["error_description"].startswith("value")
    api.bridge("settings/set", {"key": "secret_max_bytes", "value": 4})
    assert put(api, key, "small", "éé").status_code == 200  # 4 bytes
    assert put(api, key, "small", "ééa").status_code == 400  # 5 bytes
    assert api.device(key, "secrets/get", {"name": "small"}).get_json()["version"] == 1


@pytest.mark.parametrize("value", ["", "naïve ✓ 🔑", "\u202eright-to-left", "line\nbreak\ttab\u0000nul", "\"'\\"])
def test_unicode_values_round_trip(api: Api, agent: tuple[str, str], value: str) -> None:
    assert put(api, agent[1], "u", value).status_code == 200
    assert api.device(agent[1], "secrets/get", {"name": "u"}).get_json()["value"] == value


def test_a_transplanted_ciphertext_fails_closed_and_is_audited(api: Api, agent: tuple[str, str]) -> None:
    agent_id, key = agent
    other = api.new_agent("other")
    other_key = api.new_key(other)["device_key"]
    put(api, key, "mine", "the-plaintext")
    put(api, other_key, "theirs", "decoy")
    put(api, key, "elsewhere", "decoy")
    db = store.client()
    sealed = stored(records.secret_path(agent_id, "mine"))
    for target_agent, target_key, name in ((other, other_key, "theirs"), (agent_id, key, "elsewhere")):
        record = stored(records.secret_path(target_agent, name))
        db.document(records.secret_path(target_agent, name)).set(
            {**record, "nonce": sealed["nonce"], "ciphertext": sealed["ciphertext"]}
        )
        answer = api.device(target_key, "secrets/get", {"name": name})
        assert answer.status_code == 503
        assert answer.get_json()["error"] == "unavailable"
        assert "the-plaintext" not in answer.get_data(as_text=True)
    events = api.bridge("audit/list", {"action": "secret.integrity_failure"}).get_json()["events"]
    assert len(events) == 2
    assert api.device(key, "secrets/get", {"name": "mine"}).get_json()["value"] == "the-plaintext"


def test_a_copied_whole_record_fails_too(api: Api, agent: tuple[str, str]) -> None:
    agent_id, key = agent
    other = api.new_agent("other")
    other_key = api.new_key(other)["device_key"]
    put(api, key, "mine", "the-plaintext")
    db = store.client()
    db.document(records.secret_path(other, "mine")).set(stored(records.secret_path(agent_id, "mine")))
    answer = api.device(other_key, "secrets/get", {"name": "mine"})
    assert answer.status_code == 503 and "the-plaintext" not in answer.get_data(as_text=True)


def test_capability_tokens_and_their_scope(api: Api, agent: tuple[str, str]) -> None:
    agent_id, key = agent
    put(api, key, "x", "v")
    reader = {"authorization": "Bearer " + token_for(agent_id, ["secrets/get", "secrets/list"])}
    assert api.call("secrets/get", {"name": "x"}, reader).get_json()["value"] == "v"
    assert api.call("secrets/put", {"name": "x", "value": "w"}, reader).status_code == 403
    api.bridge("agents/update", {"agent_id": agent_id, "disabled": True})
    assert api.call("secrets/get", {"name": "x"}, reader).status_code == 401


def test_secrets_get_is_one_round_trip(api: Api, agent: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    put(api, agent[1], "x", "v")
    reads = watch_reads(monkeypatch)
    assert api.device(agent[1], "secrets/get", {"name": "x"}).status_code == 200
    # The agent, its key and its secret: one read.
    assert reads.sizes() == [("start", 3), ("collect", 3)]


def use_keys(monkeypatch: pytest.MonkeyPatch, **versions: str) -> None:
    monkeypatch.setenv("AGENTPACK_SECRETS_KEYS", json.dumps({v.lstrip("v"): k for v, k in versions.items()}))
    config.reset()


def key_version_of(agent_id: str, name: str) -> int:
    return int(stored(records.secret_path(agent_id, name))["key_version"])


def test_key_rotation_reseal_and_retirement(
    api: Api, agent: tuple[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    agent_id, key = agent
    for n in range(5):
        put(api, key, f"old{n}", f"value-{n}")
    use_keys(monkeypatch, v1=FIRST_KEY, v2=SECOND_KEY)
    put(api, key, "new", "fresh")
    assert key_version_of(agent_id, "new") == 2 and key_version_of(agent_id, "old0") == 1
    assert api.device(key, "secrets/get", {"name": "old0"}).get_json()["value"] == "value-0"

    use_keys(monkeypatch, v2=SECOND_KEY)  # retired too early: the old records fail closed, no fallback
    early = api.device(key, "secrets/get", {"name": "old1"})
    assert early.status_code == 503 and "value-1" not in early.get_data(as_text=True)

    use_keys(monkeypatch, v1=FIRST_KEY, v2=SECOND_KEY)
    reseal.PAGE = 2  # several pages, as on a large store
    assert reseal.main([]) == 0
    out = capsys.readouterr().out
    assert "5 re-sealed" in out and "value-" not in out
    assert reseal.main([]) == 0
    assert "0 re-sealed" in capsys.readouterr().out
    versions = [key_version_of(agent_id, f"old{n}") for n in range(5)]
    assert versions == [2] * 5
    events_before = len(api.bridge("audit/list", {"page_size": 200}).get_json()["events"])

    reseals = api.bridge("audit/list", {"action": "secret.reseal"}).get_json()["events"]
    assert len(reseals) == 5
    assert {e["target"]["previous_key_version"] for e in reseals} == {1}
    assert all(e["actor"] == {"kind": "bridge"} and e["request_id"].startswith("reseal_") for e in reseals)
    use_keys(monkeypatch, v2=SECOND_KEY)
    for n in range(5):
        got = api.device(key, "secrets/get", {"name": f"old{n}"}).get_json()
        assert got["value"] == f"value-{n}" and got["version"] == 1
    assert len(api.bridge("audit/list", {"page_size": 200}).get_json()["events"]) == events_before


def test_reseal_resumes_after_a_given_record(
    api: Api, agent: tuple[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    agent_id, key = agent
    for name in ("a", "b", "c"):
        put(api, key, name, name)
    use_keys(monkeypatch, v1=FIRST_KEY, v2=SECOND_KEY)
    assert reseal.main(["--after", records.secret_path(agent_id, "a")]) == 0
    assert [key_version_of(agent_id, n) for n in "abc"] == [1, 2, 2]


@pytest.mark.parametrize("keyring", ["", "{}", "[]", '{"0": "x"}', '{"1": "short"}', '{"v1": "' + "A" * 43 + '"}'])
def test_a_malformed_keyring_answers_503(
    api: Api, agent: tuple[str, str], monkeypatch: pytest.MonkeyPatch, keyring: str
) -> None:
    monkeypatch.setenv("AGENTPACK_SECRETS_KEYS", keyring)
    config.reset()
    answer = put(api, agent[1], "x", "v")
    assert answer.status_code == 503
    monkeypatch.setenv("AGENTPACK_SECRETS_KEYS", DEV_ENV["AGENTPACK_SECRETS_KEYS"])
    config.reset()
    assert api.device(agent[1], "secrets/list", {}).get_json()["secrets"] == []


PRODUCTION_BRIDGE_KEY = keys.new_bridge_key()
PRODUCTION_SECRETS_KEYS = json.dumps({"7": SECOND_KEY})


def as_operator(api: Api, route: str, body: dict[str, Any]) -> Any:
    return api.call(route, body, {"x-agentpack-key": PRODUCTION_BRIDGE_KEY})


@pytest.fixture
def secret_manager(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSecretManager]:
    with FakeSecretManager() as fake:
        project = os.environ["GOOGLE_CLOUD_PROJECT"]
        fake.secrets[(project, "agentpack-bridge-key-hashes")] = keys.hash_key(PRODUCTION_BRIDGE_KEY)
        fake.secrets[(project, "agentpack-secrets-keys")] = PRODUCTION_SECRETS_KEYS
        monkeypatch.setenv("AGENTPACK_SECRET_SOURCE", "secret-manager")
        monkeypatch.setenv("AGENTPACK_SECRET_MANAGER_ENDPOINT", fake.endpoint)
        monkeypatch.delenv("AGENTPACK_BRIDGE_KEY")
        monkeypatch.delenv("AGENTPACK_SECRETS_KEYS")
        monkeypatch.delenv("AGENTPACK_CAPABILITY_PUBLIC_KEYS")
        config.reset()
        yield fake


def test_keys_come_from_secret_manager_once_per_instance(api: Api, secret_manager: FakeSecretManager) -> None:
    created = as_operator(api, "agents/create", {"display_name": "sm"})
    assert created.status_code == 201  # the bridge key is checked against the hash read from Secret Manager
    issued = as_operator(api, "device/issue", {"agent_id": created.get_json()["agent_id"]})
    key = issued.get_json()["device_key"]
    for n in range(3):
        assert put(api, key, f"s{n}", "v").status_code == 200
        assert api.device(key, "secrets/get", {"name": f"s{n}"}).get_json()["value"] == "v"
    assert sorted(secret_manager.reads) == ["agentpack-bridge-key-hashes", "agentpack-secrets-keys"]
    assert api.bridge("agents/list", {}).status_code == 401  # the dev key means nothing here


def test_secret_manager_down_is_503_and_nothing_is_written(api: Api, secret_manager: FakeSecretManager) -> None:
    secret_manager.down = True
    answer = as_operator(api, "agents/create", {"display_name": "x"})
    assert answer.status_code == 503 and answer.get_json()["error"] == "unavailable"
    secret_manager.down = False
    config.reset()
    assert as_operator(api, "agents/list", {}).get_json()["agents"] == []


def test_a_wrong_bridge_key_with_secret_manager_is_401(api: Api, secret_manager: FakeSecretManager) -> None:
    project = os.environ["GOOGLE_CLOUD_PROJECT"]
    secret_manager.secrets[(project, "agentpack-bridge-key-hashes")] = keys.hash_key(keys.new_bridge_key())
    config.reset()
    assert as_operator(api, "agents/list", {}).status_code == 401


def test_a_deployment_refuses_the_dev_values(
    api: Api, secret_manager: FakeSecretManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = os.environ["GOOGLE_CLOUD_PROJECT"]
    secret_manager.secrets[(project, "agentpack-bridge-key-hashes")] = (
        keys.hash_key(PRODUCTION_BRIDGE_KEY) + "," + keys.hash_key(BRIDGE_KEY)
    )
    config.reset()
    assert as_operator(api, "agents/list", {}).status_code == 503
    secret_manager.secrets[(project, "agentpack-bridge-key-hashes")] = keys.hash_key(PRODUCTION_BRIDGE_KEY)
    monkeypatch.setenv("AGENTPACK_BRIDGE_KEY", PRODUCTION_BRIDGE_KEY)  # no plaintext key in a deployment
    config.reset()
    assert as_operator(api, "agents/list", {}).status_code == 503
    monkeypatch.delenv("AGENTPACK_BRIDGE_KEY")
    monkeypatch.setenv("AGENTPACK_CAPABILITY_PUBLIC_KEYS", DEV_ENV["AGENTPACK_CAPABILITY_PUBLIC_KEYS"])
    config.reset()
    assert as_operator(api, "agents/list", {}).status_code == 503
    monkeypatch.delenv("AGENTPACK_CAPABILITY_PUBLIC_KEYS")
    config.reset()
    agent_id = as_operator(api, "agents/create", {"display_name": "x"}).get_json()["agent_id"]
    key = as_operator(api, "device/issue", {"agent_id": agent_id}).get_json()["device_key"]
    secret_manager.secrets[(project, "agentpack-secrets-keys")] = DEV_ENV["AGENTPACK_SECRETS_KEYS"]
    config.reset()
    assert put(api, key, "x", "v").status_code == 503
    # Device keys are tagged under the secrets keys (shared/read_ahead.py): none is made under the dev one.
    assert as_operator(api, "device/issue", {"agent_id": agent_id}).status_code == 503
