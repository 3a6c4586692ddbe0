"""agentpack audit list."""

from __future__ import annotations

from agentpack.cli import output
from agentpack.cli.context import EXIT_OK, Context, paged
from agentpack.models import AuditEvent, to_dict


def _actor(event: AuditEvent) -> str:
    actor = event.actor
    if actor.get("kind") != "agent":
        return str(actor.get("kind", "-"))
    text = str(actor.get("agent_id", "agent"))
    return text + (f" for {actor['on_behalf_of']}" if actor.get("on_behalf_of") else "")


_TARGET_IDS = {
    "device_key": "key_id",
    "delegation": "delegation_id",
    "secret": "name",
    "setting": "key",
    "capability": "jti",
}


def _target(event: AuditEvent) -> str:
    """The kind and the ID of what the event acted on; ``--json`` shows every detail."""
    kind = str(event.target.get("kind", "-"))
    name = event.target.get(_TARGET_IDS.get(kind, "agent_id"))
    return f"{kind} {name}" if name else kind


def audit_list(ctx: Context) -> int:
    client = ctx.client("bridge")
    events, token = paged(
        ctx,
        lambda size, token: client.list_audit(
            agent_id=ctx.args.agent, action=ctx.args.action, page_size=size, page_token=token
        ),
        "events",
    )
    if ctx.json:
        ctx.print_json({"events": [to_dict(event) for event in events], "next_page_token": token})
        return EXIT_OK
    rows = [(e.at, e.action, _actor(e), _target(e), e.target.get("agent_id"), e.request_id) for e in events]
    output.table(("at", "action", "actor", "target", "target_agent", "request_id"), rows, ctx.out)
    return EXIT_OK
