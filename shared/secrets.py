"""The per-agent secrets store, encrypted at rest.

A secret lives at ``agents/{agent_id}/secrets/s_{name}`` (the prefix keeps
names like ``.`` or ``__x__`` legal as document IDs). Its value is sealed
with XChaCha20-Poly1305 under the newest server key, with a fresh random
nonce, and associated data binding it to its tenant, agent, name and version:
a ciphertext copied anywhere else fails to open. A record names the key
version that sealed it; a record whose key has been retired answers 503,
never a fallback. Values never appear in Firestore, the audit trail, a log
line or an error, in any encoding.

The bridge key may not use these routes: an operator who needs an agent's
secret must issue a device key, which is audited.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from shared import change, clock, config, crypto, errors, records, schema, store
from shared.principal import BRIDGE, Principal
from shared.records import AgentRecord, SecretRecord

log = logging.getLogger("agentpack")
_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")
LIST_LIMIT = 1000


def _name(value: str) -> str:
    if _NAME.fullmatch(value) is None:
        raise ValueError("must match [A-Za-z0-9._-]{1,128}")
    return value


SecretName = Annotated[str, AfterValidator(_name)]


class _AgentBody(schema.Body):
    # Ignored, as the contract says: the agent always comes from the credential.
    agent_id: schema.Identifier | None = None


class Put(_AgentBody):
    name: SecretName
    value: Annotated[str, Field(max_length=49152)]


class Get(_AgentBody):
    name: SecretName


class Delete(_AgentBody):
    name: SecretName


class ListSecrets(_AgentBody):
    pass


def record_named(name: str | None) -> Callable[[str], Sequence[str]]:
    """For ``credentials.resolve(also_read=...)``: the named record of the agent the request acts as."""

    def paths(agent_id: str) -> Sequence[str]:
        return [records.secret_path(agent_id, name)] if name is not None else []

    return paths


def _associated_data(tenant_id: str, agent_id: str, name: str, version: int) -> bytes:
    return "\x00".join(("agentpack-secret/v1", tenant_id, agent_id, name, str(version))).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def sealed_record(
    tenant_id: str, agent_id: str, name: str, version: int, value: str, updated_at: datetime
) -> SecretRecord:
    """The record of ``value``, sealed under the newest key and bound to where it stands."""
    keyring = config.secrets_keyring()
    nonce, ciphertext = crypto.seal(
        keyring.newest_key, value.encode("utf-8"), _associated_data(tenant_id, agent_id, name, version)
    )
    return {
        "agent_id": agent_id,
        "name": name,
        "version": version,
        "updated_at": updated_at,
        "key_version": keyring.newest_version,
        "nonce": _b64(nonce),
        "ciphertext": _b64(ciphertext),
    }


def unseal(tenant_id: str, record: SecretRecord) -> str | None:
    """The plaintext of a record, or None if it fails to open where it stands (a transplant or tampering).

    A record sealed under a retired key raises ``Unavailable``.
    """
    key = config.secrets_keyring().versions.get(record["key_version"])
    if key is None:
        log.error("secret sealed under a retired key version %s", record["key_version"])
        raise errors.Unavailable("The secret is sealed under a retired key; nothing was returned.")
    plaintext = crypto.unseal(
        key,
        base64.b64decode(record["nonce"]),
        base64.b64decode(record["ciphertext"]),
        _associated_data(tenant_id, record["agent_id"], record["name"], record["version"]),
    )
    return None if plaintext is None else plaintext.decode("utf-8")


def _subject(principal: Principal) -> tuple[str, AgentRecord]:
    principal.require_agent()
    agent_id = principal.subject(None)
    if principal.agent is None:
        raise errors.Unauthenticated()
    return agent_id, principal.agent


def _public(record: SecretRecord) -> dict[str, Any]:
    return {"name": record["name"], "version": record["version"], "updated_at": clock.rfc3339(record["updated_at"])}


def _audit_integrity_failure(principal: Principal, agent_id: str, name: str) -> None:
    target = {"kind": "secret", "agent_id": agent_id, "name": name}
    change.apply(principal, [], lambda c: c.record("secret.integrity_failure", target))


def get(body: Get, principal: Principal) -> dict[str, Any]:
    agent_id, agent = _subject(principal)
    where = records.secret_path(agent_id, body.name)
    record: SecretRecord | None = (
        principal.documents[where] if where in principal.documents else store.get_many([where])[0]
    )
    if record is None:
        raise errors.NotFound()
    value = unseal(agent["tenant_id"], record)
    if value is None or record["agent_id"] != agent_id or record["name"] != body.name:
        log.error("secret integrity failure request_id=%s", principal.request_id)
        _audit_integrity_failure(principal, agent_id, body.name)
        raise errors.IntegrityFailure()
    return {**_public(record), "value": value}


def put(body: Put, principal: Principal) -> dict[str, Any]:
    agent_id, _ = _subject(principal)
    size = len(body.value.encode("utf-8"))
    agent_path, path = records.agent_path(agent_id), records.secret_path(agent_id, body.name)

    def work(c: change.Change) -> SecretRecord:
        agent: AgentRecord = c[agent_path]  # the agent acted as: its credential's standing was confirmed
        existing: SecretRecord | None = c[path]
        if size > c.settings["secret_max_bytes"]:
            raise errors.InvalidRequest(f"value: at most {c.settings['secret_max_bytes']} UTF-8 bytes")
        version = existing["version"] + 1 if existing else 1
        record = sealed_record(agent["tenant_id"], agent_id, body.name, version, body.value, c.now)
        c.set(path, record)
        c.record("secret.put", {"kind": "secret", "agent_id": agent_id, "name": body.name, "version": version})
        return record

    return _public(change.apply(principal, [agent_path, path], work))


def delete(body: Delete, principal: Principal) -> dict[str, Any]:
    agent_id, _ = _subject(principal)
    path = records.secret_path(agent_id, body.name)

    def work(c: change.Change) -> None:
        existing: SecretRecord | None = c[path]
        if existing is None:
            raise errors.NotFound()
        c.delete(path)
        target = {"kind": "secret", "agent_id": agent_id, "name": body.name, "version": existing["version"]}
        c.record("secret.delete", target)

    change.apply(principal, [path], work)
    return {"name": body.name, "deleted": True}


def list_names(principal: Principal) -> dict[str, Any]:
    agent_id, _ = _subject(principal)
    found: list[SecretRecord] = store.list_children(records.agent_path(agent_id), records.SECRETS, LIST_LIMIT)
    return {"secrets": sorted((_public(r) for r in found), key=lambda s: s["name"])}


def reseal(record_path: str, request_id: str) -> bool:
    """Re-seal one record under the newest key, keeping its version. False if it already was.

    Safe to run twice and to interrupt: each record changes alone, in its own audited change
    (``secret.reseal``, the operator's, so the actor is the bridge).
    """
    newest = config.secrets_keyring().newest_version
    agent_path = records.agent_path(records.agent_of_secret_path(record_path))

    def work(c: change.Change) -> bool:
        record: SecretRecord | None = c[record_path]
        if record is None or record["key_version"] == newest:
            return False
        agent: AgentRecord | None = c[agent_path]
        if agent is None:
            raise errors.NotFound()
        value = unseal(agent["tenant_id"], record)
        if value is None:
            raise errors.IntegrityFailure()
        previous = record["key_version"]
        record = sealed_record(
            agent["tenant_id"], record["agent_id"], record["name"], record["version"], value, record["updated_at"]
        )
        c.set(record_path, record)
        c.record(
            "secret.reseal",
            {
                "kind": "secret",
                "agent_id": record["agent_id"],
                "name": record["name"],
                "version": record["version"],
                "key_version": record["key_version"],
                "previous_key_version": previous,
            },
        )
        return True

    return change.apply(BRIDGE.for_request(request_id), [record_path, agent_path], work)
