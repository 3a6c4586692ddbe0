"""What is stored, and where: one typed shape per collection, and the paths that name documents.

Every document the service writes has one of these shapes; a domain module
reads a document as its record type and writes the whole record back. Paths
are built here only, so the data layout is in one place (docs/architecture.md
explains why each ID names its parent: one round trip, never a query, on the
credential path).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypedDict

AGENTS = "agents"
DEVICE_KEYS = "device_keys"  # a subcollection of each agent
SECRETS = "secrets"  # a subcollection of each agent
DELEGATIONS = "delegations"
SETTINGS = "settings"
AUDIT_EVENTS = "audit_events"
CAPABILITY_TOKENS = "capability_tokens"

SETTINGS_PATH = f"{SETTINGS}/current"  # all settings in one document: one read beside any change


class AgentRecord(TypedDict):
    agent_id: str
    display_name: str
    tenant_id: str
    created_at: datetime
    disabled: bool
    active_keys: dict[str, datetime | None]  # key ID -> expiry: the key limit needs no query


class DeviceKeyRecord(TypedDict):
    key_id: str
    agent_id: str
    key_hash: str  # SHA-256 of the key; the key itself is never stored
    label: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    replaces: str | None
    replaced_by: str | None


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


class AuditEventRecord(TypedDict):
    event_id: str
    at: datetime
    category: str
    action: str
    actor: dict[str, Any]
    target: dict[str, Any]
    request_id: str
    subjects: list[str]  # every agent the event names, for one array-contains query
    expire_at: datetime  # the retention, for a Firestore TTL policy


class CapabilityRecord(TypedDict):
    jti: str
    sub: str
    scope: str
    iat: int
    exp: int
    kid: str
    recorded_at: datetime


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


def capability_path(jti: str) -> str:
    return f"{CAPABILITY_TOKENS}/j_{jti}"  # the prefix keeps "." or "__x__" legal document IDs
