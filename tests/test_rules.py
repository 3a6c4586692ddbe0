"""firestore.rules: no client reaches any document directly, signed in or not.

The emulator enforces the real rules file for every non-admin caller. Every
collection the service uses is attacked through the emulator's REST API, on
documents the service itself created through the API, as an anonymous client
and as signed-in Firebase users (an unsigned ID token, which the emulator
accepts). ``Authorization: Bearer owner`` (admin) bypasses rules: the same
reads succeed with it, so a 403 below is the rules' doing and not a bad path.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from shared import keys
from tests.conftest import BRIDGE_KEY, Api
from tests.test_faults import snapshot

PROJECT = "demo-agentpack"
DOCUMENTS = f"projects/{PROJECT}/databases/(default)/documents"
SECRET_VALUE = "ZQX-secret-value-never-stored-in-clear"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def user_token(uid: str, **claims: Any) -> str:
    """An unsigned Firebase ID token, as the emulator accepts them."""
    now = int(time.time())
    payload = {
        "sub": uid,
        "user_id": uid,
        "iss": f"https://securetoken.google.com/{PROJECT}",
        "aud": PROJECT,
        "auth_time": now,
        "iat": now,
        "exp": now + 3600,
        "email": f"{uid}@example.com",
        "email_verified": True,
        "firebase": {"sign_in_provider": "password", "identities": {}},
        **claims,
    }
    return _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(payload) + "."


def rest(host: str, method: str, path: str, body: Any = None, auth: str | None = None) -> tuple[int, Any]:
    url = f"http://{host}/v1/{DOCUMENTS}{path}"
    headers = {"Content-Type": "application/json"}
    if auth is not None:
        headers["Authorization"] = auth
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@pytest.fixture
def seeded(api: Api) -> dict[str, Any]:
    """One document of every collection, each made by the service through its API."""
    alice = api.new_agent("alice")
    bob = api.new_agent("bob")
    issued = api.new_key(alice, label="laptop")
    bob_key = api.new_key(bob)["device_key"]
    assert api.bridge("settings/set", {"key": "rotation_grace_seconds", "value": 90}).status_code == 200
    grant = api.device(
        issued["device_key"], "delegate", {"to_agent": bob, "scope": ["secrets/get"], "ttl_seconds": 3600}
    )
    assert grant.status_code == 201, grant.get_json()
    now = int(time.time())
    recorded = api.bridge(
        "capability/record",
        {"jti": "jti-rules-1", "sub": alice, "scope": "secrets/get", "iat": now, "exp": now + 60, "kid": "dev-1"},
    )
    assert recorded.status_code == 201, recorded.get_json()
    put = api.device(issued["device_key"], "secrets/put", {"name": "db-password", "value": SECRET_VALUE})
    assert put.status_code == 200, put.get_json()
    events = api.bridge("audit/list", {"action": "agent.create"}).get_json()["events"]
    return {
        "alice": alice,
        "bob": bob,
        "device_key": issued["device_key"],
        "bob_key": bob_key,
        "paths": {
            "agents": f"/agents/{alice}",
            "device_keys": f"/agents/{alice}/device_keys/{issued['key_id']}",
            "settings": "/settings/current",
            "audit_events": f"/audit_events/{events[0]['event_id']}",
            "delegations": f"/delegations/{grant.get_json()['delegation_id']}",
            "capability_tokens": "/capability_tokens/j_jti-rules-1",
            "secrets": f"/agents/{alice}/secrets/s_db-password",
        },
    }


IDENTITIES = ["anonymous", "user", "user named like the agent, with admin claims"]


def _auth(identity: str, seeded: dict[str, Any]) -> str | None:
    if identity == "anonymous":
        return None
    if identity == "user":
        return "Bearer " + user_token("user-1")
    return "Bearer " + user_token(seeded["alice"], admin=True, role="owner", agent_id=seeded["alice"])


def assert_denied(status: int, body: Any, what: str) -> None:
    assert status == 403, (what, status, body)
    assert body["error"]["status"] == "PERMISSION_DENIED", (what, body)


def test_admin_reads_what_the_service_wrote(seeded: dict[str, Any], emulator_host: str) -> None:
    """The control: every path below names a real document, readable with admin rights."""
    for collection, path in seeded["paths"].items():
        status, doc = rest(emulator_host, "GET", path, auth="Bearer owner")
        assert status == 200, (collection, doc)
        assert doc["name"] == DOCUMENTS + path
        assert doc["fields"]
    status, agent = rest(emulator_host, "GET", seeded["paths"]["agents"], auth="Bearer owner")
    assert agent["fields"]["display_name"] == {"stringValue": "alice"}


@pytest.mark.parametrize(
    "collection",
    ["agents", "device_keys", "settings", "audit_events", "delegations", "capability_tokens", "secrets"],
)
def test_no_client_gets_lists_creates_patches_or_deletes(
    seeded: dict[str, Any], emulator_host: str, collection: str
) -> None:
    path = seeded["paths"][collection]
    parent = path.rsplit("/", 1)[0]
    fields = {"fields": {"disabled": {"booleanValue": False}, "key_hash": {"stringValue": "0" * 64}}}
    before = snapshot(emulator_host)

    attempts: list[tuple[str, str, str, Any]] = [
        ("get", "GET", path, None),
        ("list", "GET", parent, None),
        ("list, missing too", "GET", parent + "?showMissing=true&pageSize=100", None),
        ("create", "POST", parent + "?documentId=planted", fields),
        ("create, server-made id", "POST", parent, fields),
        ("patch", "PATCH", path, fields),
        ("patch one field", "PATCH", path + "?updateMask.fieldPaths=disabled", fields),
        ("patch a new document", "PATCH", parent + "/planted2", fields),
        ("delete", "DELETE", path, None),
        ("delete a missing document", "DELETE", parent + "/never-made", None),
    ]
    for identity in IDENTITIES:
        auth = _auth(identity, seeded)
        for what, method, target, body in attempts:
            status, answer = rest(emulator_host, method, target, body, auth)
            assert_denied(status, answer, f"{identity} {what} {target}")

    # The same get as admin succeeds: the 403s above are the rules, not a wrong path.
    status, _ = rest(emulator_host, "GET", path, auth="Bearer owner")
    assert status == 200
    assert snapshot(emulator_host) == before


@pytest.mark.parametrize("identity", IDENTITIES)
def test_no_client_queries_batch_reads_or_commits(seeded: dict[str, Any], emulator_host: str, identity: str) -> None:
    auth = _auth(identity, seeded)
    before = snapshot(emulator_host)
    collections = ["agents", "device_keys", "settings", "audit_events", "delegations", "capability_tokens", "secrets"]
    for collection in collections:
        for descendants in (False, True):
            query = {"structuredQuery": {"from": [{"collectionId": collection, "allDescendants": descendants}]}}
            status, answer = rest(emulator_host, "POST", ":runQuery", query, auth)
            assert_denied(status, answer, f"runQuery {collection} {descendants}")
        query = {"structuredQuery": {"from": [{"collectionId": collection}]}}
        status, answer = rest(emulator_host, "POST", seeded["paths"]["agents"] + ":runQuery", query, auth)
        assert_denied(status, answer, f"runQuery under an agent {collection}")
    names = [DOCUMENTS + path for path in seeded["paths"].values()]
    status, answer = rest(emulator_host, "POST", ":batchGet", {"documents": names}, auth)
    assert_denied(status, answer, "batchGet")
    for path in seeded["paths"].values():
        write = {"update": {"name": DOCUMENTS + path, "fields": {"disabled": {"booleanValue": True}}}}
        status, answer = rest(emulator_host, "POST", ":commit", {"writes": [write]}, auth)
        assert_denied(status, answer, f"commit {path}")
        status, answer = rest(emulator_host, "POST", ":commit", {"writes": [{"delete": DOCUMENTS + path}]}, auth)
        assert_denied(status, answer, f"commit delete {path}")
    status, answer = rest(emulator_host, "POST", ":listCollectionIds", {}, auth)
    assert_denied(status, answer, "listCollectionIds")
    # The control: as admin, the same query does find the agents.
    status, rows = rest(
        emulator_host,
        "POST",
        ":runQuery",
        {"structuredQuery": {"from": [{"collectionId": "agents"}]}},
        "Bearer owner",
    )
    assert status == 200 and sum(1 for row in rows if "document" in row) == 2
    assert snapshot(emulator_host) == before


@pytest.mark.parametrize("collection", ["agents", "secrets", "delegations", "capability_tokens", "users", "x"])
def test_nothing_can_be_planted_in_a_new_collection_either(
    seeded: dict[str, Any], emulator_host: str, collection: str
) -> None:
    for identity in IDENTITIES:
        auth = _auth(identity, seeded)
        status, answer = rest(emulator_host, "PATCH", f"/{collection}/planted", {"fields": {}}, auth)
        assert_denied(status, answer, f"{identity} plant {collection}")
    status, _ = rest(emulator_host, "GET", f"/{collection}/planted", auth="Bearer owner")
    assert status == 404


def test_the_datastore_holds_no_plaintext_key_or_secret(seeded: dict[str, Any], emulator_host: str) -> None:
    """What a rules mistake would expose: hashes and ciphertext only, never a key or a secret value."""
    stored = json.dumps(snapshot(emulator_host))
    for secret in (BRIDGE_KEY, seeded["device_key"], seeded["bob_key"], SECRET_VALUE):
        assert secret not in stored
    assert keys.hash_key(BRIDGE_KEY) not in stored  # the bridge key lives in the deployment only
    # The device key's hash is stored (on its record, nowhere else), proving the dump is complete.
    assert stored.count(keys.hash_key(seeded["device_key"])) == 1
    assert base64.b64encode(SECRET_VALUE.encode()).decode() not in stored
