"""Where the client finds its URL and credentials: environment variables and files, never arguments.

| variable | meaning |
| --- | --- |
| ``AGENTPACK_URL`` | the service (default ``http://127.0.0.1:8000``) |
| ``AGENTPACK_BRIDGE_KEY`` / ``AGENTPACK_BRIDGE_KEY_FILE`` | the bridge key, or a file holding it |
| ``AGENTPACK_DEVICE_KEY`` / ``AGENTPACK_DEVICE_KEY_FILE`` | a device key, or a file holding it |
| ``AGENTPACK_TOKEN`` / ``AGENTPACK_TOKEN_FILE`` | a capability token, or a file holding it |
| ``AGENTPACK_DELEGATION`` | a delegation ID, sent beside an agent credential on the secrets routes |

Which credential a call uses, among those set: an operator call (bridge-only
route) and a call either side may make use the bridge key, else the device
key, else the token; an agent call uses the device key, else the token, else
the bridge key. So with one credential set, that one is sent, and the service
answers for itself (``403 forbidden`` for the wrong side). The caller can
insist on one side (``role``). Setting both a variable and its ``_FILE`` twin
is refused rather than guessed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from agentpack.errors import AgentpackError

DEFAULT_URL = "http://127.0.0.1:8000"
Kind = Literal["bridge_key", "device_key", "token"]
Role = Literal["bridge", "agent"]
Needs = Literal["bridge", "agent", "any"]

_VARIABLES: dict[Kind, str] = {
    "bridge_key": "AGENTPACK_BRIDGE_KEY",
    "device_key": "AGENTPACK_DEVICE_KEY",
    "token": "AGENTPACK_TOKEN",
}
NAMES: dict[Kind, str] = {"bridge_key": "bridge key", "device_key": "device key", "token": "capability token"}
MAX_CREDENTIAL_FILE_BYTES = 16 * 1024


class ConfigurationError(AgentpackError):
    """The environment names no usable credential, or names one ambiguously, or a file cannot be read."""


@dataclass(frozen=True)
class Credential:
    kind: Kind
    value: str = field(repr=False)
    source: str  # where it came from, for messages: never the value

    @property
    def name(self) -> str:
        return NAMES[self.kind]


def _read(kind: Kind, env: Mapping[str, str]) -> Credential | None:
    variable = _VARIABLES[kind]
    inline, path = env.get(variable, "").strip(), env.get(variable + "_FILE", "").strip()
    if inline and path:
        raise ConfigurationError(f"set {variable} or {variable}_FILE, not both")
    if inline:
        return Credential(kind, inline, variable)
    if not path:
        return None
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_CREDENTIAL_FILE_BYTES + 1)
    except OSError as error:
        raise ConfigurationError(f"{variable}_FILE: cannot read {path}: {error.strerror or error}") from None
    if len(data) > MAX_CREDENTIAL_FILE_BYTES:
        raise ConfigurationError(f"{variable}_FILE: {path} is too large to hold a {NAMES[kind]}")
    try:
        value = data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ConfigurationError(f"{variable}_FILE: {path} does not hold a {NAMES[kind]} (not ASCII)") from None
    if not value:
        raise ConfigurationError(f"{variable}_FILE: {path} is empty")
    return Credential(kind, value, f"{variable}_FILE ({Path(path)})")


def url(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return env.get("AGENTPACK_URL", "").strip() or DEFAULT_URL


def delegation(env: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if env is None else env
    return env.get("AGENTPACK_DELEGATION", "").strip() or None


def choose(needs: Needs, role: Role | None = None, env: Mapping[str, str] | None = None) -> Credential:
    """The credential for a call that ``needs`` a side, following the rule in this module's docstring.

    The side a call needs is a preference, not a filter: with only a device key
    set, an operator call is still sent, and the service refuses it (403) with
    its own words. ``role`` is a filter: only that side's credentials are used.
    """
    env = os.environ if env is None else env
    order: tuple[Kind, ...]
    if role == "bridge":
        order = ("bridge_key",)
    elif role == "agent":
        order = ("device_key", "token")
    elif needs == "agent":
        order = ("device_key", "token", "bridge_key")
    else:
        order = ("bridge_key", "device_key", "token")
    for kind in order:
        found = _read(kind, env)
        if found is not None:
            return found
    wanted = " or ".join(f"{_VARIABLES[kind]}_FILE" for kind in order)
    raise ConfigurationError(f"no credential: set {wanted} (or the same variable without _FILE)")
