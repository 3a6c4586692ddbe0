"""Tagged credentials: which requests may have an agent's documents read ahead of their check.

``secrets/get`` reads the secret in the same round trip as the credential, so that read starts
before the credential (and any delegation) is checked. If any well-formed credential could start
it, anyone could time another agent's secrets: the datastore's work for a large secret, or for
one that exists at all, slows the refusal too. A device key's checksum is public, and so is the
shape of a delegation ID.

So two things this service makes carry a tag, a keyed hash that only the service can compute:

* **A device key** holds one in its last 40 secret bits, over its key ID and the rest of its secret.
* **A delegation ID** holds one over the grantor, the grantee, the delegable routes it covers and
  its expiry (rounded down to the minute). The ID carries the routes and the minute too.

Credential resolution reads ahead only for a key whose tag matches, and only for a delegation
whose tag matches the caller, the route and the clock. Any other request is read as it is checked:
the credential first, the rest once it stands. That covers:

* keys and IDs written by anyone;
* an ID addressed to another agent, expired, or covering other routes;
* keys and IDs made before tags existed, or tagged under a retired secrets key.

Such a request is correct, only one round trip slower. The tag decides nothing else: whether a
credential stands is always read from the datastore. So a credential made here and since revoked
still reads ahead (revocation cannot be known without a read): docs/security.md says what that
leaves to its holder.

Each tag key is derived from a secrets key (``config.secrets_keyring``) by keyed BLAKE2b under its
own personalisation, as libsodium's ``crypto_kdf`` derives subkeys, so tags rotate with the secrets
keys and the derived key is never used for encryption.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

from shared import allowlist, config, ids, keys

# Bit i of a tag's routes stands for ROUTES[i]: IDs already made carry this order, so only append.
ROUTES = ("secrets/get", "secrets/put", "secrets/list", "secrets/delete")
EPOCH = datetime(2020, 1, 1, tzinfo=UTC)

_TAG_BITS = 40
# A tagged delegation ID's 22 base62 digits hold a number below 2**130 (22 digits reach 2**130.99):
# 56 random bits, 4 route bits, 30 bits of expiry minute (after EPOCH), the tag.
_NONCE_BITS, _ROUTE_BITS, _MINUTE_BITS = 56, 4, 30
_DELEGATION_BITS = _NONCE_BITS + _ROUTE_BITS + _MINUTE_BITS + _TAG_BITS
# A tagged device key's 43 secret digits hold 216 random bits and the tag (below 2**256).
_KEY_RANDOM_BITS = 216
_DELEGATION, _DEVICE_KEY = b"agentpack dlgtag", b"agentpack dkytag"  # BLAKE2b personalisations (16 bytes)
# No delegation lives longer: a tag naming a later expiry is refused, so a tag found by guessing
# (one in 2**40 a try, each try a request) would not last for centuries.
_LONGEST_DELEGATION_SECONDS = allowlist.ALLOW_LIST["delegation_max_ttl_seconds"].maximum
assert len(ROUTES) <= _ROUTE_BITS  # one bit a route


def new_delegation_id(grantor_id: str, grantee_id: str, scope: Sequence[str], expires_at: datetime) -> str:
    """A delegation ID naming ``grantor_id``, tagged under the newest secrets key."""
    routes = sum(1 << ROUTES.index(route) for route in set(scope))
    minute = min(math.floor((expires_at - EPOCH).total_seconds() / 60), (1 << _MINUTE_BITS) - 1)
    nonce = secrets.randbits(_NONCE_BITS)
    message = _delegation_message(grantor_id, grantee_id, nonce, routes, minute)
    value = ((nonce << _ROUTE_BITS | routes) << _MINUTE_BITS | minute) << _TAG_BITS
    value |= _tag(config.secrets_keyring().newest_key, _DELEGATION, message)
    return "dlg_" + ids.agent_part(grantor_id) + ids.base62_fixed(value, ids.PART_LENGTH)


def new_device_key(key_id: str) -> str:
    """A device key for ``key_id``, tagged under the newest secrets key."""
    rest = secrets.randbits(_KEY_RANDOM_BITS)
    value = rest << _TAG_BITS | _tag(config.secrets_keyring().newest_key, _DEVICE_KEY, _key_message(key_id, rest))
    return keys.new_device_key(key_id, ids.base62_fixed(value, keys.SECRET_LENGTH))


def delegation_allows(delegation_id: str, grantee_id: str, route: str, now: datetime) -> bool:
    """Whether ``delegation_id`` was made here for ``grantee_id``, covers ``route`` and has not expired."""
    match = ids.DELEGATION_ID.fullmatch(delegation_id)
    if match is None or route not in ROUTES:
        return False
    value = ids.base62_value(match.group(2))
    if value >> _DELEGATION_BITS:
        return False  # made before tags (about half of those are this large)
    tag, value = value & ((1 << _TAG_BITS) - 1), value >> _TAG_BITS
    minute, value = value & ((1 << _MINUTE_BITS) - 1), value >> _MINUTE_BITS
    routes, nonce = value & ((1 << _ROUTE_BITS) - 1), value >> _ROUTE_BITS
    seconds = (now - EPOCH).total_seconds()
    if not routes >> ROUTES.index(route) & 1 or not seconds < minute * 60 <= seconds + _LONGEST_DELEGATION_SECONDS:
        return False  # not for this route, expired (to the minute before), or beyond any delegation's life
    grantor_id = "agt_" + match.group(1)
    return _tag_matches(tag, _DELEGATION, _delegation_message(grantor_id, grantee_id, nonce, routes, minute))


def device_key_allows(name: keys.DeviceKeyName, key: str) -> bool:
    """Whether ``key`` (well formed, named ``name``) was made here; not whether it still stands."""
    value = ids.base62_value(keys.secret_part(key))
    if value >> (_KEY_RANDOM_BITS + _TAG_BITS):
        return False  # 43 digits reach past 2**256: no key made here holds such a value
    return _tag_matches(value & ((1 << _TAG_BITS) - 1), _DEVICE_KEY, _key_message(name.key_id, value >> _TAG_BITS))


def _delegation_message(grantor_id: str, grantee_id: str, nonce: int, routes: int, minute: int) -> bytes:
    return f"{grantor_id}\n{grantee_id}\n{nonce}\n{routes}\n{minute}".encode("ascii")


def _key_message(key_id: str, rest: int) -> bytes:
    return f"{key_id}\n{rest}".encode("ascii")


def _tag_matches(tag: int, person: bytes, message: bytes) -> bool:
    expected = tag.to_bytes(_TAG_BITS // 8, "big")
    matched = False
    for key in config.secrets_keyring().versions.values():  # every version: the time says not which
        matched |= hmac.compare_digest(_tag(key, person, message).to_bytes(_TAG_BITS // 8, "big"), expected)
    return matched


def _tag(secrets_key: bytes, person: bytes, message: bytes) -> int:
    tag_key = hashlib.blake2b(b"read-ahead tag key", key=secrets_key, person=person).digest()
    return int.from_bytes(hashlib.blake2b(message, key=tag_key, digest_size=_TAG_BITS // 8, person=person).digest())
