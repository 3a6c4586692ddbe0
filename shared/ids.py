"""Server-made identifiers.

IDs are opaque to clients, but the server gives them structure so that one
can be found without a query: a device key ID and a delegation ID embed the
random part of their agent's ID. Every ID is URL-safe ``[A-Za-z0-9_]``.
"""

from __future__ import annotations

import hashlib
import re
import secrets

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
PART_LENGTH = 22  # 22 base62 digits carry about 131 random bits

_PART = f"[0-9A-Za-z]{{{PART_LENGTH}}}"
AGENT_ID = re.compile(f"agt_({_PART})")
DEVICE_KEY_ID = re.compile(f"dk_({_PART})({_PART})")
DELEGATION_ID = re.compile(f"dlg_({_PART})({_PART})")
USER_ID = re.compile(f"usr_{_PART}")
GRANT_ID = re.compile(f"ugr_({_PART})({_PART})")
FAMILY_ID = re.compile(f"rtf_({_PART})({_PART})({_PART})")
EVENT_ID = re.compile(f"evt_{_PART}")
OLD_EVENT_ID = re.compile(r"evt_[0-9]{13}[0-9A-Za-z]{10}")  # before audit chains: time first


def random_base62(length: int) -> str:
    """``length`` uniformly random base62 digits (rejection sampling over CSPRNG bytes: no modulo bias)."""
    digits: list[str] = []
    while len(digits) < length:
        digits += [BASE62[b % 62] for b in secrets.token_bytes(length + 8) if b < 248]  # 248 = 4 * 62
    return "".join(digits[:length])


def base62_fixed(value: int, length: int) -> str:
    """``value`` as exactly ``length`` base62 digits, most significant first."""
    digits = []
    for _ in range(length):
        value, rest = divmod(value, 62)
        digits.append(BASE62[rest])
    if value:
        raise ValueError("value does not fit")
    return "".join(reversed(digits))


def base62_value(digits: str) -> int:
    """The number ``digits`` (base62, most significant first) stands for."""
    value = 0
    for digit in digits:
        value = value * 62 + BASE62.index(digit)
    return value


def new_agent_id() -> str:
    return "agt_" + random_base62(PART_LENGTH)


def new_device_key_id(agent_id: str) -> str:
    return "dk_" + agent_part(agent_id) + random_base62(PART_LENGTH)


def user_id_of(firebase_uid: str) -> str:
    """A user's ID, derived from its Firebase UID so that an ID token names its record (one read)."""
    digest = hashlib.sha256(b"agentpack-user\x00" + firebase_uid.encode("utf-8")).digest()
    return "usr_" + base62_fixed(int.from_bytes(digest[:16], "big"), PART_LENGTH)


def is_user_id(value: str) -> bool:
    return USER_ID.fullmatch(value) is not None


def grant_id_of(user_id: str, agent_id: str) -> str:
    """The one ``delegate_of`` grant between a user and an agent: named by both, found without a query."""
    return "ugr_" + user_id[len("usr_") :] + agent_part(agent_id)


def parties_of_grant(grant_id: str) -> tuple[str, str] | None:
    match = GRANT_ID.fullmatch(grant_id)
    return ("usr_" + match.group(1), "agt_" + match.group(2)) if match else None


PUBLIC_CLIENT_KEY_PART = "0" * PART_LENGTH  # in a family ID: a public client's, which holds no key


def new_family_id(agent_id: str, key_id: str | None) -> str:
    """A refresh-token family of a login by ``agent_id`` through ``key_id`` (None: a public client).

    It names the agent and the key, so a refresh reads them beside the family in one round trip."""
    key_part = key_id[len("dk_") + PART_LENGTH :] if key_id is not None else PUBLIC_CLIENT_KEY_PART
    return "rtf_" + agent_part(agent_id) + key_part + random_base62(PART_LENGTH)


def agent_of_family(family_id: str) -> str | None:
    match = FAMILY_ID.fullmatch(family_id)
    return "agt_" + match.group(1) if match else None


def key_of_family(family_id: str) -> str | None:
    """The key a family's login went through; None for a malformed ID or a public client's family."""
    match = FAMILY_ID.fullmatch(family_id)
    if match is None or match.group(2) == PUBLIC_CLIENT_KEY_PART:
        return None
    return "dk_" + match.group(1) + match.group(2)


def new_event_id() -> str:
    # Random, not time-ordered: rising IDs would send every audit write to one key range.
    return "evt_" + random_base62(PART_LENGTH)


def agent_part(agent_id: str) -> str:
    return agent_id[len("agt_") :]


def agent_of_device_key(key_id: str) -> str | None:
    """The agent a well-formed device key ID belongs to, or None for any other string."""
    match = DEVICE_KEY_ID.fullmatch(key_id)
    return "agt_" + match.group(1) if match else None


def grantor_of_delegation(delegation_id: str) -> str | None:
    match = DELEGATION_ID.fullmatch(delegation_id)
    return "agt_" + match.group(1) if match else None


def is_agent_id(value: str) -> bool:
    return AGENT_ID.fullmatch(value) is not None
