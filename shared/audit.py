"""The audit trail: one event per change, written in the change's own transaction (see ``change``).

An event names its actor, the agent acted for (``on_behalf_of``) and its
target; ``subjects`` (stored, not shown) lists every agent it names so one
query finds them. ``expire_at`` carries the retention for a Firestore TTL
policy. Secret values, keys and hashes are never passed in.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from shared import clock, errors, ids, records, schema, store
from shared.principal import Principal

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
    "token.issue",
    "token.refresh",
    "token.revoke",
    "token.reuse_detected",
    "user.create",
    "user.update",
    "user_delegation.grant",
    "user_delegation.revoke",
    "relation.write",
    "device_authorization.start",
    "device_authorization.decide",
    "key.leak_reported",
)
_PUBLIC_FIELDS = ("event_id", "at", "category", "action", "actor", "target", "request_id")


def new_event(
    action: str, principal: Principal, target: dict[str, Any], *, at: datetime, retention_days: int
) -> records.AuditEventRecord:
    """The event of one change by ``principal``, carrying its request's ID."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action}")
    actor = principal.audit_actor()
    named = (
        actor.get("agent_id"),
        actor.get("on_behalf_of"),
        actor.get("user_id"),
        target.get("agent_id"),
        target.get("from_agent"),
        target.get("user_id"),
    )
    return {
        "event_id": ids.new_event_id(),
        "at": at,
        "category": "auth",
        "action": action,
        "actor": actor,
        "target": target,
        "request_id": principal.request_id,
        "subjects": sorted({agent_id for agent_id in named if agent_id}),
        "expire_at": at + timedelta(days=retention_days),
    }


class ListEvents(schema.Body):
    agent_id: schema.Identifier | None = None
    action: str | None = None
    page_size: schema.PageSize = 50
    page_token: schema.PageToken | None = None


def public(event: records.AuditEventRecord) -> dict[str, Any]:
    shown: dict[str, Any] = {name: event[name] for name in _PUBLIC_FIELDS}  # type: ignore[literal-required]
    shown["at"] = clock.rfc3339(event["at"])
    return shown


def list_events(body: ListEvents) -> dict[str, Any]:
    if body.action is not None and body.action not in ACTIONS:
        raise errors.InvalidRequest("action: not a known action")
    if body.page_token is not None and ids.EVENT_ID.fullmatch(body.page_token) is None:
        raise errors.InvalidRequest("page_token: not a token from a previous page")
    rows = store.query(
        records.AUDIT_EVENTS,
        equals={"action": body.action} if body.action else None,
        contains={"subjects": body.agent_id} if body.agent_id else None,
        order_by="event_id",  # the ID, as a field: descending key scans are not supported everywhere
        descending=True,
        after_id=body.page_token,
        limit=body.page_size + 1,
    )
    events, next_token = store.page(rows, body.page_size)
    return {"events": [public(doc) for doc in events], "next_page_token": next_token}
