"""Baseline for the user-credential benchmark: firebase-admin's own ``auth.verify_id_token`` of the
bearer token, then one Firestore document read by ID, answered as JSON.

No registration lookup by UID, no validation, no audit: the least a function that verifies a
Firebase ID token and reads one document can do, served by the same functions-framework.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

import flask
from google.cloud import firestore


@functools.cache
def _client() -> Any:
    return firestore.Client()


@functools.cache
def _app() -> Any:
    import firebase_admin

    project = os.environ.get("GOOGLE_CLOUD_PROJECT", "demo-agentpack")
    return firebase_admin.initialize_app(options={"projectId": project}, name="bare-verify-read")


def _plain(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def bare_verify_read(request: flask.Request) -> flask.Response:
    from firebase_admin import auth

    token = request.headers.get("authorization", "").partition(" ")[2].strip()
    try:
        auth.verify_id_token(token, app=_app(), check_revoked=False, clock_skew_seconds=60)
    except ValueError:
        return flask.Response('{"error":"unauthenticated"}', status=401, mimetype="application/json")
    body = request.get_json(silent=True) or {}
    snapshot = _client().document(f"agents/{body.get('agent_id', 'none')}").get()
    if not snapshot.exists:
        return flask.Response('{"error":"not_found"}', status=404, mimetype="application/json")
    document = {key: _plain(value) for key, value in (snapshot.to_dict() or {}).items()}
    return flask.Response(json.dumps(document, separators=(",", ":")), status=200, mimetype="application/json")
