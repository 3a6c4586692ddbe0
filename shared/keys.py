"""The public key formats: ``<prefix>_<body><check>``.

``body`` is ``[A-Za-z0-9]`` and carries 256 bits from the CSPRNG. A device key's
body also names its key ID, and the last 40 of its 256 bits are a tag
(``read_ahead``) instead. ``check`` is the CRC32 of everything before it as
6 base62 digits, so secret scanners can spot a leaked key and the server can
refuse a mistyped one before any datastore read. Only SHA-256 hashes are
stored: the keys hold 216 random bits or more, so a slow hash would add nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib
from dataclasses import dataclass

from shared import ids

BRIDGE_PREFIX = "apkb"
DEVICE_PREFIX = "apkd"
REFRESH_PREFIX = "apkr"
SECRET_LENGTH = 43  # 62**43 > 2**256: 43 digits hold 32 random bytes
CHECK_LENGTH = 6

_BRIDGE = re.compile(rf"{BRIDGE_PREFIX}_[0-9A-Za-z]{{{SECRET_LENGTH}}}[0-9A-Za-z]{{{CHECK_LENGTH}}}")
_DEVICE = re.compile(
    rf"{DEVICE_PREFIX}_([0-9A-Za-z]{{{2 * ids.PART_LENGTH}}})[0-9A-Za-z]{{{SECRET_LENGTH}}}"
    rf"[0-9A-Za-z]{{{CHECK_LENGTH}}}"
)


_REFRESH = re.compile(
    rf"{REFRESH_PREFIX}_([0-9A-Za-z]{{{3 * ids.PART_LENGTH}}})[0-9A-Za-z]{{{SECRET_LENGTH}}}"
    rf"[0-9A-Za-z]{{{CHECK_LENGTH}}}"
)


def checksum(text: str) -> str:
    return ids.base62_fixed(zlib.crc32(text.encode("ascii")), CHECK_LENGTH)


def random_secret() -> str:
    """43 base62 digits of 256 CSPRNG bits."""
    return ids.base62_fixed(int.from_bytes(secrets.token_bytes(32), "big"), SECRET_LENGTH)


def _with_check(text: str) -> str:
    return text + checksum(text)


def new_bridge_key() -> str:
    return _with_check(f"{BRIDGE_PREFIX}_{random_secret()}")


def new_device_key(key_id: str, secret: str) -> str:
    """The device key of ``key_id`` with ``secret`` (43 base62 digits; ``read_ahead`` makes the service's)."""
    return _with_check(f"{DEVICE_PREFIX}_{key_id[len('dk_') :]}{secret}")


def new_refresh_token(family_id: str) -> str:
    return _with_check(f"{REFRESH_PREFIX}_{family_id[len('rtf_') :]}{random_secret()}")


def family_of_refresh_token(token: str) -> str | None:
    """The family a well-formed refresh token (right checksum) names, or None."""
    match = _REFRESH.fullmatch(token)
    return "rtf_" + match.group(1) if match and has_valid_check(token) else None


def secret_part(key: str) -> str:
    """The secret digits of a well-formed key: between its prefix and IDs and its check."""
    return key[-(SECRET_LENGTH + CHECK_LENGTH) : -CHECK_LENGTH]


def has_valid_check(key: str) -> bool:
    body, check = key[:-CHECK_LENGTH], key[-CHECK_LENGTH:]
    return hmac.compare_digest(checksum(body), check)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def hash_matches(key: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_key(key), stored_hash)


def is_bridge_key(key: str) -> bool:
    """Well formed, with a correct checksum. Says nothing of whether it is live."""
    return _BRIDGE.fullmatch(key) is not None and has_valid_check(key)


@dataclass(frozen=True)
class DeviceKeyName:
    key_id: str
    agent_id: str


def parse_device_key(key: str) -> DeviceKeyName | None:
    """The key and agent IDs a device key names, or None if it is malformed or mistyped."""
    match = _DEVICE.fullmatch(key)
    if match is None or not has_valid_check(key):
        return None
    key_id = "dk_" + match.group(1)
    agent_id = ids.agent_of_device_key(key_id)
    assert agent_id is not None  # the pattern above is the key ID's pattern
    return DeviceKeyName(key_id=key_id, agent_id=agent_id)
