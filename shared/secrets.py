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
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from shared import agents, audit, clock, config, crypto, errors, schema, settings, store
from shared.credentials import BRIDGE, Prefetch, Principal

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


class IntegrityError(errors.Unavailable):
    default_description = "The stored secret failed its integrity check; no value was returned."


def path(agent_id: str, name: str) -> str:
    return f"{agents.path(agent_id)}/{store.SECRETS}/s_{name}"


def prefetch_named(name: str | None) -> Prefetch:
    """For ``credentials.resolve``: read the agent and the named secret beside the credential."""
    if name is None:
        return agent_only
    return lambda agent_id: [path(agent_id, name)]


def agent_only(agent_id: str) -> list[str]:
    """For ``credentials.resolve``: nothing more, but a capability token's agent is read (and must be enabled)."""
    return []


def _associated_data(tenant_id: str, agent_id: str, name: str, version: int) -> bytes:
    return "\x00".join(("agentpack-secret/v1", tenant_id, agent_id, name, str(version))).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def seal(tenant_id: str, agent_id: str, name: str, version: int, value: str) -> dict[str, Any]:
    keyring = config.secrets_keyring()
    nonce, ciphertext = crypto.seal(
        keyring.newest_key, value.encode("utf-8"), _associated_data(tenant_id, agent_id, name, version)
    )
    return {"key_version": keyring.newest_version, "nonce": _b64(nonce), "ciphertext": _b64(ciphertext)}


def unseal(tenant_id: str, record: dict[str, Any]) -> str | None:
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


def _subject(principal: Principal) -> tuple[str, dict[str, Any]]:
    principal.require_agent()
    agent_id = principal.subject(None)
    if principal.agent is None:
        raise errors.Unauthenticated()
    return agent_id, principal.agent


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {"name": record["name"], "version": record["version"], "updated_at": clock.rfc3339(record["updated_at"])}


def _audit_integrity_failure(principal: Principal, agent_id: str, name: str, request_id: str) -> None:
    def change(txn: store.Transaction) -> None:
        (settings_doc,) = txn.get_many([settings.PATH])
        audit.record(
            txn,
            action="secret.integrity_failure",
            principal=principal,
            target={"kind": "secret", "agent_id": agent_id, "name": name},
            request_id=request_id,
            settings_doc=settings_doc,
        )

    store.transact(change)


def get(body: Get, principal: Principal, request_id: str) -> dict[str, Any]:
    agent_id, agent = _subject(principal)
    where = path(agent_id, body.name)
    if where in principal.prefetched:
        record = principal.prefetched[where]
    else:
        (record,) = store.get_many([where])
    if record is None:
        raise errors.NotFound()
    value = unseal(agent["tenant_id"], record)
    if value is None or record["agent_id"] != agent_id or record["name"] != body.name:
        log.error("secret integrity failure request_id=%s", request_id)
        _audit_integrity_failure(principal, agent_id, body.name, request_id)
        raise IntegrityError()
    return {**_public(record), "value": value}


def put(body: Put, principal: Principal, request_id: str) -> dict[str, Any]:
    agent_id, _ = _subject(principal)
    size = len(body.value.encode("utf-8"))

    def change(txn: store.Transaction) -> dict[str, Any]:
        agent, existing, settings_doc = txn.get_many([agents.path(agent_id), path(agent_id, body.name), settings.PATH])
        agent = principal.confirm_enabled(agent)
        values = settings.effective(settings_doc)
        if size > values["secret_max_bytes"]:
            raise errors.InvalidRequest(f"value: at most {values['secret_max_bytes']} UTF-8 bytes")
        version = existing["version"] + 1 if existing else 1
        record = {
            "agent_id": agent_id,
            "name": body.name,
            "version": version,
            "updated_at": clock.now(),
            **seal(agent["tenant_id"], agent_id, body.name, version, body.value),
        }
        txn.set(path(agent_id, body.name), record)
        audit.record(
            txn,
            action="secret.put",
            principal=principal,
            target={"kind": "secret", "agent_id": agent_id, "name": body.name, "version": version},
            request_id=request_id,
            settings_doc=settings_doc,
        )
        return record

    return _public(store.transact(change))


def delete(body: Delete, principal: Principal, request_id: str) -> dict[str, Any]:
    agent_id, _ = _subject(principal)

    def change(txn: store.Transaction) -> None:
        agent, existing, settings_doc = txn.get_many([agents.path(agent_id), path(agent_id, body.name), settings.PATH])
        principal.confirm_enabled(agent)
        if existing is None:
            raise errors.NotFound()
        txn.delete(path(agent_id, body.name))
        audit.record(
            txn,
            action="secret.delete",
            principal=principal,
            target={"kind": "secret", "agent_id": agent_id, "name": body.name, "version": existing["version"]},
            request_id=request_id,
            settings_doc=settings_doc,
        )

    store.transact(change)
    return {"name": body.name, "deleted": True}


def list_names(principal: Principal) -> dict[str, Any]:
    agent_id, _ = _subject(principal)
    records = store.list_children(agents.path(agent_id), store.SECRETS, LIST_LIMIT)
    return {"secrets": sorted((_public(r) for r in records), key=lambda s: s["name"])}


def reseal(record_path: str, request_id: str) -> bool:
    """Re-seal one record under the newest key, keeping its version. False if it already was.

    Safe to run twice and to interrupt: each record changes alone, in its own transaction, with
    its ``secret.reseal`` audit event (the operator's, so the actor is the bridge).
    """
    keyring = config.secrets_keyring()

    def change(txn: store.Transaction) -> bool:
        (record,) = txn.get_many([record_path])
        if record is None or record["key_version"] == keyring.newest_version:
            return False
        agent, settings_doc = txn.get_many([agents.path(record["agent_id"]), settings.PATH])
        if agent is None:
            raise errors.NotFound()
        value = unseal(agent["tenant_id"], record)
        if value is None:
            raise IntegrityError()
        previous = record["key_version"]
        record.update(seal(agent["tenant_id"], record["agent_id"], record["name"], record["version"], value))
        txn.set(record_path, record)
        audit.record(
            txn,
            action="secret.reseal",
            principal=BRIDGE,
            target={
                "kind": "secret",
                "agent_id": record["agent_id"],
                "name": record["name"],
                "version": record["version"],
                "key_version": record["key_version"],
                "previous_key_version": previous,
            },
            request_id=request_id,
            settings_doc=settings_doc,
        )
        return True

    return store.transact(change)
