"""The Firestore emulator's REST API as its owner (``Bearer owner``): what tests read and undo behind the
service's back, never through it."""

from __future__ import annotations

import base64
import contextlib
import json
import urllib.error
import urllib.request
from typing import Any

from scripts import emulator

DOCUMENTS = f"projects/{emulator.PROJECT}/databases/(default)/documents"


def admin(host: str, method: str, path: str, body: Any = None, timeout: float = 10) -> Any:
    """One REST call under ``DOCUMENTS`` (``path`` starts with ``/`` or ``:``); its JSON answer."""
    request = urllib.request.Request(
        f"http://{host}/v1/{DOCUMENTS}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Authorization": "Bearer owner", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return json.loads(answer.read() or b"{}")


def all_documents(host: str, *, names_only: bool = False) -> dict[str, dict[str, Any]]:
    """Every document of the datastore (any depth) by path: one kindless query. Each is the REST document
    (``fields``, ``updateTime``); ``names_only`` leaves out the fields."""
    query: dict[str, Any] = {"from": [{"allDescendants": True}]}
    if names_only:
        query["select"] = {"fields": [{"fieldPath": "__name__"}]}
    rows = admin(host, "POST", ":runQuery", {"structuredQuery": query}, timeout=30)
    return {row["document"]["name"].split("/documents/", 1)[1]: row["document"] for row in rows if "document" in row}


def roll_back(host: str, transaction: bytes) -> None:
    """Roll back a transaction left open; one committed or rolled back already is left as it is."""
    with contextlib.suppress(urllib.error.HTTPError):
        admin(host, "POST", ":rollback", {"transaction": base64.b64encode(transaction).decode()})
