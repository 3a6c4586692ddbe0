"""Baseline for the served benchmark: one Firestore document read by ID, answered as JSON.

No credential, no validation, no audit: the least a function that reads one
agent can do, served by the same functions-framework the product uses.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import flask
from google.cloud import firestore


@functools.cache
def _client() -> Any:
    return firestore.Client()


def _plain(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def bare_read(request: flask.Request) -> flask.Response:
    body = request.get_json(silent=True) or {}
    snapshot = _client().document(f"agents/{body.get('agent_id', 'none')}").get()
    if not snapshot.exists:
        return flask.Response('{"error":"not_found"}', status=404, mimetype="application/json")
    document = {key: _plain(value) for key, value in (snapshot.to_dict() or {}).items()}
    return flask.Response(json.dumps(document, separators=(",", ":")), status=200, mimetype="application/json")
