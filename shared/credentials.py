"""Credential resolution: which agent is this, and may the caller speak for it?

Every request carries exactly one primary credential:

* the bridge key, checked against the configured hashes in constant time,
  with no datastore read;
* a device key, whose checksum is checked before any read; its record and its
  agent are then fetched in one round trip (the key names both) and it is
  accepted only if its hash matches, it is neither revoked nor expired, and its
  agent exists and is not disabled;
* a capability token, verified offline against the embedded public keys, for
  the routes in its scope only.

Beside an agent credential, ``x-agentpack-delegation`` makes the request act
for the grantor. The delegation and the grantor are read in the same round
trip as the device key (the delegation ID names its grantor). Nothing here is
cached, so revocation and disabling hold from the very next request.

Every authentication failure is the same ``401``; every delegation failure the
same ``403``: no oracle.
"""

from __future__ import annotations

import dataclasses
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from shared import clock, config, errors, ids, keys, store

BRIDGE_HEADER = "x-agentpack-key"
DEVICE_HEADER = "x-agentpack-device-key"
AUTHORIZATION_HEADER = "authorization"
DELEGATION_HEADER = "x-agentpack-delegation"
PRIMARY_HEADERS = (BRIDGE_HEADER, DEVICE_HEADER, AUTHORIZATION_HEADER)
DELEGATION_REFUSED = "The delegation does not allow this request."

Headers = Any  # a mapping of lower-cased header name -> every value sent


@dataclass(frozen=True)
class Principal:
    """A verified caller.

    ``agent_id`` is the agent the request acts as (the grantor, when delegated);
    ``actor_id`` is the agent that holds the credential. ``agent`` is the record
    of ``agent_id`` when resolution read it (device keys and delegations).
    """

    kind: Literal["bridge", "agent"]
    via: Literal["bridge_key", "device_key", "capability"]
    agent_id: str | None = None
    actor_id: str | None = None
    tenant_id: str | None = None
    key_id: str | None = None
    agent: dict[str, Any] | None = None
    delegation_id: str | None = None
    superseded: bool = False  # a device key replaced by rotation, in its grace window
    prefetched: Mapping[str, dict[str, Any] | None] = field(default_factory=dict)

    @property
    def is_bridge(self) -> bool:
        return self.kind == "bridge"

    @property
    def is_delegated(self) -> bool:
        return self.delegation_id is not None

    def require_bridge(self) -> None:
        if not self.is_bridge:
            raise errors.Forbidden("Only the bridge key may do this.")

    def require_agent(self) -> None:
        if self.is_bridge:
            raise errors.Forbidden("Only an agent credential may do this.")

    def require_full_credential(self) -> None:
        """For routes that mint or revoke credentials: the bridge key, or an agent's current device key.

        A short-lived capability token must not mint a longer-lived credential, and a key replaced by
        rotation (perhaps the stolen one) keeps working through its grace window but may not mint
        keys or delegations nor revoke the key that replaced it.
        """
        if self.is_bridge:
            return
        if self.via != "device_key" or self.superseded or self.is_delegated:
            raise errors.Forbidden("This needs the bridge key or the agent's current device key.")

    def confirm_enabled(self, agent: dict[str, Any] | None) -> dict[str, Any]:
        """Inside a write's transaction: the agent record still exists and, for an agent credential,
        is still enabled (disabling holds even against a request already past resolution)."""
        if agent is None or (not self.is_bridge and agent.get("disabled", True)):
            raise errors.Unauthenticated()
        return agent

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
        actor: dict[str, Any] = {"kind": "agent", "agent_id": self.actor_id}
        if self.is_delegated:
            actor["on_behalf_of"] = self.agent_id
        return actor


BRIDGE = Principal(kind="bridge", via="bridge_key")


Prefetch = Callable[[str], list[str]]


def resolve(headers: Headers, route: str, prefetch: Prefetch | None = None) -> Principal:
    """The verified principal of a request to ``route``, from its lower-cased headers.

    ``prefetch(agent_id)`` names documents of the agent the request will act as;
    they are read in the same round trip as the credential and handed back in
    ``Principal.prefetched``, so a route like ``secrets/get`` costs one read in all.
    """
    settings = config.get()  # a broken configuration refuses every request, never serves weaker
    sent = [name for name in PRIMARY_HEADERS for value in headers.get(name, []) for _ in range(_credentials_in(value))]
    if len(sent) > 1:
        raise errors.AmbiguousCredentials()
    if not sent:
        raise errors.Unauthenticated()
    value = headers[sent[0]][0].strip()
    delegation = _delegation_id(headers)
    if sent[0] == BRIDGE_HEADER:
        principal = _resolve_bridge(value, settings.bridge_key_hashes)
        if delegation is not None:
            raise errors.Forbidden(DELEGATION_REFUSED)
        return principal
    if sent[0] == DEVICE_HEADER:
        return _resolve_device_key(value, delegation, route, prefetch)
    return _resolve_capability(value, delegation, route, prefetch)


def _credentials_in(value: str) -> int:
    """A header sent twice reaches us joined by a comma (keys and tokens never hold one): count the parts."""
    return max(1, sum(1 for part in value.split(",") if part.strip()))


def _delegation_id(headers: Headers) -> str | None:
    values = headers.get(DELEGATION_HEADER, [])
    if not values:
        return None
    if len(values) > 1 or "," in values[0]:
        return ""  # sent twice: never a valid ID, refused once the primary credential is checked
    return str(values[0]).strip()


def _resolve_bridge(key: str, live_hashes: tuple[str, ...]) -> Principal:
    if not keys.is_bridge_key(key):
        raise errors.Unauthenticated()
    presented = keys.hash_key(key)
    matched = False
    for live in live_hashes:  # compare with every live hash: the time taken does not say which matched
        matched |= hmac.compare_digest(presented, live)
    if not matched:
        raise errors.Unauthenticated()
    return BRIDGE


@dataclass(frozen=True)
class _Reads:
    """The documents one resolution reads, all in one round trip."""

    agent: str
    delegation: list[str]  # [delegation, grantor], or empty when absent or malformed
    extra: list[str]

    @classmethod
    def plan(cls, agent_id: str, delegation_id: str | None, prefetch: Prefetch | None) -> _Reads:
        grantor = ids.grantor_of_delegation(delegation_id) if delegation_id else None
        delegation = [f"{store.DELEGATIONS}/{delegation_id}", f"{store.AGENTS}/{grantor}"] if grantor else []
        subject = grantor or agent_id
        return cls(f"{store.AGENTS}/{agent_id}", delegation, prefetch(subject) if prefetch else [])


def _resolve_device_key(key: str, delegation_id: str | None, route: str, prefetch: Prefetch | None) -> Principal:
    name = keys.parse_device_key(key)
    if name is None:
        raise errors.Unauthenticated()
    reads = _Reads.plan(name.agent_id, delegation_id, prefetch)
    key_path = f"{reads.agent}/{store.DEVICE_KEYS}/{name.key_id}"
    docs = store.get_many([reads.agent, key_path, *reads.delegation, *reads.extra])
    agent, record = docs[0], docs[1]
    if agent is None or record is None or not keys.hash_matches(key, record["key_hash"]):
        raise errors.Unauthenticated()
    if not key_is_live(record) or agent.get("disabled", True):
        raise errors.Unauthenticated()
    principal = Principal(
        kind="agent",
        via="device_key",
        agent_id=name.agent_id,
        actor_id=name.agent_id,
        tenant_id=agent["tenant_id"],
        key_id=name.key_id,
        agent=agent,
        superseded=record.get("replaced_by") is not None,
    )
    return _finish(principal, agent, delegation_id, docs[2:], reads, route)


def _resolve_capability(
    authorization: str, delegation_id: str | None, route: str, prefetch: Prefetch | None
) -> Principal:
    from shared import tokens  # only requests that carry a token pay for the verifier

    scheme, _, token = authorization.partition(" ")
    public_keys = config.capability_keys()
    if scheme.lower() != "bearer" or not token.strip() or public_keys is None:
        raise errors.Unauthenticated()
    capability = tokens.verify(
        token.strip(), public_keys, now=clock.now(), max_ttl_seconds=config.get().capability_max_ttl_seconds
    )
    if route not in capability.scopes:
        raise errors.Forbidden("The capability token does not allow this route.")
    principal = Principal(kind="agent", via="capability", agent_id=capability.agent_id, actor_id=capability.agent_id)
    if delegation_id is None and prefetch is None:
        return principal  # verified offline: no datastore read
    reads = _Reads.plan(capability.agent_id, delegation_id, prefetch)
    docs = store.get_many([reads.agent, *reads.delegation, *reads.extra])
    agent = docs[0]
    if agent is None or agent.get("disabled", True):
        raise errors.Unauthenticated()  # read anyway for this route, so a disabled agent is refused at once
    principal = dataclasses.replace(principal, tenant_id=agent["tenant_id"], agent=agent)
    return _finish(principal, agent, delegation_id, docs[1:], reads, route)


def _finish(
    principal: Principal,
    agent: dict[str, Any],
    delegation_id: str | None,
    rest: list[dict[str, Any] | None],
    reads: _Reads,
    route: str,
) -> Principal:
    delegation_docs, extra_docs = rest[: len(reads.delegation)], rest[len(reads.delegation) :]
    if delegation_id is not None:
        principal = _act_for_grantor(principal, agent, delegation_id, delegation_docs, route)
    return dataclasses.replace(principal, prefetched=dict(zip(reads.extra, extra_docs, strict=True)))


def _act_for_grantor(
    grantee: Principal,
    grantee_record: dict[str, Any],  # existing and enabled: checked with the credential
    delegation_id: str,
    delegation_docs: list[dict[str, Any] | None],
    route: str,
) -> Principal:
    from shared.delegations import is_usable  # the rules of a delegation live with delegations

    grantor_id = ids.grantor_of_delegation(delegation_id)
    if grantor_id is None or len(delegation_docs) != 2:
        raise errors.Forbidden(DELEGATION_REFUSED)
    record, grantor = delegation_docs
    if (
        record is None
        or grantor is None
        or grantor.get("disabled", True)
        or grantor["tenant_id"] != grantee_record["tenant_id"]
        or not is_usable(record, grantee.actor_id or "", grantor_id)
        or route not in record["scope"]
    ):
        raise errors.Forbidden(DELEGATION_REFUSED)
    return Principal(
        kind="agent",
        via=grantee.via,
        agent_id=grantor_id,
        actor_id=grantee.actor_id,
        tenant_id=grantor["tenant_id"],
        key_id=grantee.key_id,
        agent=grantor,
        delegation_id=delegation_id,
        superseded=grantee.superseded,
    )


def key_is_live(record: dict[str, Any]) -> bool:
    if record.get("revoked_at") is not None:
        return False
    expires_at = record.get("expires_at")
    return expires_at is None or clock.now() < expires_at
