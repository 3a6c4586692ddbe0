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
from typing import Annotated, Any

from pydantic import Field

from shared import agents, change, clock, crypto, errors, ids, jws, keys, read_ahead, records, schema, store
from shared.credentials import key_is_live
from shared.principal import Principal
from shared.records import AgentRecord, DeviceKeyRecord

MAX_TTL_SECONDS = 365 * 86400
LIST_LIMIT = 1000


class IssueKey(schema.Body):
    agent_id: schema.Identifier | None = None
    label: schema.Label | None = None
    ttl_seconds: schema.SafeInt | None = None
    replaces_key_id: schema.Identifier | None = None
    scopes: schema.Scopes | None = None
    public_key: Annotated[str, Field(min_length=43, max_length=43)] | None = None


class RevokeKey(schema.Body):
    key_id: schema.Identifier


class ListKeys(schema.Body):
    agent_id: schema.Identifier | None = None


def public(record: DeviceKeyRecord) -> dict[str, Any]:
    return {
        "key_id": record["key_id"],
        "label": record["label"],
        "created_at": clock.rfc3339(record["created_at"]),
        "expires_at": clock.rfc3339(record["expires_at"]),
        "revoked_at": clock.rfc3339(record["revoked_at"]),
        "replaced_by": record["replaced_by"],
        "scopes": record.get("scopes"),
        "kind": kind_of(record),
    }


def kind_of(record: DeviceKeyRecord) -> str:
    """``secret`` (a device key, also a header credential) or ``key_pair`` (for private_key_jwt only)."""
    return record.get("kind", "secret")


def _public_key(encoded: str | None) -> bytes | None:
    if encoded is None:
        return None
    try:
        raw = jws.b64decode(encoded)
    except ValueError:
        raise errors.InvalidRequest("public_key: not base64url of 32 bytes") from None
    if not crypto.public_key_is_strict(raw):
        raise errors.InvalidRequest("public_key: not a strict Ed25519 public key")
    return raw


def _active_count(active: dict[str, datetime | None], now: datetime) -> int:
    return sum(1 for expires_at in active.values() if expires_at is None or now < expires_at)


def issue(body: IssueKey, agent_id: str, principal: Principal) -> dict[str, Any]:
    if body.ttl_seconds is not None and not 60 <= body.ttl_seconds <= MAX_TTL_SECONDS:
        raise errors.InvalidRequest(f"ttl_seconds: must be between 60 and {MAX_TTL_SECONDS}")
    if not ids.is_agent_id(agent_id):
        raise errors.NotFound()
    replaces = body.replaces_key_id
    if replaces is not None and ids.agent_of_device_key(replaces) != agent_id:
        raise errors.NotFound()  # not a key of this agent: it does not exist for the caller

    key_pair = _public_key(body.public_key)
    key_id = ids.new_device_key_id(agent_id)
    device_key = read_ahead.new_device_key(key_id) if key_pair is None else None
    agent_path = records.agent_path(agent_id)
    old_path = records.device_key_path(agent_id, replaces) if replaces else None
    # The caller's own key, re-read in the transaction (it is among the credential's standing documents).
    caller_path = (
        records.device_key_path(agent_id, principal.key_id)
        if principal.via == "device_key" and principal.key_id
        else None
    )

    def work(c: change.Change) -> DeviceKeyRecord:
        if caller_path is not None:
            caller: DeviceKeyRecord | None = c[caller_path]
            # A key already replaced by rotation still authenticates through its grace window, but may
            # not issue or rotate: a superseded (perhaps stolen) key cannot mint its way past the rotation.
            if caller is None or caller["replaced_by"] is not None or not key_is_live(caller):
                raise errors.Forbidden("A key replaced by rotation may not issue keys.")
        agent: AgentRecord | None = c[agent_path]
        if agent is None:
            raise errors.NotFound()
        if agent.get("public", False):
            raise errors.Conflict("A public agent holds no keys.")
        if body.scopes is not None and not set(body.scopes) <= set(agents.scopes_of(agent)):
            raise errors.InvalidRequest("scopes: a key may carry only scopes its agent has")
        now = c.now
        active = {k: v for k, v in agent["active_keys"].items() if v is None or now < v}
        target = {"kind": "device_key", "key_id": key_id, "agent_id": agent_id}
        if old_path is not None and replaces is not None:
            old: DeviceKeyRecord | None = c[old_path]
            if old is None:
                raise errors.NotFound()
            if not key_is_live(old) or old["replaced_by"] is not None:
                raise errors.Conflict("The key to replace is already revoked, expired or replaced.")
            grace_end = clock.after(c.settings["rotation_grace_seconds"])
            if old["expires_at"] is None or grace_end < old["expires_at"]:
                old["expires_at"] = grace_end
            old["replaced_by"] = key_id
            c.set(old_path, old)
            active[replaces] = old["expires_at"]
            target["replaces_key_id"] = replaces
        # Keys in their grace window count; the one being replaced does not, so a rotation may exceed
        # the limit by that one key until its grace ends, and rotations cannot be chained past it.
        counted = {k: v for k, v in active.items() if k != replaces}
        if _active_count(counted, now) >= c.settings["device_key_max_active"]:
            raise errors.Conflict("The agent already has the most active device keys allowed.")
        record: DeviceKeyRecord = {
            "key_id": key_id,
            "agent_id": agent_id,
            "key_hash": keys.hash_key(device_key) if device_key is not None else None,
            "label": body.label,
            "created_at": now,
            "expires_at": clock.after(body.ttl_seconds) if body.ttl_seconds is not None else None,
            "revoked_at": None,
            "replaces": replaces,
            "replaced_by": None,
            "kind": "secret" if key_pair is None else "key_pair",
            "public_key": jws.b64encode(key_pair) if key_pair is not None else None,
            "scopes": list(body.scopes) if body.scopes is not None else None,
        }
        c.create(records.device_key_path(agent_id, key_id), record)
        active[key_id] = record["expires_at"]
        agent["active_keys"] = active
        c.set(agent_path, agent)
        c.record("device.rotate" if replaces else "device.issue", target)
        return record

    reads = [agent_path, *([old_path] if old_path else []), *([caller_path] if caller_path else [])]
    record = change.apply(principal, reads, work)
    answer = {
        "key_id": key_id,
        "agent_id": agent_id,
        "device_key": device_key,
        "label": record["label"],
        "created_at": clock.rfc3339(record["created_at"]),
        "expires_at": clock.rfc3339(record["expires_at"]),
        "scopes": record.get("scopes"),
    }
    if device_key is None:
        del answer["device_key"]  # a key pair: the server never held a secret to show
    return answer


def revoke_keys(c: change.Change, agent_id: str, key_ids: list[str]) -> list[str]:
    """Inside a change that read the agent and these keys of it: revoke those not revoked yet, each
    record and the agent written once; the caller records their events. The keys revoked now."""
    revoked = []
    for key_id in key_ids:
        path = records.device_key_path(agent_id, key_id)
        record: DeviceKeyRecord | None = c[path]
        if record is not None and record["revoked_at"] is None:
            record["revoked_at"] = c.now
            c.set(path, record)
            revoked.append(key_id)
    agent: AgentRecord | None = c[records.agent_path(agent_id)]
    if revoked and agent is not None:
        for key_id in revoked:
            agent["active_keys"].pop(key_id, None)
        c.set(records.agent_path(agent_id), agent)
    return revoked


def revoke(body: RevokeKey, principal: Principal) -> dict[str, Any]:
    agent_id = ids.agent_of_device_key(body.key_id)
    if agent_id is None or (not principal.is_bridge and agent_id != principal.agent_id):
        raise errors.NotFound()  # another agent's key answers exactly like a key never made
    agent_path = records.agent_path(agent_id)
    key_path = records.device_key_path(agent_id, body.key_id)

    def work(c: change.Change) -> DeviceKeyRecord:
        agent: AgentRecord | None = c[agent_path]
        record: DeviceKeyRecord | None = c[key_path]
        if agent is None or record is None:
            raise errors.NotFound()
        if revoke_keys(c, agent_id, [body.key_id]):  # already revoked: answer as before, change nothing
            c.record("device.revoke", {"kind": "device_key", "key_id": body.key_id, "agent_id": agent_id})
        return record

    record = change.apply(principal, [agent_path, key_path], work)
    return {"key_id": body.key_id, "revoked_at": clock.rfc3339(record["revoked_at"])}


def list_keys(agent_id: str, principal: Principal) -> dict[str, Any]:
    if principal.is_bridge:
        if not ids.is_agent_id(agent_id):
            raise errors.NotFound()
        if store.get_many([records.agent_path(agent_id)])[0] is None:
            raise errors.NotFound()
    found: list[DeviceKeyRecord] = store.list_children(records.agent_path(agent_id), records.DEVICE_KEYS, LIST_LIMIT)
    found.sort(key=lambda r: (r["created_at"], r["key_id"]))
    return {"keys": [public(r) for r in found]}
