"""agentpack capability: keygen and mint (offline, with the service's own token code), record (bridge key).

A signing key file holds the 32-byte Ed25519 seed, unpadded base64url, on one
line, mode 0600; the private key is never printed and never leaves the file.
"""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agentpack.cli import output
from agentpack.cli.context import EXIT_OK, Context, UsageError, scopes
from agentpack.cli.files import PrivateFile, read_input
from agentpack.models import format_time

MAX_TTL_SECONDS = 3600  # the largest capability_max_ttl_seconds a deployment may configure


def write_private_key(path: Path, seed: bytes) -> None:
    """Create ``path`` (never overwrite, never follow a symlink) with mode 0600 and write the seed."""
    from shared import tokens

    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    descriptor = os.open(path, flags, 0o600)
    try:
        os.write(descriptor, (tokens.b64encode(seed) + "\n").encode("ascii"))
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def read_private_key(path: Path) -> bytes:
    """The seed in ``path``. Raises ValueError for a file that is not one base64url 32-byte seed."""
    from shared import crypto, tokens

    seed = tokens.b64decode(path.read_text(encoding="ascii").strip())
    if len(seed) != crypto.ED25519_SEED_BYTES:
        raise ValueError("not a 32-byte seed")
    return seed


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def capability_keygen(ctx: Context) -> int:
    from shared import crypto, tokens

    kid = ctx.args.kid or f"cap-{datetime.now(UTC):%Y-%m-%d}"
    if tokens.KID.fullmatch(kid) is None:
        raise UsageError("--kid must match [A-Za-z0-9._-]{1,64}")
    seed, public = crypto.new_signing_key()
    try:
        write_private_key(Path(ctx.args.out), seed)  # 0600, never overwrites, no symlink
    except FileExistsError:
        raise UsageError(f"{ctx.args.out} already exists; refusing to overwrite a key file") from None
    except OSError as error:
        raise UsageError(f"cannot create {ctx.args.out}: {error.strerror or error}") from None
    public_keys = {kid: tokens.b64encode(public)}
    if ctx.json:
        ctx.print_json({"kid": kid, "public_key": public_keys[kid], "private_key_file": ctx.args.out})
        return EXIT_OK
    output.record(
        [
            ("kid", kid),
            ("public_key", public_keys[kid]),
            ("private_key", f"written to {ctx.args.out} (mode 0600); keep it offline"),
        ],
        ctx.out,
    )
    ctx.note(
        "Add the public key to the service's key set, beside any live one:\n"
        f"  AGENTPACK_CAPABILITY_PUBLIC_KEYS='{json.dumps(public_keys, separators=(',', ':'))}'"
    )
    return EXIT_OK


def capability_mint(ctx: Context) -> int:
    from shared import tokens

    key_file = Path(ctx.args.key)
    try:
        seed = read_private_key(key_file)
        shared_with_others = key_file.stat().st_mode & 0o077
    except (OSError, ValueError, UnicodeDecodeError):
        raise UsageError(f"cannot read {ctx.args.key}: not a capability private key file (from keygen)") from None
    if shared_with_others:
        ctx.note(f"warning: {ctx.args.key} is readable by others; chmod 600 it")
    if not 1 <= ctx.args.ttl <= MAX_TTL_SECONDS:
        raise UsageError(f"--ttl must be 1 to {MAX_TTL_SECONDS} seconds (and at most the service's)")
    out = PrivateFile(ctx.args.out, replace=True) if ctx.args.out else None
    try:
        claims = tokens.new_claims(
            ctx.args.agent, scopes(ctx.args.scope), ctx.args.ttl, datetime.now(UTC), ctx.args.jti
        )
        token = tokens.sign(seed, ctx.args.kid, claims)
        recorded = None
        if ctx.args.record:
            # Recorded before it is shown: a token that could not be put on record is never handed out.
            recorded = ctx.client("bridge").record_capability(
                jti=claims["jti"],
                sub=claims["sub"],
                scope=claims["scope"],
                iat=claims["iat"],
                exp=claims["exp"],
                kid=ctx.args.kid,
            )
    except BaseException as problem:
        if out is not None:
            out.discard()
        if isinstance(problem, ValueError):
            raise UsageError(str(problem)) from None
        raise
    if out is not None:
        out.write(token + "\n")
    expires = format_time(datetime.fromtimestamp(claims["exp"], UTC))
    if ctx.json:
        data: dict[str, Any] = {"kid": ctx.args.kid, "claims": claims}
        data.update({"token_file": ctx.args.out} if ctx.args.out else {"token": token})
        data["recorded_at"] = format_time(recorded.recorded_at) if recorded else None
        ctx.print_json(data)
        return EXIT_OK
    if not ctx.args.out:
        print(token, file=ctx.out)
    where = f" (written to {ctx.args.out})" if ctx.args.out else ""
    ctx.note(f"token{where} for {claims['sub']}, scope '{claims['scope']}', until {expires}, jti {claims['jti']}")
    if recorded is not None:
        ctx.note(f"recorded at {format_time(recorded.recorded_at)}")
    return EXIT_OK


def _token_claims(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    parts = token.split(".")
    try:
        if len(parts) != 3:
            raise ValueError
        header, claims = (json.loads(_b64decode(part)) for part in parts[:2])
    except ValueError:  # binascii.Error and JSONDecodeError are ValueErrors
        raise UsageError("that is not a capability token (a compact JWS: three base64url parts)") from None
    if not isinstance(header, dict) or not isinstance(claims, dict) or not isinstance(header.get("kid"), str):
        raise UsageError("that is not a capability token (no kid in its header, or claims not an object)")
    return header, claims


def capability_record(ctx: Context) -> int:
    client = ctx.client("bridge")
    raw = read_input(ctx.args.token_file, "capability token (not echoed): ")
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise UsageError("that is not a capability token (not ASCII)") from None
    header, claims = _token_claims(token)
    try:
        recorded = client.record_capability(
            jti=claims["jti"],
            sub=claims["sub"],
            scope=claims["scope"],
            iat=claims["iat"],
            exp=claims["exp"],
            kid=header["kid"],
        )
    except KeyError as missing:
        raise UsageError(f"the token has no {missing} claim") from None
    return ctx.show(recorded)
