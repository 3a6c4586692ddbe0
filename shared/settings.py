"""Allow-listed operator settings: every key has a type, a default and bounds.

All settings live in one document so a transaction can read them beside the
records it changes in the same round trip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared import audit, clock, errors, schema, store
from shared.credentials import Principal

PATH = f"{store.SETTINGS}/current"


@dataclass(frozen=True)
class Setting:
    default: int
    minimum: int
    maximum: int


ALLOW_LIST: dict[str, Setting] = {
    "delegation_max_ttl_seconds": Setting(86400, 60, 2592000),
    "device_key_max_active": Setting(10, 1, 100),
    "rotation_grace_seconds": Setting(3600, 0, 604800),
    "secret_max_bytes": Setting(32768, 1, 49152),
    "audit_retention_days": Setting(400, 30, 3650),
}


class SetSetting(schema.Body):
    key: str
    value: schema.SafeInt


class ListSettings(schema.Body):
    pass


def effective(document: dict[str, Any] | None) -> dict[str, int]:
    """Every allow-listed key with its stored value, or its default."""
    stored = (document or {}).get("values", {})
    return {key: int(stored.get(key, setting.default)) for key, setting in ALLOW_LIST.items()}


def current() -> dict[str, int]:
    (document,) = store.get_many([PATH])
    return effective(document)


def set_value(body: SetSetting, principal: Principal, request_id: str) -> dict[str, Any]:
    setting = ALLOW_LIST.get(body.key)
    if setting is None:
        raise errors.InvalidRequest("key: not an allow-listed setting")
    if not setting.minimum <= body.value <= setting.maximum:
        raise errors.InvalidRequest(f"value: must be between {setting.minimum} and {setting.maximum}")

    def change(txn: store.Transaction) -> dict[str, Any]:
        (document,) = txn.get_many([PATH])
        document = document or {"values": {}, "updated_at": {}}
        now = clock.now()
        previous = effective(document)[body.key]
        document["values"][body.key] = body.value
        document["updated_at"][body.key] = now
        txn.set(PATH, document)
        audit.record(
            txn,
            action="setting.set",
            principal=principal,
            target={"kind": "setting", "key": body.key, "previous": previous, "value": body.value},
            request_id=request_id,
            settings_doc=document,
        )
        return {"key": body.key, "value": body.value, "updated_at": clock.rfc3339(now)}

    return store.transact(change)
