"""Device keys: per-install keys bound to exactly one agent.

A key record lives at ``agents/{agent_id}/device_keys/{key_id}`` and holds
only the key's SHA-256 hash. The key's own text names its key ID (which names
its agent), so resolving a key reads its record and its agent in one round
trip, and no lookup ever needs a query or uses a hash as a document name.

Rotation (``replaces_key_id``) issues a new key and shortens the old key's
life to ``rotation_grace_seconds`` from now; the old key itself does not count
toward ``device_key_max_active`` (so rotation works at the limit), but the
keys in their grace window do: rotations cannot be chained past the limit.
A replaced key may not issue, rotate or revoke (``require_full_credential``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared import agents, audit, clock, errors, ids, keys, schema, settings, store
from shared.credentials import Principal, key_is_live

MAX_TTL_SECONDS = 365 * 86400
LIST_LIMIT = 1000


class IssueKey(schema.Body):
    agent_id: schema.Identifier | None = None
    label: schema.Label | None = None
    ttl_seconds: schema.SafeInt | None = None
    replaces_key_id: schema.Identifier | None = None


class RevokeKey(schema.Body):
    key_id: schema.Identifier


class ListKeys(schema.Body):
    agent_id: schema.Identifier | None = None


def path(agent_id: str, key_id: str) -> str:
    return f"{agents.path(agent_id)}/{store.DEVICE_KEYS}/{key_id}"


def public(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "key_id": record["key_id"],
        "label": record["label"],
        "created_at": clock.rfc3339(record["created_at"]),
        "expires_at": clock.rfc3339(record["expires_at"]),
        "revoked_at": clock.rfc3339(record["revoked_at"]),
        "replaced_by": record.get("replaced_by"),
    }


def _active_count(active: dict[str, datetime | None], now: datetime) -> int:
    return sum(1 for expires_at in active.values() if expires_at is None or now < expires_at)


def issue(body: IssueKey, agent_id: str, principal: Principal, request_id: str) -> dict[str, Any]:
    if body.ttl_seconds is not None and not 60 <= body.ttl_seconds <= MAX_TTL_SECONDS:
        raise errors.InvalidRequest(f"ttl_seconds: must be between 60 and {MAX_TTL_SECONDS}")
    if not ids.is_agent_id(agent_id):
        raise errors.NotFound()
    replaces = body.replaces_key_id
    if replaces is not None and ids.agent_of_device_key(replaces) != agent_id:
        raise errors.NotFound()  # not a key of this agent: it does not exist for the caller

    key_id = ids.new_device_key_id(agent_id)
    device_key = keys.new_device_key(key_id)

    # A key already replaced by rotation still authenticates through its grace window, but may not
    # issue or rotate: whoever holds a superseded (perhaps stolen) key cannot mint its way past the rotation.
    caller_key = path(agent_id, principal.key_id) if principal.via == "device_key" and principal.key_id else None

    def change(txn: store.Transaction) -> dict[str, Any]:
        paths = [agents.path(agent_id), settings.PATH] + ([path(agent_id, replaces)] if replaces else [])
        agent, settings_doc, *old = txn.get_many(paths + ([caller_key] if caller_key else []))
        if caller_key is not None:
            caller = old.pop()
            if caller is None or caller.get("replaced_by") is not None or not key_is_live(caller):
                raise errors.Forbidden("A key replaced by rotation may not issue keys.")
        if agent is None:
            raise errors.NotFound()
        principal.confirm_enabled(agent)
        values = settings.effective(settings_doc)
        now = clock.now()
        active: dict[str, datetime | None] = {
            k: v for k, v in agent.get("active_keys", {}).items() if v is None or now < v
        }
        old_record = old[0] if old else None
        if replaces is not None:
            if old_record is None:
                raise errors.NotFound()
            if not key_is_live(old_record) or old_record.get("replaced_by") is not None:
                raise errors.Conflict("The key to replace is already revoked, expired or replaced.")
            grace_end = clock.after(values["rotation_grace_seconds"])
            if old_record["expires_at"] is None or grace_end < old_record["expires_at"]:
                old_record["expires_at"] = grace_end
            old_record["replaced_by"] = key_id
            txn.set(path(agent_id, replaces), old_record)
            active[replaces] = old_record["expires_at"]
        # Keys in their grace window count; the one being replaced does not, so a rotation may exceed
        # the limit by that one key until its grace ends, and rotations cannot be chained past it.
        counted = {k: v for k, v in active.items() if k != replaces}
        if _active_count(counted, now) >= values["device_key_max_active"]:
            raise errors.Conflict("The agent already has the most active device keys allowed.")
        expires_at = clock.after(body.ttl_seconds) if body.ttl_seconds is not None else None
        record = {
            "key_id": key_id,
            "agent_id": agent_id,
            "key_hash": keys.hash_key(device_key),
            "label": body.label,
            "created_at": now,
            "expires_at": expires_at,
            "revoked_at": None,
            "replaces": replaces,
            "replaced_by": None,
        }
        txn.create(path(agent_id, key_id), record)
        active[key_id] = expires_at
        agent["active_keys"] = active
        txn.set(agents.path(agent_id), agent)
        target = {"kind": "device_key", "key_id": key_id, "agent_id": agent_id}
        if replaces is not None:
            target["replaces_key_id"] = replaces
        audit.record(
            txn,
            action="device.rotate" if replaces else "device.issue",
            principal=principal,
            target=target,
            request_id=request_id,
            settings_doc=settings_doc,
        )
        return record

    record = store.transact(change)
    return {
        "key_id": key_id,
        "agent_id": agent_id,
        "device_key": device_key,
        "label": record["label"],
        "created_at": clock.rfc3339(record["created_at"]),
        "expires_at": clock.rfc3339(record["expires_at"]),
    }


def revoke(body: RevokeKey, principal: Principal, request_id: str) -> dict[str, Any]:
    agent_id = ids.agent_of_device_key(body.key_id)
    if agent_id is None or (not principal.is_bridge and agent_id != principal.agent_id):
        raise errors.NotFound()  # another agent's key answers exactly like a key never made

    def change(txn: store.Transaction) -> dict[str, Any]:
        agent, record, settings_doc = txn.get_many([agents.path(agent_id), path(agent_id, body.key_id), settings.PATH])
        if agent is None or record is None:
            raise errors.NotFound()
        principal.confirm_enabled(agent)
        if record["revoked_at"] is not None:
            return record  # already revoked: answer as before, change nothing
        record["revoked_at"] = clock.now()
        txn.set(path(agent_id, body.key_id), record)
        agent.setdefault("active_keys", {}).pop(body.key_id, None)
        txn.set(agents.path(agent_id), agent)
        audit.record(
            txn,
            action="device.revoke",
            principal=principal,
            target={"kind": "device_key", "key_id": body.key_id, "agent_id": agent_id},
            request_id=request_id,
            settings_doc=settings_doc,
        )
        return record

    record = store.transact(change)
    return {"key_id": body.key_id, "revoked_at": clock.rfc3339(record["revoked_at"])}


def list_keys(agent_id: str, principal: Principal) -> dict[str, Any]:
    if principal.is_bridge:
        if not ids.is_agent_id(agent_id):
            raise errors.NotFound()
        (agent,) = store.get_many([agents.path(agent_id)])
        if agent is None:
            raise errors.NotFound()
    records = store.list_children(agents.path(agent_id), store.DEVICE_KEYS, LIST_LIMIT)
    records.sort(key=lambda r: (r["created_at"], r["key_id"]))
    return {"keys": [public(r) for r in records]}
