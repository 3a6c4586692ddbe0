"""Device-key rotation done the safe way, and the keys that will soon stop working.

``rotate_key`` issues the replacement with ``replaces_key_id``, so the service
keeps the old key alive for the ``rotation_grace_seconds`` setting (time for
every install to switch) and stops counting it toward the key limit at once.
The new key keeps the old key's label and lifetime unless told otherwise: a
rotation never silently turns an expiring key into one that never expires.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from agentpack import errors
from agentpack.client import Client
from agentpack.models import DeviceKey, IssuedKey

MIN_TTL_SECONDS = 60
MAX_TTL_SECONDS = 365 * 86400


@dataclass(frozen=True, slots=True)
class Rotation:
    """The new key (shown this once) and the old key's record as it stands after the rotation.

    ``old_key`` is None if the record could not be read back (the rotation itself
    succeeded: never lose ``new_key`` over that read).
    """

    new_key: IssuedKey
    old_key: DeviceKey | None


@dataclass(frozen=True, slots=True)
class ExpiringKey:
    agent_id: str | None  # None when an agent lists its own keys
    key: DeviceKey


def _find(client: Client, agent_id: str | None, key_id: str) -> DeviceKey | None:
    return next((key for key in client.list_keys(agent_id).keys if key.key_id == key_id), None)


def rotate_key(
    client: Client,
    key_id: str,
    *,
    agent_id: str | None = None,
    label: str | None = None,
    ttl_seconds: int | None = None,
) -> Rotation:
    """Replace ``key_id`` with a new key; the old one works on for the grace window.

    ``agent_id`` is needed with the bridge key; an agent rotates its own keys.
    ``label`` and ``ttl_seconds`` default to the old key's label and lifetime.
    """
    old = _find(client, agent_id, key_id)
    if old is not None:
        label = label if label is not None else old.label
        if ttl_seconds is None and old.expires_at is not None:
            lifetime = int((old.expires_at - old.created_at).total_seconds())
            ttl_seconds = min(max(lifetime, MIN_TTL_SECONDS), MAX_TTL_SECONDS)
    # A key that is unknown, revoked or expired is refused here by the service (404 or 409).
    issued = client.issue_key(agent_id, label=label, ttl_seconds=ttl_seconds, replaces_key_id=key_id)
    try:
        after = _find(client, agent_id or issued.agent_id, key_id)
    except errors.ApiError:
        after = None  # e.g. the caller's own key, with no grace window, is already gone
    return Rotation(new_key=issued, old_key=after)


def expiring_keys(
    client: Client, within_seconds: int, *, agent_id: str | None = None, now: datetime | None = None
) -> list[ExpiringKey]:
    """Live keys whose ``expires_at`` falls within ``within_seconds`` from now, soonest first.

    With the bridge key and no ``agent_id``, every agent of the project is searched.
    Revoked and already expired keys are left out, and so are keys already replaced by a
    rotation (status ``rotated``): their end is planned, nothing is left to do for them.
    """
    now = now or datetime.now(UTC)
    horizon = now + timedelta(seconds=within_seconds)
    agents: list[str | None]
    if client.credential_kind == "bridge_key" and agent_id is None:
        agents = [agent.agent_id for agent in client.iter_agents(page_size=200)]
    else:
        agents = [agent_id]
    found: list[ExpiringKey] = []
    for agent in agents:
        try:
            keys = client.list_keys(agent).keys
        except errors.NotFound:
            if agent_id is not None:
                raise
            continue  # gone between the listing and now
        found += [
            ExpiringKey(agent, key)
            for key in keys
            if key.expires_at is not None and key.status(now) == "active" and key.expires_at <= horizon
        ]
    found.sort(key=lambda item: (item.key.expires_at or now, item.key.key_id))
    return found
