"""agentpack delegations: grant, revoke, list."""

from __future__ import annotations

from agentpack.cli import output
from agentpack.cli.context import Context, scopes


def delegations_grant(ctx: Context) -> int:
    scope = scopes(ctx.args.scope)
    return ctx.show(ctx.client("agent").delegate(ctx.args.to_agent, scope, ctx.args.ttl))


def delegations_revoke(ctx: Context) -> int:
    return ctx.show(ctx.client("any").revoke_delegation(ctx.args.delegation_id))


def delegations_list(ctx: Context) -> int:
    answer = ctx.client("agent").list_delegations()

    def human() -> None:
        rows = [("granted", d) for d in answer.granted] + [("received", d) for d in answer.received]
        output.table(
            ("direction", "delegation_id", "from_agent", "to_agent", "scope", "expires_at", "revoked_at"),
            [(way, d.delegation_id, d.from_agent, d.to_agent, d.scope, d.expires_at, d.revoked_at) for way, d in rows],
            ctx.out,
        )

    return ctx.show(answer, human)
