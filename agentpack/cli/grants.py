"""agentpack grants: a user's grants to agents (users/delegate): create, revoke, list."""

from __future__ import annotations

from agentpack.cli import output
from agentpack.cli.context import Context, scopes


def grants_create(ctx: Context) -> int:
    client = ctx.client("bridge")
    actions = scopes(ctx.args.action)
    return ctx.show(
        client.grant_user_delegation(ctx.args.agent_id, actions, ttl_seconds=ctx.args.ttl, user_id=ctx.args.user)
    )


def grants_revoke(ctx: Context) -> int:
    return ctx.show(ctx.client("any").revoke_user_delegation(ctx.args.grant_id))


def grants_list(ctx: Context) -> int:
    answer = ctx.client("agent").list_user_delegations()

    def human() -> None:
        output.table(
            ("grant_id", "user_id", "agent_id", "actions", "expires_at", "revoked_at"),
            [(g.grant_id, g.user_id, g.agent_id, g.actions, g.expires_at, g.revoked_at) for g in answer.grants],
            ctx.out,
        )

    return ctx.show(answer, human)
