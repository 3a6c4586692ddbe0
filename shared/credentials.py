"""Credential resolution: which agent is this, and may the caller speak for it?

Every request carries exactly one primary credential. The bridge key is
checked against the configured hashes in constant time, with no datastore
read. A device key's checksum is checked before any read; its record and its
agent are then fetched together in one round trip (the key names both), and
the key is accepted only if its hash matches, it is neither revoked nor
expired, and its agent exists and is not disabled. Nothing here is cached, so
revocation and disabling hold from the very next request.

Every failure is the same ``401`` with the same text: no oracle.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any, Literal

from shared import clock, config, errors, keys, store

BRIDGE_HEADER = "x-agentpack-key"
DEVICE_HEADER = "x-agentpack-device-key"
AUTHORIZATION_HEADER = "authorization"
DELEGATION_HEADER = "x-agentpack-delegation"
PRIMARY_HEADERS = (BRIDGE_HEADER, DEVICE_HEADER, AUTHORIZATION_HEADER)


@dataclass(frozen=True)
class Principal:
    """A verified caller. ``agent`` is the agent record read while resolving (agent callers only)."""

    kind: Literal["bridge", "agent"]
    agent_id: str | None = None
    tenant_id: str | None = None
    key_id: str | None = None
    agent: dict[str, Any] | None = None

    @property
    def is_bridge(self) -> bool:
        return self.kind == "bridge"

    def require_bridge(self) -> None:
        if not self.is_bridge:
            raise errors.Forbidden("Only the bridge key may do this.")

    def require_agent(self) -> None:
        if self.is_bridge:
            raise errors.Forbidden("Only an agent credential may do this.")

    def subject(self, requested_agent_id: str | None) -> str:
        """The agent a request acts on: an agent caller always acts on itself, whatever the body says."""
        if self.agent_id is not None:
            return self.agent_id
        if requested_agent_id is None:
            raise errors.InvalidRequest("agent_id: required with the bridge key")
        return requested_agent_id

    def audit_actor(self) -> dict[str, Any]:
        if self.is_bridge:
            return {"kind": "bridge"}
        return {"kind": "agent", "agent_id": self.agent_id}


BRIDGE = Principal(kind="bridge")


def _single(values: list[str]) -> str:
    return values[0].strip()


def resolve(headers: dict[str, list[str]] | Any) -> Principal:
    """The verified principal of a request, from its lower-cased headers (name -> every value)."""
    sent = [name for name in PRIMARY_HEADERS for _ in headers.get(name, [])]
    if len(sent) > 1:
        raise errors.AmbiguousCredentials()
    if not sent:
        raise errors.Unauthenticated()
    if headers.get(DELEGATION_HEADER):
        # Delegations are not part of the identity core yet: refuse rather than ignore.
        raise errors.Forbidden("The delegation may not be used for this request.")
    value = _single(headers[sent[0]])
    if sent[0] == BRIDGE_HEADER:
        return _resolve_bridge(value)
    if sent[0] == DEVICE_HEADER:
        return _resolve_device_key(value)
    raise errors.Unauthenticated()


def _resolve_bridge(key: str) -> Principal:
    hashes = config.get().bridge_key_hashes
    if not keys.is_bridge_key(key):
        raise errors.Unauthenticated()
    presented = keys.hash_key(key)
    matched = False
    for live in hashes:  # every live hash is compared: the time taken does not say which matched
        matched |= hmac.compare_digest(presented, live)
    if not matched:
        raise errors.Unauthenticated()
    return BRIDGE


def _resolve_device_key(key: str) -> Principal:
    name = keys.parse_device_key(key)
    if name is None:
        raise errors.Unauthenticated()
    agent, record = store.get_many(
        [f"{store.AGENTS}/{name.agent_id}", f"{store.AGENTS}/{name.agent_id}/{store.DEVICE_KEYS}/{name.key_id}"]
    )
    if agent is None or record is None or not keys.hash_matches(key, record["key_hash"]):
        raise errors.Unauthenticated()
    if not key_is_live(record) or agent.get("disabled", True):
        raise errors.Unauthenticated()
    return Principal(
        kind="agent", agent_id=name.agent_id, tenant_id=agent["tenant_id"], key_id=name.key_id, agent=agent
    )


def key_is_live(record: dict[str, Any]) -> bool:
    if record.get("revoked_at") is not None:
        return False
    expires_at = record.get("expires_at")
    return expires_at is None or clock.now() < expires_at
