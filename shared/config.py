"""Deployment configuration, read from the environment once per instance.

Production binds the bridge-key hashes from Secret Manager into the
environment (``--set-secrets``); locally ``AGENTPACK_BRIDGE_KEY`` may carry a
dev key in plaintext, hashed here and never kept. A malformed configuration
refuses to serve (503) rather than serve with a weaker check.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from dataclasses import dataclass

from shared import errors, keys

log = logging.getLogger("agentpack")

DEFAULT_PROJECT = "demo-agentpack"
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class ConfigError(errors.Unavailable):
    default_description = "The service is misconfigured; nothing was changed."


@dataclass(frozen=True)
class Config:
    project_id: str
    bridge_key_hashes: tuple[str, ...]
    datastore_deadline_seconds: float


def _bridge_key_hashes() -> tuple[str, ...]:
    hashes = [h.strip() for h in os.environ.get("AGENTPACK_BRIDGE_KEY_HASHES", "").split(",") if h.strip()]
    if any(_SHA256_HEX.fullmatch(h) is None for h in hashes):
        raise ConfigError()
    plain = os.environ.get("AGENTPACK_BRIDGE_KEY", "").strip()
    if plain:
        if not keys.is_bridge_key(plain):
            raise ConfigError()
        hashes.append(keys.hash_key(plain))
    return tuple(hashes)


@functools.cache
def get() -> Config:
    try:
        deadline = float(os.environ.get("AGENTPACK_DATASTORE_DEADLINE_SECONDS", "5"))
    except ValueError:
        raise ConfigError() from None
    if not 0 < deadline <= 60:
        raise ConfigError()
    project = os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("GCLOUD_PROJECT") or DEFAULT_PROJECT
    try:
        hashes = _bridge_key_hashes()
    except ConfigError:
        log.error("configuration refused: AGENTPACK_BRIDGE_KEY or AGENTPACK_BRIDGE_KEY_HASHES is malformed")
        raise
    return Config(project_id=project, bridge_key_hashes=hashes, datastore_deadline_seconds=deadline)


def reset() -> None:
    """Forget the cached configuration (tests that change the environment)."""
    get.cache_clear()
