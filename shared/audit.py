"""The audit trail: one event per change, written in the change's own transaction (see ``change``).

An event names its actor, the agent acted for (``on_behalf_of``) and its
target; ``subjects`` (stored, not shown) lists every agent it names so one
query finds them. ``expire_at`` carries the retention for a Firestore TTL
policy. Secret values, keys and hashes are never passed in.

Event IDs are random, so writes spread over the key space; each event joins a
tamper-evident chain (``audit_chain``). Listing is newest first by
``logged_at`` (the system clock, to the microsecond) and the ID, over
``audit_chain.SHARDS`` index ranges read with one ``in`` filter (the
sharded-timestamp pattern): no index has one key range that every write lands in.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

from shared import audit_chain, clock, errors, ids, records, schema, store
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
    event_id = ids.new_event_id()
    return {
        "event_id": event_id,
        "at": at,
        "category": "auth",
        "action": action,
        "actor": actor,
        "target": target,
        "request_id": principal.request_id,
        "subjects": sorted({agent_id for agent_id in named if agent_id}),
        "expire_at": at + timedelta(days=retention_days),
        "logged_at": datetime.now(UTC),  # not the service clock: the order events were written in
        **audit_chain.unlinked(event_id, action, actor, target),
    }


class ListEvents(schema.Body):
    agent_id: schema.Identifier | None = None
    action: str | None = None
    page_size: schema.PageSize = 50
    page_token: schema.PageToken | None = None


def public(event: records.AuditEventRecord | dict[str, Any]) -> dict[str, Any]:
    shown: dict[str, Any] = {name: event[name] for name in _PUBLIC_FIELDS}  # type: ignore[literal-required]
    shown["at"] = clock.rfc3339(event["at"])
    return shown


_ORDER = ("logged_at", "event_id")
_TOKEN_BYTES = 8 + ids.PART_LENGTH  # microseconds since the epoch, then the ID's random part
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def page_token(event: records.AuditEventRecord | dict[str, Any]) -> str:
    """An opaque cursor: the (logged_at, event_id) of a page's last event."""
    micros = (event["logged_at"] - _EPOCH) // timedelta(microseconds=1)
    raw = micros.to_bytes(8, "big", signed=True) + event["event_id"][len("evt_") :].encode()
    return base64.urlsafe_b64encode(raw).decode()


def _cursor(token: str) -> tuple[datetime, str]:
    """The cursor a token encodes; any other string is a 400 (base64url of exactly ``_TOKEN_BYTES``)."""
    refused = errors.InvalidRequest("page_token: not a token from a previous page")
    if len(token) != _TOKEN_BYTES * 4 // 3 or not token.isascii():
        raise refused
    try:
        raw = base64.b64decode(token, altchars=b"-_", validate=True)
    except ValueError:
        raise refused from None
    event_id = "evt_" + raw[8:].decode("ascii", errors="replace")
    if ids.EVENT_ID.fullmatch(event_id) is None or base64.urlsafe_b64encode(raw).decode() != token:
        raise refused
    return _EPOCH + timedelta(microseconds=int.from_bytes(raw[:8], "big", signed=True)), event_id


def list_events(body: ListEvents) -> dict[str, Any]:
    if body.action is not None and body.action not in ACTIONS:
        raise errors.InvalidRequest("action: not a known action")
    after = _cursor(body.page_token) if body.page_token is not None else None
    # An agent's events are spread by the agent already; the others by their shard.
    rows = store.query_ordered(
        records.AUDIT_EVENTS,
        equals={"action": body.action} if body.action else None,
        contains={"subjects": body.agent_id} if body.agent_id else None,
        one_of=None if body.agent_id else {"shard": list(range(audit_chain.SHARDS))},
        order_by=_ORDER,
        descending=True,
        after=after,
        limit=body.page_size + 1,
    )
    shown = rows[: body.page_size]
    next_token = page_token(shown[-1]) if len(rows) > body.page_size else None
    return {"events": [public(doc) for doc in shown], "next_page_token": next_token}
