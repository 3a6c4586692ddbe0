"""agentpack audit list (through the service), and audit verify and audit migrate (straight in the datastore,
like reseal: FIRESTORE_EMULATOR_HOST, or Google credentials)."""

from __future__ import annotations

import dataclasses

from agentpack.cli import output
from agentpack.cli.context import EXIT_FAILED, EXIT_OK, Context, datastore_work, paged
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


def audit_verify(ctx: Context) -> int:
    """Walk every audit chain in the datastore; exit 1 naming each chain's first break."""
    from shared import audit_chain, clock

    def work() -> int:
        report = audit_chain.verify(clock.now())
        if ctx.json:
            ctx.print_json({"whole": report.whole, **dataclasses.asdict(report)})
        else:
            for finding in report.findings:
                print(finding, file=ctx.out)
            state = "whole" if report.whole else f"{len(report.findings)} broken"
            counts = f"{report.chains} chains, {report.events} events, {report.expired} expired"
            print(f"{state}: {counts}", file=ctx.out)
        return EXIT_OK if report.whole else EXIT_FAILED

    return datastore_work(work, ctx)


def audit_migrate(ctx: Context) -> int:
    """Move events written before chains to spread IDs and their chains (resumable; a second run changes nothing)."""
    from shared import audit_migration

    def progress(done: audit_migration.Progress) -> None:
        print(f"progress: {done.seen} events seen, {done.moved} moved; last {done.last}", file=ctx.out, flush=True)

    def work() -> int:
        done = audit_migration.migrate(progress)
        print(f"done: {done.seen} events seen, {done.moved} moved to their chains", file=ctx.out)
        return EXIT_OK

    return datastore_work(work, ctx)
