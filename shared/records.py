"""What is stored, and where: one typed shape per collection, and the paths that name documents.

Every document the service writes has one of these shapes; a domain module
reads a document as its record type and writes the whole record back. Paths
are built here only, so the data layout is in one place (docs/architecture.md
explains why each ID names its parent: one round trip, never a query, on the
credential path).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Literal, NotRequired, TypedDict

AGENTS = "agents"
DEVICE_KEYS = "device_keys"  # a subcollection of each agent
SECRETS = "secrets"  # a subcollection of each agent
DELEGATIONS = "delegations"
SETTINGS = "settings"
AUDIT_EVENTS = "audit_events"
AUDIT_CHAINS = "audit_chains"  # one head per chain of audit events
CAPABILITY_TOKENS = "capability_tokens"
USERS = "users"
USER_GRANTS = "user_grants"
RELATION_TUPLES = "relation_tuples"
REFRESH_FAMILIES = "refresh_families"
REVOKED_TOKENS = "revoked_tokens"
DEVICE_AUTHORIZATIONS = "device_authorizations"
ACTIVATION_FAILURES = "activation_failures"
SPENT_ASSERTIONS = "spent_assertions"  # client assertions and DPoP proofs, by a hash of their jti

SETTINGS_PATH = f"{SETTINGS}/current"  # all settings in one document: one read beside any change


class AgentRecord(TypedDict):
    agent_id: str
    display_name: str
    tenant_id: str
    created_at: datetime
    disabled: bool
    active_keys: dict[str, datetime | None]  # key ID -> expiry: the key limit needs no query
    scopes: NotRequired[list[str]]  # the most its OAuth tokens may carry (absent: none)
    public: NotRequired[bool]  # a public OAuth client: no keys, only the device-code and refresh grants


class DeviceKeyRecord(TypedDict):
    key_id: str
    agent_id: str
    key_hash: str | None  # SHA-256 of a secret key; the key itself is never stored (None for a key pair)
    label: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    replaces: str | None
    replaced_by: str | None
    kind: NotRequired[Literal["secret", "key_pair"]]  # absent: secret
    public_key: NotRequired[str | None]  # a key pair's raw Ed25519 public key, base64url
    scopes: NotRequired[list[str] | None]  # narrower than the agent's; None or absent: the agent's


class DelegationRecord(TypedDict):
    delegation_id: str
    from_agent: str
    to_agent: str
    tenant_id: str
    scope: list[str]
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


class SecretRecord(TypedDict):
    agent_id: str
    name: str
    version: int
    updated_at: datetime
    key_version: int
    nonce: str  # base64
    ciphertext: str  # base64; the plaintext is never stored


class SettingsRecord(TypedDict):
    values: dict[str, int]
    updated_at: dict[str, datetime]


class AuditEventChainFields(TypedDict):
    """Where an event sits: its listing shard and its place in its chain (``audit_chain``)."""

    shard: int  # 0..audit_chain.SHARDS-1, from the ID: spreads the listing's index over that many key ranges
    chain: str  # "agt_…", "usr_…", "settings" or "project.<n>" (audit_chain.chain_of)
    seq: int  # 1, 2, … along the chain
    prev_hash: str  # the chain's previous event's hash (audit_chain.GENESIS for seq 1)
    prev_at: datetime | None  # the previous event's ``at`` (None for seq 1): tells expiry from removal
    hash: str  # SHA-256 (hex) of the event's canonical encoding (audit_chain.canonical)


class AuditEventRecord(AuditEventChainFields):
    event_id: str
    at: datetime
    category: str
    action: str
    actor: dict[str, Any]
    target: dict[str, Any]
    request_id: str
    subjects: list[str]  # every agent the event names, for one array-contains query
    expire_at: datetime  # the retention, for a Firestore TTL policy
    logged_at: datetime  # when it was written, to the microsecond (system clock): the listing's order


class AuditChainRecord(TypedDict):
    """The head of one chain: its last event, updated in the transaction that appends to it."""

    chain: str
    seq: int
    hash: str
    event_id: str
    at: datetime


class CapabilityRecord(TypedDict):
    jti: str
    sub: str
    scope: str
    iat: int
    exp: int
    kid: str
    recorded_at: datetime


class UserRecord(TypedDict):
    user_id: str  # derived from the Firebase UID: resolving an ID token reads one document
    firebase_uid: str
    tenant_id: str
    display_name: str | None
    disabled: bool
    created_at: datetime


class UserGrantRecord(TypedDict):
    """The ``delegate_of`` relation: an agent may act for a user, for some actions, until it expires."""

    grant_id: str  # names the user and the agent: one grant per pair, found without a query
    user_id: str
    agent_id: str
    tenant_id: str
    actions: list[str]
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


class RelationTupleRecord(TypedDict):
    tenant_id: str
    resource: str  # "<type>:<id>"
    relation: str  # owner, editor or viewer
    subject: str  # "user:usr_…" or "agent:agt_…"
    created_at: datetime


class RefreshFamilyRecord(TypedDict):
    """One login's chain of refresh tokens: each refresh spends the current token and issues the next."""

    family_id: str
    client_id: str
    sub: str
    tenant_id: str
    key_id: str | None  # None: a public client's family (the device flow)
    scopes: list[str]
    aud: str
    grant_id: NotRequired[str | None]  # when ``sub`` is a user the client acts for
    created_at: datetime
    current_hash: str  # SHA-256 of the one live refresh token
    current_expires_at: datetime
    spent_hashes: list[str]  # the most recent spent ones: presenting one again revokes the family
    revoked_at: datetime | None
    jkt: str | None  # bound to this DPoP key, if the login was
    expire_at: datetime  # for a Firestore TTL policy: when no token of the family can live any more


class DeviceAuthorizationRecord(TypedDict):
    """An RFC 8628 device authorization: a program's request, waiting for a person's decision."""

    user_code: str  # the 8 letters, without the dash
    device_code_hash: str  # the device code itself is never stored
    client_id: str
    tenant_id: str
    agent_display_name: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime
    interval: int  # seconds the program must wait between polls; slow_down raises it
    next_poll_at: datetime
    status: Literal["pending", "approved", "denied", "used"]
    user_id: str | None
    decided_at: datetime | None
    expire_at: datetime  # for a Firestore TTL policy


class ActivationFailuresRecord(TypedDict):
    """A user's recent wrong user codes: past five a minute, the activation page is refused (429)."""

    user_id: str
    times: list[datetime]
    expire_at: datetime


class RevokedTokenRecord(TypedDict):
    jti: str
    client_id: str
    revoked_at: datetime
    expire_at: datetime  # the token's own expiry: the record is useless after it


class SpentAssertionRecord(TypedDict):
    kind: Literal["client_assertion", "dpop_proof"]
    expire_at: datetime


def agent_path(agent_id: str) -> str:
    return f"{AGENTS}/{agent_id}"


def device_key_path(agent_id: str, key_id: str) -> str:
    return f"{AGENTS}/{agent_id}/{DEVICE_KEYS}/{key_id}"


def secret_path(agent_id: str, name: str) -> str:
    # The prefix keeps names such as "." or "__x__" legal document IDs.
    return f"{AGENTS}/{agent_id}/{SECRETS}/s_{name}"


def agent_of_secret_path(path: str) -> str:
    """The agent whose secret ``path`` (as ``secret_path`` makes it) names."""
    return path.split("/")[1]


def delegation_path(delegation_id: str) -> str:
    return f"{DELEGATIONS}/{delegation_id}"


def audit_event_path(event_id: str) -> str:
    return f"{AUDIT_EVENTS}/{event_id}"


def audit_chain_path(chain: str) -> str:
    return f"{AUDIT_CHAINS}/{chain}"


def user_path(user_id: str) -> str:
    return f"{USERS}/{user_id}"


def user_grant_path(grant_id: str) -> str:
    return f"{USER_GRANTS}/{grant_id}"


def relation_tuple_path(resource: str, relation: str, subject: str) -> str:
    """A tuple's document: named by a hash of what it says, so a check reads it by name and names spread.

    The tenant need not be hashed in: a subject (a user or an agent) belongs to exactly one tenant, and a
    tuple is written only in its subject's tenant, so the same words never name two tenants' tuples.
    """
    digest = hashlib.sha256("\x00".join((resource, relation, subject)).encode()).hexdigest()
    return f"{RELATION_TUPLES}/{digest}"


def refresh_family_path(family_id: str) -> str:
    return f"{REFRESH_FAMILIES}/{family_id}"


def device_authorization_path(user_code: str) -> str:
    """Named by a hash of its user code: a decision finds it by the code, and names spread."""
    return f"{DEVICE_AUTHORIZATIONS}/{hashlib.sha256(('user_code' + chr(0) + user_code).encode()).hexdigest()}"


def activation_failures_path(user_id: str) -> str:
    return f"{ACTIVATION_FAILURES}/{user_id}"


def revoked_token_path(jti: str) -> str:
    return f"{REVOKED_TOKENS}/{jti}"


def spent_assertion_path(digest: str) -> str:
    return f"{SPENT_ASSERTIONS}/{digest}"


def capability_path(jti: str) -> str:
    return f"{CAPABILITY_TOKENS}/j_{jti}"  # the prefix keeps "." or "__x__" legal document IDs


RATE_COUNTERS = "rate_counters"


class RateCounterRecord(TypedDict):
    """Requests of one key (a hashed client address) in one bucket of time, on one shard (``ratelimit``)."""

    count: int
    expire_at: datetime  # for a Firestore TTL policy: when the bucket has left every window


def rate_counter_path(digest: str, bucket: int, shard: int) -> str:
    """The key's hash first, the bucket after: one moment's counters spread over the key range."""
    return f"{RATE_COUNTERS}/{digest}_{bucket}_{shard}"
