"""Baseline for the token-endpoint benchmark: one Firestore transaction that reads one document and writes one.

The floor of any audited change: ``/oauth/token`` reads the client's records in a transaction and
writes the token's audit event with it. Here: begin, read the agent by ID, create one new document
(a random ID under ``bench_writes``, so concurrent calls never contend), commit. No credential, no
validation, no audit, served by the same functions-framework the product uses.
"""

from __future__ import annotations

import functools
import json
import secrets
from datetime import UTC, datetime
from typing import Any

import flask
from google.cloud import firestore


@functools.cache
def _client() -> Any:
    return firestore.Client()


def bare_txn(request: flask.Request) -> flask.Response:
    body = request.get_json(silent=True) or {}
    db = _client()
    agent = db.document(f"agents/{body.get('agent_id', 'none')}")
    written = db.document(f"bench_writes/{secrets.token_hex(12)}")

    @firestore.transactional
    def run(txn: Any) -> bool:
        snapshot = agent.get(transaction=txn)
        txn.create(written, {"agent_id": agent.id, "found": snapshot.exists, "at": datetime.now(UTC)})
        return bool(snapshot.exists)

    if not run(db.transaction(max_attempts=1)):
        return flask.Response('{"error":"not_found"}', status=404, mimetype="application/json")
    return flask.Response(json.dumps({"written": written.id}), status=200, mimetype="application/json")
