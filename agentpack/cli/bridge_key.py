"""agentpack bridge-key: new, hash (offline). The deployment holds only the key's SHA-256 hash."""

from __future__ import annotations

from agentpack.cli import output
from agentpack.cli.context import EXIT_OK, Context, UsageError
from agentpack.cli.files import PrivateFile, read_input


def bridge_key_new(ctx: Context) -> int:
    from shared import keys

    out = PrivateFile(ctx.args.out, replace=False) if ctx.args.out else None
    key = keys.new_bridge_key()
    digest = keys.hash_key(key)
    if out is not None:
        out.write(key + "\n")
    if ctx.json:
        ctx.print_json(({"bridge_key_file": str(out.path)} if out else {"bridge_key": key}) | {"hash": digest})
        return EXIT_OK
    if out is None:
        ctx.note("New bridge key. It is shown only this once: store it in your secret store now.")
    output.record([("bridge key", f"written to {out.path} (mode 0600)" if out else key), ("hash", digest)], ctx.out)
    ctx.note(
        "Configure the hash, never the key: the Secret Manager secret agentpack-bridge-key-hashes\n"
        "(comma-separate 'OLDHASH,NEWHASH' while rotating; docs/deploy.md).\n"
        "Locally, in a checkout: AGENTPACK_BRIDGE_KEY=<key> scripts/serve."
    )
    return EXIT_OK


def bridge_key_hash(ctx: Context) -> int:
    from shared import keys

    raw = read_input(ctx.args.file, "bridge key (not echoed): ")
    key = raw.decode("ascii", errors="replace").strip()
    if not keys.is_bridge_key(key):
        raise UsageError("that is not a bridge key (wrong format or checksum)")
    digest = keys.hash_key(key)
    if ctx.json:
        ctx.print_json({"hash": digest})
    else:
        print(digest, file=ctx.out)
    return EXIT_OK
