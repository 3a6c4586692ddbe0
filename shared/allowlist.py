"""The allow-list of operator settings: every key with its type, default and bounds.

A leaf module: every change reads the settings document in its transaction and
asks here for the effective values; ``settings`` serves the routes that list
and set them.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared import records


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
    "access_token_ttl_seconds": Setting(900, 60, 3600),
    "refresh_token_ttl_seconds": Setting(2592000, 3600, 7776000),
    "user_delegation_max_ttl_seconds": Setting(7776000, 3600, 31536000),
}


def effective(document: records.SettingsRecord | None) -> dict[str, int]:
    """Every allow-listed key with its stored value, or its default."""
    stored = document["values"] if document is not None else {}
    return {key: int(stored.get(key, setting.default)) for key, setting in ALLOW_LIST.items()}
