"""agentpack settings: list, set."""

from __future__ import annotations

from agentpack.cli import output
from agentpack.cli.context import Context


def settings_list(ctx: Context) -> int:
    answer = ctx.client("any").list_settings()
    return ctx.show(answer, lambda: output.table(("key", "value"), sorted(answer.settings.items()), ctx.out))


def settings_set(ctx: Context) -> int:
    return ctx.show(ctx.client("bridge").set_setting(ctx.args.key, ctx.args.value))
