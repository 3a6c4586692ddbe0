"""Reporting leaked keys: anyone who finds a key (a person, a secret scanner) may have it revoked.

``POST /keys/report-leak`` takes up to 100 strings and no credential. Each is parsed without
I/O: a device key names its agent and key ID, a refresh token its family, and a bridge key is
compared with the configured hashes; anything of the wrong form or check digits is skipped
before any read. The documents every well-formed key names are then read together, in the one
read of one change (``change.apply``), so the work does not depend on which keys were real. A
live device key is revoked, a live refresh token revokes its whole family, a live bridge key is
only reported (it is configuration: the operator replaces it); each writes one
``key.leak_reported`` event, actor ``public``, in the same transaction. A key already revoked,
expired, spent or unknown changes nothing. The answer is ``{received: n}`` whatever was found.

Requests are limited per client address (``LIMIT``, counted in Firestore by ``ratelimit``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import Field

from shared import change, config, credentials, devices, ids, keys, oauth, ratelimit, records, schema
from shared.principal import PUBLIC
from shared.records import AgentRecord, DeviceKeyRecord, RefreshFamilyRecord

MAX_KEYS = 100
MAX_KEY_LENGTH = 256  # longer than any key: such a string is refused, not looked at
LIMIT = ratelimit.Limit("keys/report-leak", most=60, window_seconds=3600, bucket_seconds=300, shards=4)
ACTION = "key.leak_reported"

Key = Annotated[str, Field(max_length=MAX_KEY_LENGTH)]


class ReportLeak(schema.Body):
    keys: Annotated[list[Key], Field(min_length=1, max_length=MAX_KEYS)]


def limit_caller(client_address: str) -> None:
    """Count the request against its client address; past ``LIMIT``: ``429``, and nothing written."""
    ratelimit.take(LIMIT, ratelimit.address_key(client_address))


@dataclass
class _Presented:
    """The reported keys that are well formed, by what they name (parsed, never read)."""

    device_keys: dict[str, dict[str, set[str]]] = field(default_factory=dict)  # agent -> key ID -> key texts
    families: dict[str, set[str]] = field(default_factory=dict)  # family ID -> hashes of the tokens
    bridge_slots: list[int] = field(default_factory=list)

    @classmethod
    def parse(cls, texts: list[str]) -> _Presented:
        found = cls()
        hashes = config.get().bridge_key_hashes
        for text in dict.fromkeys(t.strip() for t in texts):
            device = keys.parse_device_key(text)
            family_id = keys.family_of_refresh_token(text)
            if device is not None:
                found.device_keys.setdefault(device.agent_id, {}).setdefault(device.key_id, set()).add(text)
            elif family_id is not None and ids.agent_of_family(family_id) is not None:
                found.families.setdefault(family_id, set()).add(keys.hash_key(text))
            else:
                slot = credentials.bridge_key_slot(text, hashes)
                if slot is not None and slot not in found.bridge_slots:
                    found.bridge_slots.append(slot)
        return found

    def paths(self) -> list[str]:
        paths = []
        for agent_id, named in self.device_keys.items():
            paths.append(records.agent_path(agent_id))
            paths += [records.device_key_path(agent_id, key_id) for key_id in named]
        return paths + [records.refresh_family_path(family_id) for family_id in self.families]


def _matches(record: DeviceKeyRecord | None, texts: set[str]) -> bool:
    """A live secret key whose hash one of the texts has (a key pair holds no secret to leak)."""
    stored = record["key_hash"] if record is not None else None
    if record is None or stored is None or not credentials.key_is_live(record):
        return False
    return any(keys.hash_matches(text, stored) for text in texts)


def report(body: ReportLeak, request_id: str) -> dict[str, Any]:
    presented = _Presented.parse(body.keys)

    def work(c: change.Change) -> None:
        for agent_id, named in presented.device_keys.items():
            agent: AgentRecord | None = c[records.agent_path(agent_id)]
            live = [k for k, texts in named.items() if _matches(c[records.device_key_path(agent_id, k)], texts)]
            if agent is None:
                continue
            for key_id in devices.revoke_keys(c, agent_id, live):
                c.record(ACTION, {"kind": "device_key", "key_id": key_id, "agent_id": agent_id})
        for family_id, hashes in presented.families.items():
            family: RefreshFamilyRecord | None = c[records.refresh_family_path(family_id)]
            if not any(oauth.refresh_token_is_current(family, presented_hash) for presented_hash in hashes):
                continue
            revoked = oauth.revoke_family(c, family_id)
            if revoked is not None:
                c.record(ACTION, {"kind": "refresh_family", "agent_id": revoked["client_id"], "family_id": family_id})
        for slot in presented.bridge_slots:  # configuration: reported for the operator to replace, not revoked
            c.record(ACTION, {"kind": "bridge_key", "slot": slot})

    if presented.paths() or presented.bridge_slots:
        change.apply(PUBLIC.for_request(request_id), presented.paths(), work)
    return {"received": len(body.keys)}
