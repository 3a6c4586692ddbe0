"""The audit trail: one event per change, written in the change's own transaction.

An event names its actor, the agent acted for (``on_behalf_of``) and its
target; ``subjects`` (stored, not shown) lists every agent it names so one
query finds them. ``expire_at`` carries the retention for a Firestore TTL
policy. Secret values, keys and hashes are never passed in.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from shared import clock, errors, ids, schema, settings, store
from shared.credentials import Principal

ACTIONS = (
    "agent.create",
    "agent.update",
    "device.issue",
    "device.rotate",
    "device.revoke",
    "delegation.grant",
    "delegation.revoke",
    "secret.put",
    "secret.delete",
    "secret.integrity_failure",
    "secret.reseal",
    "setting.set",
    "capability.record",
)
_PUBLIC_FIELDS = ("event_id", "at", "category", "action", "actor", "target", "request_id")


def record(
    txn: store.Transaction,
    *,
    action: str,
    principal: Principal,
    target: dict[str, Any],
    request_id: str,
    settings_doc: dict[str, Any] | None,
) -> None:
    """Append one event to ``txn``; ``settings_doc`` (read in the same transaction) sets its retention."""
    assert action in ACTIONS
    actor = principal.audit_actor()
    named = (actor.get("agent_id"), actor.get("on_behalf_of"), target.get("agent_id"), target.get("from_agent"))
    subjects = sorted({agent_id for agent_id in named if agent_id})
    at = clock.now()
    event_id = ids.new_event_id()
    txn.create(
        f"{store.AUDIT_EVENTS}/{event_id}",
        {
            "event_id": event_id,
            "at": at,
            "category": "auth",
            "action": action,
            "actor": actor,
            "target": target,
            "request_id": request_id,
            "subjects": subjects,
            "expire_at": at + timedelta(days=settings.effective(settings_doc)["audit_retention_days"]),
        },
    )


class ListEvents(schema.Body):
    agent_id: schema.Identifier | None = None
    action: str | None = None
    page_size: schema.PageSize = 50
    page_token: schema.PageToken | None = None


def public(event: dict[str, Any]) -> dict[str, Any]:
    shown = {name: event[name] for name in _PUBLIC_FIELDS}
    shown["at"] = clock.rfc3339(event["at"])
    return shown


def list_events(body: ListEvents) -> dict[str, Any]:
    if body.action is not None and body.action not in ACTIONS:
        raise errors.InvalidRequest("action: not a known action")
    if body.page_token is not None and ids.EVENT_ID.fullmatch(body.page_token) is None:
        raise errors.InvalidRequest("page_token: not a token from a previous page")
    rows = store.query(
        store.AUDIT_EVENTS,
        equals={"action": body.action} if body.action else None,
        contains={"subjects": body.agent_id} if body.agent_id else None,
        order_by="event_id",  # the ID, as a field: descending key scans are not supported everywhere
        descending=True,
        after_id=body.page_token,
        limit=body.page_size + 1,
    )
    page = rows[: body.page_size]
    more = len(rows) > body.page_size
    return {"events": [public(doc) for _, doc in page], "next_page_token": page[-1][0] if more else None}
