"""agentpack keys: issue, revoke, list, rotate, expiring."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from agentpack import rotation
from agentpack.cli import output
from agentpack.cli.context import EXIT_OK, Context
from agentpack.cli.files import PrivateFile
from agentpack.models import DeviceKey, IssuedKey, to_dict


def _hand_over_key(ctx: Context, device_key: str, out: PrivateFile | None) -> str:
    """Put the new key in its file, or return it for printing; say it is shown only once."""
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
        ("device_key", shown),
    ]


def keys_issue(ctx: Context) -> int:
    client = ctx.client("any")
    out = PrivateFile(ctx.args.out, replace=False) if ctx.args.out else None
    try:
        issued = client.issue_key(ctx.args.agent, label=ctx.args.label, ttl_seconds=ctx.args.ttl)
    except BaseException:
        if out is not None:
            out.discard()
        raise
    shown = _hand_over_key(ctx, issued.device_key, out)
    if ctx.json:
        data = to_dict(issued)
        if out is not None:
            del data["device_key"]
            data["device_key_file"] = str(out.path)
        ctx.print_json(data)
        return EXIT_OK
    output.record(_key_pairs(issued, shown), ctx.out)
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
