"""The routes over the allow-listed operator settings (the list itself is ``allowlist``).

All settings live in one document, so every change reads them beside the
records it changes in the same round trip.
"""

from __future__ import annotations

from typing import Any

from shared import allowlist, change, clock, errors, records, schema, store
from shared.principal import Principal
from shared.records import SettingsRecord


class SetSetting(schema.Body):
    key: str
    value: schema.SafeInt


class ListSettings(schema.Body):
    pass


def current() -> dict[str, int]:
    document: SettingsRecord | None = store.get_many([records.SETTINGS_PATH])[0]
    return allowlist.effective(document)


def set_value(body: SetSetting, principal: Principal) -> dict[str, Any]:
    setting = allowlist.ALLOW_LIST.get(body.key)
    if setting is None:
        raise errors.InvalidRequest("key: not an allow-listed setting")
    if not setting.minimum <= body.value <= setting.maximum:
        raise errors.InvalidRequest(f"value: must be between {setting.minimum} and {setting.maximum}")

    def work(c: change.Change) -> dict[str, Any]:
        document: SettingsRecord | None = c[records.SETTINGS_PATH]
        if document is None:
            document = {"values": {}, "updated_at": {}}
        previous = c.settings[body.key]
        document["values"][body.key] = body.value
        document["updated_at"][body.key] = c.now
        c.set(records.SETTINGS_PATH, document)
        c.record("setting.set", {"kind": "setting", "key": body.key, "previous": previous, "value": body.value})
        return {"key": body.key, "value": body.value, "updated_at": clock.rfc3339(c.now)}

    return change.apply(principal, [], work)
