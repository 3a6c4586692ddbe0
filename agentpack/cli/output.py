"""What the command prints: tables and records for people, JSON for scripts, errors with a hint that fits."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import fields, is_dataclass
from datetime import datetime
from typing import IO, Any

from agentpack import config, errors
from agentpack.config import Credential
from agentpack.models import format_time


def text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, list | tuple):
        return ",".join(text(item) for item in value) or "-"
    if isinstance(value, dict):
        return " ".join(f"{key}={text(item)}" for key, item in value.items())
    return str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], out: IO[str]) -> None:
    cells = [[text(cell) for cell in row] for row in rows]
    widths = [max([len(header), *(len(row[i]) for row in cells)]) for i, header in enumerate(headers)]
    for row in [[header.upper() for header in headers], *cells]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip(), file=out)


def record(pairs: Sequence[tuple[str, Any]], out: IO[str]) -> None:
    width = max((len(name) for name, _ in pairs), default=0)
    for name, value in pairs:
        print(f"{name.ljust(width)}  {text(value)}", file=out)


def pairs(answer: Any) -> list[tuple[str, Any]]:
    assert is_dataclass(answer)
    return [(f.name, getattr(answer, f.name)) for f in fields(answer) if not f.metadata.get("answer")]


def expires_in(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "never"
    seconds = int((moment - now).total_seconds())
    if seconds <= 0:
        return "expired"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = [f"{days}d"] * bool(days) + [f"{hours}h"] * bool(hours) + [f"{minutes}m"] * bool(minutes)
    return " ".join(parts[:2]) or f"{seconds}s"


# Why a credential of each kind is refused (401): a hint names only causes that fit the credential sent.
_REFUSED_BECAUSE: dict[config.Kind, str] = {
    "bridge_key": "mistyped, or not one of the bridge keys whose hashes the service is configured with",
    "device_key": "mistyped, unknown, expired or revoked, or its agent is disabled",
    "token": "malformed, expired, signed with a key the service does not know, or its agent is disabled",
}


def hint(
    error: errors.ApiError, credential: Credential | None, needs: config.Needs, delegation: str | None
) -> str | None:
    """One line of advice for a failed call, or None when the error says it all."""
    sent = f"the {credential.name} from {credential.source}" if credential else "the credential"
    if isinstance(error, errors.TimedOut):
        return f"no answer from {error.url} in time; is the service up? (--timeout or AGENTPACK_TIMEOUT to wait longer)"
    if isinstance(error, errors.ConnectionFailed):
        return f"is the service running at {error.url}? (set AGENTPACK_URL or --url)"
    if isinstance(error, errors.UnexpectedResponse):
        return "check AGENTPACK_URL: it should be the agentpack identity service"
    if isinstance(error, errors.Unauthenticated):
        if credential is None:
            return f"{sent} was refused"
        return f"{sent} was refused: {_REFUSED_BECAUSE[credential.kind]}"
    if isinstance(error, errors.Forbidden):
        if needs == "bridge" and credential is not None and credential.kind != "bridge_key":
            return f"an operator command: it needs the bridge key (AGENTPACK_BRIDGE_KEY_FILE), not {sent}"
        if needs == "agent" and credential is not None and credential.kind == "bridge_key":
            return f"an agent command: it needs a device key or a token, not {sent}"
        through = f" through delegation {delegation}" if delegation else ""
        return f"sent with {sent}{through}"
    return None


def api_error(error: errors.ApiError, err: IO[str], advice: str | None) -> None:
    print(f"error: {error.code}: {error.description} (request {error.request_id})", file=err)
    if advice:
        print(f"hint: {advice}", file=err)


def usage_error(message: str, err: IO[str]) -> None:
    print(f"agentpack: error: {message}", file=err)
