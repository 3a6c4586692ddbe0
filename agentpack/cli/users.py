"""agentpack users: create, get, list, update."""

from __future__ import annotations

from agentpack.cli import output
from agentpack.cli.context import EXIT_OK, Context, UsageError, paged
from agentpack.models import to_dict


def users_create(ctx: Context) -> int:
    client = ctx.client("bridge")
    return ctx.show(client.create_user(ctx.args.firebase_uid, tenant_id=ctx.args.tenant, display_name=ctx.args.name))


def users_get(ctx: Context) -> int:
    return ctx.show(ctx.client("any").get_user(ctx.args.user_id))


def users_list(ctx: Context) -> int:
    client = ctx.client("bridge")
    users, token = paged(
        ctx,
        lambda size, token: client.list_users(tenant_id=ctx.args.tenant, page_size=size, page_token=token),
        "users",
    )
    if ctx.json:
        ctx.print_json({"users": [to_dict(user) for user in users], "next_page_token": token})
        return EXIT_OK
    rows = [(u.user_id, u.firebase_uid, u.display_name, u.tenant_id, u.disabled, u.created_at) for u in users]
    output.table(("user_id", "firebase_uid", "display_name", "tenant_id", "disabled", "created_at"), rows, ctx.out)
    return EXIT_OK


def users_update(ctx: Context) -> int:
    if ctx.args.name is None and ctx.args.disabled is None:
        raise UsageError("give --name, --disable or --enable")
    client = ctx.client("bridge")
    return ctx.show(client.update_user(ctx.args.user_id, display_name=ctx.args.name, disabled=ctx.args.disabled))
