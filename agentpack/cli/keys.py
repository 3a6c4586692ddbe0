"""agentpack keys: issue, revoke, list, rotate, expiring, report-leak."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agentpack import rotation
from agentpack.cli import output
from agentpack.cli.context import EXIT_OK, Context, UsageError, scopes
from agentpack.cli.files import PrivateFile, read_input
from agentpack.models import DeviceKey, IssuedKey, to_dict


def _hand_over_key(ctx: Context, device_key: str | None, out: PrivateFile | None) -> str:
    """Put the new key in its file, or return it for printing; say it is shown only once."""
    if device_key is None:  # a key pair was registered: the private key never left its file
        if out is not None:
            out.discard()
        return "none: a key pair (private_key_jwt); the private key stays in its file"
    if out is None:
        ctx.note(
            "The device key is shown only this once: store it now (e.g. in the file AGENTPACK_DEVICE_KEY_FILE names)."
        )
        return device_key
    out.write(device_key + "\n")
    return f"written to {out.path} (mode 0600)"


def _key_pairs(issued: IssuedKey, shown: str) -> list[tuple[str, Any]]:
    return [
        ("key_id", issued.key_id),
        ("agent_id", issued.agent_id),
        ("label", issued.label),
        ("created_at", issued.created_at),
        ("expires_at", issued.expires_at),
        ("scopes", " ".join(issued.scopes) if issued.scopes is not None else "the agent's"),
        ("device_key", shown),
    ]


def keys_issue(ctx: Context) -> int:
    client = ctx.client("any")
    public_key = _public_key(ctx.args.public_key) if ctx.args.public_key else None
    if public_key is not None and ctx.args.out:
        raise UsageError("--out writes a device key; a key pair (--public-key) has none")
    out = PrivateFile(ctx.args.out, replace=False) if ctx.args.out else None
    try:
        issued = client.issue_key(
            ctx.args.agent,
            label=ctx.args.label,
            ttl_seconds=ctx.args.ttl,
            scopes=scopes(ctx.args.scope) if ctx.args.scope else None,
            public_key=public_key,
        )
    except BaseException:
        if out is not None:
            out.discard()
        raise
    shown = _hand_over_key(ctx, issued.device_key, out)
    if ctx.json:
        data = to_dict(issued)
        if issued.device_key is None:
            del data["device_key"]
        if out is not None:
            del data["device_key"]
            data["device_key_file"] = str(out.path)
        ctx.print_json(data)
        return EXIT_OK
    output.record(_key_pairs(issued, shown), ctx.out)
    return EXIT_OK


def _public_key(path: str) -> str:
    """The base64url public key in ``path`` (as ``keys keypair`` writes it beside the private key)."""
    try:
        text = Path(path).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read the public key in {path}: {getattr(error, 'strerror', None) or error}") from None
    if len(text) != 43 or any(c not in _BASE64URL for c in text):
        raise UsageError(f"{path} does not hold a base64url Ed25519 public key (43 characters)")
    return text


_BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def keys_keypair(ctx: Context) -> int:
    """A new Ed25519 key pair for private_key_jwt: the private key in --out (0600), the public one beside it."""
    from agentpack.cli.capability import write_private_key
    from shared import crypto, jws

    seed, public = crypto.new_signing_key()
    private_path, public_path = Path(ctx.args.out), Path(ctx.args.out + ".pub")
    if public_path.exists():
        raise UsageError(f"{public_path} already exists; refusing to overwrite it")
    try:
        write_private_key(private_path, seed)  # 0600, never overwrites, no symlink
    except FileExistsError:
        raise UsageError(f"{private_path} already exists; refusing to overwrite a key file") from None
    except OSError as error:
        raise UsageError(f"cannot create {private_path}: {error.strerror or error}") from None
    public_path.write_text(jws.b64encode(public) + "\n", encoding="ascii")
    if ctx.json:
        ctx.print_json(
            {"public_key": jws.b64encode(public), "public_key_file": str(public_path), "private_key_file": ctx.args.out}
        )
        return EXIT_OK
    output.record(
        [
            ("public_key", jws.b64encode(public)),
            ("public_key_file", str(public_path)),
            ("private_key", f"written to {private_path} (mode 0600); it never leaves this machine"),
        ],
        ctx.out,
    )
    ctx.note(f"Register it: agentpack keys issue --agent agt_... --public-key {public_path}")
    return EXIT_OK


def keys_revoke(ctx: Context) -> int:
    return ctx.show(ctx.client("any").revoke_key(ctx.args.key_id))


def _key_rows(keys: Iterable[DeviceKey], now: datetime) -> list[tuple[Any, ...]]:
    return [(k.key_id, k.label, k.status(now), k.created_at, k.expires_at, k.revoked_at, k.replaced_by) for k in keys]


def keys_list(ctx: Context) -> int:
    answer = ctx.client("any").list_keys(ctx.args.agent)
    now = datetime.now(UTC)
    headers = ("key_id", "label", "status", "created_at", "expires_at", "revoked_at", "replaced_by")
    return ctx.show(answer, lambda: output.table(headers, _key_rows(answer.keys, now), ctx.out))


def keys_rotate(ctx: Context) -> int:
    client = ctx.client("any")
    # Rotating usually replaces the key in the very file that holds it: write beside it, then rename.
    out = PrivateFile(ctx.args.out, replace=True) if ctx.args.out else None
    try:
        done = rotation.rotate_key(
            client, ctx.args.key_id, agent_id=ctx.args.agent, label=ctx.args.label, ttl_seconds=ctx.args.ttl
        )
    except BaseException:
        if out is not None:
            out.discard()
        raise
    shown = _hand_over_key(ctx, done.new_key.device_key, out)
    old_until = done.old_key.expires_at if done.old_key is not None else None
    if ctx.json:
        new = to_dict(done.new_key)
        if out is not None:
            del new["device_key"]
            new["device_key_file"] = str(out.path)
        ctx.print_json({"new_key": new, "old_key": to_dict(done.old_key) if done.old_key else None})
        return EXIT_OK
    output.record(
        [
            *_key_pairs(done.new_key, shown),
            ("replaces", ctx.args.key_id),
            ("old key valid until", old_until if done.old_key is not None else "unknown (could not read it back)"),
        ],
        ctx.out,
    )
    return EXIT_OK


def keys_expiring(ctx: Context) -> int:
    now = datetime.now(UTC)
    found = rotation.expiring_keys(ctx.client("any"), ctx.args.within, agent_id=ctx.args.agent, now=now)
    if ctx.json:
        ctx.print_json({"keys": [{"agent_id": item.agent_id, **to_dict(item.key)} for item in found]})
        return EXIT_OK
    rows = [
        (i.agent_id, i.key.key_id, i.key.label, i.key.expires_at, output.expires_in(i.key.expires_at, now))
        for i in found
    ]
    output.table(("agent_id", "key_id", "label", "expires_at", "expires_in"), rows, ctx.out)
    return EXIT_OK


# The documented patterns of the three kinds (docs/security.md): a file or a paste may hold other text too.
_LEAKABLE = re.compile(r"\bapk(?:d_[0-9A-Za-z]{93}|r_[0-9A-Za-z]{115}|b_[0-9A-Za-z]{49})\b")
_REPORT_BATCH = 100  # the most one request takes


def keys_report_leak(ctx: Context) -> int:
    """Report leaked keys found in the arguments, a file or standard input; sends no credential."""
    if ctx.args.keys and ctx.args.file:
        raise UsageError("give the keys as arguments or with --file, not both")
    text = " ".join(ctx.args.keys) if ctx.args.keys else read_input(ctx.args.file, "key: ").decode("utf-8", "replace")
    found = list(dict.fromkeys(_LEAKABLE.findall(text)))
    if not found:
        raise UsageError("no key found (apkd_…, apkr_… or apkb_…, whole, with their check digits)")
    client = ctx.keyless_client()
    received = 0
    for start in range(0, len(found), _REPORT_BATCH):
        received += client.report_leak(found[start : start + _REPORT_BATCH]).received
    if ctx.json:
        ctx.print_json({"received": received})
        return EXIT_OK
    output.record([("keys reported", received)], ctx.out)
    ctx.note(
        "Every live device key and refresh token among them is revoked now, and a live bridge key is reported "
        "(replace it). The service does not say which keys were real; the agents' audit trails do."
    )
    return EXIT_OK
