"""agentpack secrets: put, get, list, delete (an agent's own, or a grantor's through a delegation)."""

from __future__ import annotations

from agentpack.cli import output
from agentpack.cli.context import EXIT_OK, Context, UsageError
from agentpack.cli.files import read_input


def secrets_put(ctx: Context) -> int:
    client = ctx.client("agent", delegated=True)
    raw = read_input(ctx.args.file, f"value of {ctx.args.name} (not echoed): ")
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError("the secret value must be UTF-8 text") from None
    return ctx.show(client.put_secret(ctx.args.name, value))


def secrets_get(ctx: Context) -> int:
    secret = ctx.client("agent", delegated=True).get_secret(ctx.args.name)
    if ctx.json:
        return ctx.show(secret)
    # The value exactly as stored, on standard output only; a newline only for a person at a terminal.
    ctx.out.write(secret.value + ("\n" if ctx.out.isatty() else ""))
    return EXIT_OK


def secrets_list(ctx: Context) -> int:
    answer = ctx.client("agent", delegated=True).list_secrets()
    rows = [(s.name, s.version, s.updated_at) for s in answer.secrets]
    return ctx.show(answer, lambda: output.table(("name", "version", "updated_at"), rows, ctx.out))


def secrets_delete(ctx: Context) -> int:
    return ctx.show(ctx.client("agent", delegated=True).delete_secret(ctx.args.name))
