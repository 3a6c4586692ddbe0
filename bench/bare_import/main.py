"""Baseline for the cold-start benchmark: a function that only imports the Firestore client library."""

from __future__ import annotations

import flask
from google.cloud import firestore  # noqa: F401 - the import is the point: it is most of a cold start


def bare_import(request: flask.Request) -> flask.Response:
    return flask.Response('{"ok":true}', status=200, mimetype="application/json")
