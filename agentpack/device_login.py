"""Joining by a person's approval: the device authorization grant (RFC 8628), for a program with no secret.

``start`` asks ``/oauth/device_authorization`` for a user code to show the person;
``poll`` asks ``/oauth/token`` as §3.5 says (every ``interval`` seconds; 5 more after
``slow_down``; on until approved, denied or expired) and returns the tokens;
``save`` keeps them in a file only its owner can read; ``claims`` reads an access
token's claims to show them (not verified: the service verifies; this is for display).
Plain ``http://`` is allowed to a loopback host only, unless ``allow_insecure_http``.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
SLOW_DOWN_STEP = 5  # RFC 8628 §3.5
DEFAULT_INTERVAL = 5
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


class DeviceLoginError(Exception):
    """The service refused (``code`` is the OAuth error: access_denied, expired_token, ...) or could not answer."""

    def __init__(self, code: str, description: str, status: int = 0) -> None:
        super().__init__(f"{code}: {description}")
        self.code, self.description, self.status = code, description, status


@dataclass(frozen=True)
class DeviceAuthorization:
    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: int
    interval: int


def default_session_path() -> Path:
    return Path.home() / ".agentpack" / "session.json"


def _checked_url(base_url: str, allow_insecure_http: bool) -> str:
    parts = urllib.parse.urlsplit(base_url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"the service URL {base_url} must be an https:// URL")
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK and not allow_insecure_http:
        raise ValueError(f"the service URL {base_url} is plain http to a host other than this machine; use https")
    return base_url.rstrip("/")


def _post_form(url: str, fields: Mapping[str, str], timeout: float) -> tuple[int, dict[str, Any]]:
    data = urllib.parse.urlencode(fields).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")  # noqa: S310 - scheme checked
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - the URL's scheme is checked
            status, raw = answer.status, answer.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise DeviceLoginError("unexpected_response", f"the service answered {status} without a JSON object", status)
    return status, body


def _refusal(status: int, body: Mapping[str, Any]) -> DeviceLoginError:
    code = str(body.get("error") or "unexpected_response")
    return DeviceLoginError(code, str(body.get("error_description") or f"the service answered {status}"), status)


def start(
    base_url: str,
    client_id: str,
    scope: str | None = None,
    *,
    timeout: float = 15,
    allow_insecure_http: bool = False,
) -> DeviceAuthorization:
    """RFC 8628 §3.1: a device code to poll with and a user code for the person to approve."""
    url = _checked_url(base_url, allow_insecure_http) + "/oauth/device_authorization"
    fields = {"client_id": client_id, **({"scope": scope} if scope else {})}
    try:
        status, body = _post_form(url, fields, timeout)
    except OSError as error:
        raise DeviceLoginError("unavailable", f"cannot reach {base_url}: {error}") from None
    if status != 200:
        raise _refusal(status, body)
    try:
        return DeviceAuthorization(
            device_code=str(body["device_code"]),
            user_code=str(body["user_code"]),
            verification_uri=str(body["verification_uri"]),
            verification_uri_complete=body.get("verification_uri_complete"),
            expires_in=int(body["expires_in"]),
            interval=int(body.get("interval") or DEFAULT_INTERVAL),
        )
    except (KeyError, TypeError, ValueError):
        raise DeviceLoginError("unexpected_response", "the device authorization answer lacks a field") from None


def poll(
    base_url: str,
    client_id: str,
    authorization: DeviceAuthorization,
    *,
    interval: int | None = None,
    timeout: float = 15,
    allow_insecure_http: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """RFC 8628 §3.4-3.5: wait ``interval`` seconds between requests (5 more after each ``slow_down``)
    until the person decides; the token answer, or DeviceLoginError (access_denied, expired_token, ...).

    A request the network loses is retried after twice the interval (§3.5), until the code expires."""
    url = _checked_url(base_url, allow_insecure_http) + "/oauth/token"
    fields = {"grant_type": DEVICE_CODE_GRANT, "device_code": authorization.device_code, "client_id": client_id}
    wait = authorization.interval if interval is None else interval
    deadline = time.monotonic() + authorization.expires_in
    while True:
        sleep(wait)
        if time.monotonic() >= deadline:
            raise DeviceLoginError("expired_token", "the code expired before anyone approved it")
        try:
            status, body = _post_form(url, fields, timeout)
        except OSError:
            wait *= 2
            continue
        if status == 200:
            if not isinstance(body.get("access_token"), str):
                raise DeviceLoginError("unexpected_response", "the token answer holds no access token", status)
            return body
        error = body.get("error")
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            wait += SLOW_DOWN_STEP
            continue
        raise _refusal(status, body)


def save(path: Path, tokens: Mapping[str, Any], extra: Mapping[str, Any]) -> None:
    """Write the session (tokens and where they came from) as JSON, mode 0600, replacing an older one at once."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            json.dump({**tokens, **extra}, file, indent=2)
            file.write("\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def load(path: Path) -> dict[str, Any]:
    session = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(session, dict) or not isinstance(session.get("access_token"), str):
        raise ValueError(f"{path} holds no session")
    return session


def claims(access_token: str) -> dict[str, Any]:
    """The claims of a JWT, read without verifying it: for showing who a session acts for, nothing else."""
    parts = access_token.split(".")
    if len(parts) != 3:
        raise ValueError("not a JWT")
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    decoded = json.loads(base64.urlsafe_b64decode(payload))
    if not isinstance(decoded, dict):
        raise ValueError("not a JWT")
    return decoded
