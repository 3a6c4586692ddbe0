"""agentpack agents: create, get, list, update, disable, enable."""

from __future__ import annotations

from agentpack.cli import output
from agentpack.cli.context import EXIT_OK, Context, UsageError, paged, scopes
from agentpack.models import to_dict


def agents_create(ctx: Context) -> int:
    chosen = scopes(ctx.args.scope) if ctx.args.scope else None
    return ctx.show(ctx.client("bridge").create_agent(ctx.args.display_name, tenant_id=ctx.args.tenant, scopes=chosen))


def agents_get(ctx: Context) -> int:
    return ctx.show(ctx.client("any").get_agent(ctx.args.agent_id))


def agents_list(ctx: Context) -> int:
    client = ctx.client("bridge")
    agents, token = paged(
        ctx,
        lambda size, token: client.list_agents(tenant_id=ctx.args.tenant, page_size=size, page_token=token),
        "agents",
    )
    if ctx.json:
        ctx.print_json({"agents": [to_dict(agent) for agent in agents], "next_page_token": token})
        return EXIT_OK
    rows = [(a.agent_id, a.display_name, a.tenant_id, a.disabled, " ".join(a.scopes), a.created_at) for a in agents]
    output.table(("agent_id", "display_name", "tenant_id", "disabled", "scopes", "created_at"), rows, ctx.out)
    return EXIT_OK


def agents_update(ctx: Context) -> int:
    if ctx.args.name is None and ctx.args.scope is None and not ctx.args.no_scopes:
        raise UsageError("give --name, --scope or --no-scopes")
    if ctx.args.scope is not None and ctx.args.no_scopes:
        raise UsageError("--scope and --no-scopes: give one")
    chosen = [] if ctx.args.no_scopes else scopes(ctx.args.scope) if ctx.args.scope is not None else None
    return ctx.show(ctx.client("bridge").update_agent(ctx.args.agent_id, display_name=ctx.args.name, scopes=chosen))


def agents_disable(ctx: Context) -> int:
    return ctx.show(ctx.client("bridge").update_agent(ctx.args.agent_id, disabled=True))


def agents_enable(ctx: Context) -> int:
    return ctx.show(ctx.client("bridge").update_agent(ctx.args.agent_id, disabled=False))
