"""Deployment configuration, read from the environment once per instance.

A deployment reads the bridge-key hashes and the secrets keys from Secret
Manager itself, once per instance (``AGENTPACK_SECRET_SOURCE=secret-manager``);
locally ``AGENTPACK_BRIDGE_KEY`` may carry a dev key in plaintext, hashed here
and never kept. A malformed configuration raises ``errors.ConfigRefused`` with
a reason for the log, so the service refuses to serve (503) rather than serve
with a weaker check.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from shared import errors, keys

if TYPE_CHECKING:
    from shared.access_tokens import SigningKeys
    from shared.tokens import KeySet

DEFAULT_PROJECT = "demo-agentpack"
# The public dev values of emulator-config/: a deployment reading its keys from Secret Manager
# refuses to serve if any of them is configured (a test keeps these in step with dev.env).
DEV_ONLY_BRIDGE_KEY_HASH = "141ec46948856bf138b65d4b7c494aae28912647e0082159c697878e8f4a43df"
DEV_ONLY_CAPABILITY_PUBLIC_KEY = base64.urlsafe_b64decode("u1Jo0zHQLHA00RjTEWgXzsXsmqHMgiq-uzX2FOaVI4k=")
DEV_ONLY_SECRETS_KEY = base64.urlsafe_b64decode("JCWBJEnD7WzFMCgqEpjh61vppqcw87ivDIiYiuDmKfs=")
DEV_ONLY_TOKEN_SIGNING_SEED = base64.urlsafe_b64decode("m1h0LRnPv8DThlD5u7Sk3e2g5tmcTThkDYQ0ZtgqJEo=")
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Config:
    project_id: str
    bridge_key_hashes: tuple[str, ...]
    datastore_deadline_seconds: float
    capability_max_ttl_seconds: int


def is_deployment() -> bool:
    """A deployment reads its keys from Secret Manager; the emulators are for local work only."""
    return _from_secret_manager()


def _from_secret_manager() -> bool:
    source = os.environ.get("AGENTPACK_SECRET_SOURCE", "env").strip()
    if source not in ("env", "secret-manager"):
        raise errors.ConfigRefused("AGENTPACK_SECRET_SOURCE must be env or secret-manager")
    return source == "secret-manager"


def _project() -> str:
    return os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("GCLOUD_PROJECT") or DEFAULT_PROJECT


def project() -> str:
    """The Google Cloud project (GOOGLE_CLOUD_PROJECT, else GCLOUD_PROJECT): log lines name its traces."""
    return _project()


def _bridge_key_hashes() -> tuple[str, ...]:
    if _from_secret_manager():
        from shared import secret_manager

        listed = secret_manager.access(_project(), secret_manager.BRIDGE_KEY_HASHES)
    else:
        listed = os.environ.get("AGENTPACK_BRIDGE_KEY_HASHES", "")
    hashes = [h.strip() for h in listed.split(",") if h.strip()]
    if any(_SHA256_HEX.fullmatch(h) is None for h in hashes):
        raise errors.ConfigRefused("the bridge-key hashes are not SHA-256 hex digests")
    plain = os.environ.get("AGENTPACK_BRIDGE_KEY", "").strip()
    if _from_secret_manager() and (plain or DEV_ONLY_BRIDGE_KEY_HASH in hashes):
        # production holds only hashes, and never the dev key's
        raise errors.ConfigRefused("a deployment holds only bridge-key hashes, never a plain or dev key")
    if plain:
        if not keys.is_bridge_key(plain):
            raise errors.ConfigRefused("AGENTPACK_BRIDGE_KEY is not a bridge key (format or checksum)")
        hashes.append(keys.hash_key(plain))
    return tuple(hashes)


def _number(name: str, default: str, kind: type[int] | type[float], low: float, high: float) -> float:
    try:
        value = kind(os.environ.get(name, default))
    except ValueError:
        raise errors.ConfigRefused(f"{name} is not a number") from None
    if not low <= value <= high:
        raise errors.ConfigRefused(f"{name} is out of bounds")
    return value


@functools.cache
def get() -> Config:
    deadline = _number("AGENTPACK_DATASTORE_DEADLINE_SECONDS", "5", float, 0.1, 60)
    max_ttl = int(_number("AGENTPACK_CAPABILITY_MAX_TTL_SECONDS", "300", int, 1, 3600))
    capability_keys()  # a malformed key set refuses every request, not only those with tokens
    return Config(
        project_id=_project(),
        bridge_key_hashes=_bridge_key_hashes(),
        datastore_deadline_seconds=deadline,
        capability_max_ttl_seconds=max_ttl,
    )


# Staging bundles the deployment's public keys here, beside the function's main.py.
BUNDLED_CAPABILITY_KEYS = Path(__file__).resolve().parent.parent / "capability_keys.json"


@functools.cache
def capability_keys() -> KeySet | None:
    """The capability-token public keys by kid: from the environment, else the bundled file, else None."""
    text = os.environ.get("AGENTPACK_CAPABILITY_PUBLIC_KEYS", "").strip()
    if not text and BUNDLED_CAPABILITY_KEYS.is_file():
        text = BUNDLED_CAPABILITY_KEYS.read_text()
    if not text:
        return None  # no keys: every capability token is refused
    from shared import tokens

    keyset = tokens.KeySet.from_json(text)  # ConfigRefused for malformed or non-strict keys
    if _from_secret_manager() and any(keyset.public_key(kid) == DEV_ONLY_CAPABILITY_PUBLIC_KEY for kid in keyset):
        raise errors.ConfigRefused("the dev capability key is configured in a deployment")
    return keyset


@dataclass(frozen=True)
class Keyring:
    """The secrets encryption keys by version; new writes use the newest."""

    versions: dict[int, bytes]

    @property
    def newest_version(self) -> int:
        return max(self.versions)

    @property
    def newest_key(self) -> bytes:
        return self.versions[self.newest_version]


def parse_keyring(text: str) -> Keyring:
    """``{"1": "<base64url of 32 bytes>", ...}``: versions are positive integers."""
    try:
        listed = json.loads(text)
        if not isinstance(listed, dict) or not listed:
            raise ValueError
        versions = {}
        for version, encoded in listed.items():
            if not re.fullmatch(r"[1-9][0-9]{0,8}", version) or not isinstance(encoded, str):
                raise ValueError
            if not re.fullmatch(r"[A-Za-z0-9_-]{43}", encoded):
                raise ValueError
            key = base64.urlsafe_b64decode(encoded + "=")
            if len(key) != 32:
                raise ValueError
            versions[int(version)] = key
    except ValueError:
        raise errors.ConfigRefused("the secrets keys are malformed") from None
    return Keyring(versions)


@functools.cache
def secrets_keyring() -> Keyring:
    """The secrets keys: from Secret Manager (once per instance) or, locally, AGENTPACK_SECRETS_KEYS."""
    if _from_secret_manager():
        from shared import secret_manager

        keyring = parse_keyring(secret_manager.access(_project(), secret_manager.SECRETS_KEYS))
        if DEV_ONLY_SECRETS_KEY in keyring.versions.values():
            raise errors.ConfigRefused("the dev secrets key is configured in a deployment")
        return keyring
    return parse_keyring(os.environ.get("AGENTPACK_SECRETS_KEYS", ""))


@functools.cache
def issuer() -> str:
    """``AGENTPACK_ISSUER``: the OAuth issuer URL every endpoint lives under (locally the server's own URL).

    An ``https`` URL, or ``http`` on a loopback host; no query, fragment or trailing slash.
    """
    default = f"http://127.0.0.1:{os.environ.get('PORT', '8000')}"
    value = os.environ.get("AGENTPACK_ISSUER", "").strip() or default
    if not is_audience_url(value) or value.endswith("/") or "?" in value or "#" in value:
        raise errors.ConfigRefused("AGENTPACK_ISSUER must be an https URL (or http on a loopback host)")
    return value


def is_audience_url(value: str) -> bool:
    """An absolute ``https://`` URI, or ``http://`` on a loopback host (RFC 8707 resources, the issuer)."""
    from urllib.parse import urlsplit

    if not value.isascii() or any(ch <= " " or ch == "\x7f" for ch in value) or len(value) > 2048:
        return False
    try:
        parts = urlsplit(value)
        _ = parts.port  # a malformed port raises ValueError
    except ValueError:
        return False
    if parts.fragment or not parts.hostname or "@" in parts.netloc:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS)


@functools.cache
def token_signing_keys() -> SigningKeys:
    """The online access-token signing keys: from Secret Manager, or locally AGENTPACK_TOKEN_SIGNING_KEYS."""
    from shared.access_tokens import SigningKeys

    if _from_secret_manager():
        from shared import secret_manager

        keys = SigningKeys.from_json(secret_manager.access(_project(), secret_manager.TOKEN_SIGNING_KEYS))
        if any(keys.public_key(kid) == _dev_token_public_key() for kid in keys):
            raise errors.ConfigRefused("the dev token signing key is configured in a deployment")
        return keys
    text = os.environ.get("AGENTPACK_TOKEN_SIGNING_KEYS", "").strip()
    if not text:
        raise errors.ConfigRefused("AGENTPACK_TOKEN_SIGNING_KEYS is not set")
    return SigningKeys.from_json(text)


def _dev_token_public_key() -> bytes:
    from shared import crypto

    return crypto.public_key_of(DEV_ONLY_TOKEN_SIGNING_SEED)


def reset() -> None:
    """Forget the cached configuration (tests that change the environment)."""
    get.cache_clear()
    capability_keys.cache_clear()
    secrets_keyring.cache_clear()
    issuer.cache_clear()
    token_signing_keys.cache_clear()
