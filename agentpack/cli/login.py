"""agentpack login --device and agentpack whoami: a program joins by a person's approval (RFC 8628).

``login --device`` asks for a user code, prints where to approve it, polls until the
person decides and keeps the tokens in a session file (mode 0600). ``whoami`` shows
whom that session acts for, read from the access token's own claims on this machine
(not verified: the service verifies every use; this is only to show).
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agentpack import config, device_login
from agentpack.cli import output
from agentpack.cli.context import EXIT_OK, EXIT_REFUSED, EXIT_UNAVAILABLE, Context, UsageError, scopes


def _session_path(ctx: Context) -> Path:
    given = getattr(ctx.args, "out", None) or getattr(ctx.args, "session", None)
    return Path(given).expanduser() if given else device_login.default_session_path()


def _failed(ctx: Context, error: device_login.DeviceLoginError) -> int:
    print(f"error: {error.code}: {error.description}", file=ctx.err)
    if error.code == "access_denied":
        ctx.note("The person denied this device. Nothing was saved.")
    elif error.code == "expired_token":
        ctx.note("Nobody approved the code in time. Run the command again for a new code.")
    return (
        EXIT_UNAVAILABLE
        if error.code in ("unavailable", "unexpected_response") or error.status >= 500
        else EXIT_REFUSED
    )


def login(ctx: Context) -> int:
    if not ctx.args.device:
        raise UsageError("only --device is supported: agentpack login --device --client-id AGENT_ID")
    url = ctx.args.url or config.url()
    insecure = os.environ.get("AGENTPACK_ALLOW_INSECURE_HTTP") == "1"
    requested = " ".join(scopes(ctx.args.scope or [])) or None
    path = _session_path(ctx)
    timeout = ctx.timeout()
    try:
        started = device_login.start(url, ctx.args.client_id, requested, timeout=timeout, allow_insecure_http=insecure)
    except ValueError as problem:
        raise UsageError(str(problem)) from None
    except device_login.DeviceLoginError as error:
        return _failed(ctx, error)
    minutes = max(1, started.expires_in // 60)
    if ctx.json:
        ctx.print_json(
            {
                "user_code": started.user_code,
                "verification_uri": started.verification_uri,
                "verification_uri_complete": started.verification_uri_complete,
                "expires_in": started.expires_in,
            }
        )
    else:
        lines = [
            "To let this program act for you, open",
            f"  {started.verification_uri}",
            "sign in, and enter the code",
            f"  {started.user_code}",
        ]
        if started.verification_uri_complete:
            lines.append(f"(or open {started.verification_uri_complete})")
        lines.append(f"Waiting for your approval; the code expires in {minutes} minutes.")
        print("\n".join(lines), file=ctx.out)
    ctx.out.flush()
    try:
        tokens = device_login.poll(url, ctx.args.client_id, started, timeout=timeout, allow_insecure_http=insecure)
    except device_login.DeviceLoginError as error:
        return _failed(ctx, error)
    device_login.save(path, tokens, {"url": url, "client_id": ctx.args.client_id, "obtained_at": int(time.time())})
    seen = device_login.claims(tokens["access_token"])
    if ctx.json:
        ctx.print_json({"session_file": str(path), "sub": seen.get("sub"), "act": seen.get("act")})
    else:
        acting = (seen.get("act") or {}).get("sub", ctx.args.client_id)
        print(f"Approved: {acting} now acts for {seen.get('sub')} ({tokens.get('scope', '')}).", file=ctx.out)
        print(f"Session saved to {path} (mode 0600).", file=ctx.out)
    return EXIT_OK


def _when(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def whoami(ctx: Context) -> int:
    path = _session_path(ctx)
    try:
        session = device_login.load(path)
        seen = device_login.claims(session["access_token"])
    except FileNotFoundError:
        raise UsageError(f"no session at {path}: run agentpack login --device --client-id AGENT_ID") from None
    except (OSError, ValueError) as problem:
        raise UsageError(f"cannot read the session {path}: {problem}") from None
    found = seen.get("act")
    act: dict[str, Any] = found if isinstance(found, dict) else {}
    expires = seen.get("exp")
    state = "expired" if isinstance(expires, int | float) and expires <= time.time() else "valid until"
    shown = {
        "user": seen.get("sub"),
        "agent": act.get("sub") or seen.get("client_id"),
        "tenant": seen.get("tenant_id"),
        "scope": seen.get("scope"),
        "access token": f"{state} {_when(expires)}",
        "service": session.get("url"),
        "session file": str(path),
    }
    if ctx.json:
        ctx.print_json({**{k.replace(" ", "_"): v for k, v in shown.items()}, "claims": seen, "verified": False})
        return EXIT_OK
    output.record([(name, "-" if value is None else str(value)) for name, value in shown.items()], ctx.out)
    ctx.note("(read from the access token on this machine, not verified: the service checks it on every use)")
    return EXIT_OK


def add_commands(b: Any, top: Any) -> None:
    """``login`` and ``whoami``, added to the command line by parser.build_parser."""
    c: argparse.ArgumentParser = b.command(
        top,
        "login",
        login,
        "join by a person's approval (device flow) and keep the session",
        "Ask the service for a user code (RFC 8628), print where a person approves it, wait for the\n"
        "decision (polling as the service asks) and keep the tokens in a session file (mode 0600).\n"
        "Exit 3 if the person denies it or the code expires.",
        ["agentpack login --device --client-id agt_... --scope read"],
    )
    c.add_argument("--device", action="store_true", help="the device authorization flow (the only one)")
    c.add_argument("--client-id", required=True, metavar="AGENT_ID", help="the public agent this program is")
    c.add_argument("--scope", action="append", metavar="ACTIONS", help="the actions asked for (default: the agent's)")
    c.add_argument("--out", metavar="FILE", help="the session file (default: ~/.agentpack/session.json)")
    c = b.command(
        top,
        "whoami",
        whoami,
        "show whom the saved session acts for",
        "Show the user and agent of the session that 'login --device' saved, read from the access\n"
        "token's claims on this machine (not verified).",
        ["agentpack whoami", "agentpack whoami --session ./session.json"],
    )
    c.add_argument("--session", metavar="FILE", help="the session file (default: ~/.agentpack/session.json)")
