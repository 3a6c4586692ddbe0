"""The fast read, fenced: the private parts of the Firestore client that ``store`` relies on.

``store.get_many`` calls BatchGetDocuments on the client's own gRPC channel and
decodes the answer itself (most of a request's CPU otherwise goes to the
library's wrappers). Both lean on the pinned library's internals, so these
tests fail on an upgrade that moves them, instead of production failing.
"""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shared import store
from tests.conftest import Api

STORE_SOURCE = Path(store.__file__)


def _private_attributes_used() -> set[str]:
    """Every ``x._name`` in store.py where ``x`` is not ``self`` (dunders aside)."""
    used = set()
    for node in ast.walk(ast.parse(STORE_SOURCE.read_text())):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and not (isinstance(node.value, ast.Name) and node.value.id == "self")
        ):
            used.add(node.attr)
    return used


def test_every_private_attribute_store_uses_is_named() -> None:
    named = {entry.split(".", 1)[1] for entry in store.PRIVATE_CLIENT_ATTRIBUTES}
    # grpc_channel is public on the transport, but the transport itself is reached privately: named too.
    assert _private_attributes_used() == {name for name in named if name.startswith("_")}


def test_every_named_private_attribute_exists_in_the_pinned_library() -> None:
    from google.cloud.firestore_v1.services.firestore.transports.grpc import FirestoreGrpcTransport

    store.reset()
    db = store.client()
    owners: dict[str, Any] = {"Client": db}
    owners["FirestoreClient"] = db._firestore_api
    owners["FirestoreGrpcTransport"] = db._firestore_api._transport
    assert isinstance(owners["FirestoreGrpcTransport"], FirestoreGrpcTransport)
    for entry in store.PRIVATE_CLIENT_ATTRIBUTES:
        owner, attribute = entry.split(".")
        assert hasattr(owners[owner], attribute), entry
    assert isinstance(db._database_string, str) and db._database_string.endswith("/databases/(default)")
    assert isinstance(db._rpc_metadata, list) and all(len(pair) == 2 for pair in db._rpc_metadata)
    assert isinstance(owners["FirestoreGrpcTransport"]._wrapped_methods, dict)
    assert hasattr(owners["FirestoreGrpcTransport"].grpc_channel, "unary_stream")


EVERY_TYPE: dict[str, Any] = {
    "text": "héllo \u2603",
    "empty": "",
    "none": None,
    "yes": True,
    "no": False,
    "zero": 0,
    "big": 2**53,
    "negative": -(2**62),
    "real": 1.5,
    "stamp": datetime(2026, 11, 22, 10, 0, 0, 123456, tzinfo=UTC),
    "whole_second": datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC),
    "raw": b"\x00\xffbytes",
    "map": {"inner": {"deep": [1, "two", None]}, "empty": {}},
    "list": [True, 3, "x", {"k": [1, 2]}, None],
    "empty_list": [],
}


def _library_read(path: str) -> dict[str, Any] | None:
    snapshot = store.client().document(path).get()
    return snapshot.to_dict() if snapshot.exists else None


def test_the_raw_decoder_agrees_with_the_library_for_every_value_type() -> None:
    store.client().document("fence/every_type").set(EVERY_TYPE)
    raw = store.get_many(["fence/every_type", "fence/absent"])
    assert raw[1] is None
    assert raw[0] == _library_read("fence/every_type") == EVERY_TYPE


def test_the_raw_decoder_refuses_a_type_the_service_never_stores() -> None:
    from google.cloud.firestore_v1 import GeoPoint

    store.client().document("fence/geo").set({"where": GeoPoint(1.0, 2.0)})
    with pytest.raises(ValueError, match="unexpected Firestore value type"):
        store.get_many(["fence/geo"])


def test_every_document_the_service_writes_reads_the_same_both_ways(api: Api) -> None:
    """A story that writes every collection, then each document read raw and by the library."""
    agent_id = api.new_agent("fence")
    other = api.new_agent("other")
    first = api.new_key(agent_id, label="first", ttl_seconds=3600)
    api.new_key(agent_id, replaces_key_id=first["key_id"])
    key = api.new_key(agent_id)["device_key"]
    assert api.device(key, "secrets/put", {"name": "s", "value": "v"}).status_code == 200
    granted = api.device(key, "delegate", {"to_agent": other, "scope": ["secrets/get"], "ttl_seconds": 600})
    assert granted.status_code == 201
    assert api.bridge("settings/set", {"key": "rotation_grace_seconds", "value": 60}).status_code == 200
    claims = {"jti": "fence-1", "sub": agent_id, "scope": "secrets/get", "iat": 1, "exp": 61, "kid": "dev-1"}
    assert api.bridge("capability/record", claims).status_code == 201
    db = store.client()
    paths = [doc.reference.path for doc in db.collection("agents").stream()]
    for group in ("device_keys", "secrets"):
        paths += [doc.reference.path for doc in db.collection_group(group).stream()]
    for collection in ("delegations", "settings", "audit_events", "capability_tokens"):
        paths += [doc.reference.path for doc in db.collection(collection).stream()]
    assert len(paths) >= 15
    for path, raw in zip(paths, store.get_many(paths), strict=True):
        assert raw == _library_read(path), path
