"""agentpack authz: write, read and check relationship tuples."""

from __future__ import annotations

import json
from typing import Any

from agentpack.cli import output
from agentpack.cli.context import EXIT_FAILED, EXIT_OK, Context, UsageError
from agentpack.cli.files import read_input
from agentpack.models import RelationTuple, to_dict

RELATIONS = ("owner", "editor", "viewer")


def _tuples(data: Any, where: str) -> list[RelationTuple]:
    if not isinstance(data, list):
        raise UsageError(f"{where}: a list of {{resource, relation, subject}} objects")
    found = []
    for item in data:
        if not isinstance(item, dict) or set(item) != {"resource", "relation", "subject"}:
            raise UsageError(f"{where}: each tuple is an object with exactly resource, relation and subject")
        if not all(isinstance(value, str) for value in item.values()):
            raise UsageError(f"{where}: resource, relation and subject are strings")
        found.append(RelationTuple(item["resource"], item["relation"], item["subject"]))
    return found


def _from_file(path: str) -> tuple[list[RelationTuple], list[RelationTuple]]:
    """``[tuple, ...]`` (all writes) or ``{"writes": [...], "deletes": [...]}``."""
    try:
        data = json.loads(read_input(path, "tuples (JSON): "))
    except (UnicodeDecodeError, ValueError):
        raise UsageError(f"--file {path}: not JSON") from None
    if isinstance(data, list):
        return _tuples(data, "--file"), []
    if not isinstance(data, dict) or not set(data) <= {"writes", "deletes"}:
        raise UsageError('--file: a list of tuples, or {"writes": [...], "deletes": [...]}')
    return _tuples(data.get("writes", []), "--file writes"), _tuples(data.get("deletes", []), "--file deletes")


def authz_write(ctx: Context) -> int:
    writes: list[RelationTuple] = []
    deletes: list[RelationTuple] = []
    if ctx.args.file is not None:
        writes, deletes = _from_file(ctx.args.file)
    for relation in RELATIONS:
        for resource, subject in getattr(ctx.args, relation) or ():
            writes.append(RelationTuple(resource, relation, subject))
    for resource, relation, subject in ctx.args.delete or ():
        deletes.append(RelationTuple(resource, relation, subject))
    if not writes and not deletes:
        raise UsageError("nothing to write: give --owner, --editor, --viewer, --delete or --file")
    answer = ctx.client("any").write_relations(writes, deletes, tenant_id=ctx.args.tenant)
    return ctx.show(answer)


def authz_read(ctx: Context) -> int:
    answer = ctx.client("any").read_relations(ctx.args.resource, tenant_id=ctx.args.tenant)

    def human() -> None:
        rows = [(t.resource, t.relation, t.subject) for t in answer.tuples]
        output.table(("resource", "relation", "subject"), rows, ctx.out)

    return ctx.show(answer, human)


def authz_check(ctx: Context) -> int:
    """Prints allowed or denied; exit 0 for allowed, 1 for denied."""
    token = None
    if ctx.args.token is not None:
        if ctx.args.subject is not None or ctx.args.on_behalf_of is not None:
            raise UsageError("--token: the token names the subject; leave out --subject and --on-behalf-of")
        try:
            token = read_input(ctx.args.token, "access token: ").decode("ascii").strip()
        except UnicodeDecodeError:
            raise UsageError("--token: not an access token (not ASCII)") from None
        if not token:
            raise UsageError("--token: empty")
    elif ctx.args.subject is None:
        raise UsageError("give --subject (or --token FILE, - for standard input)")
    client = ctx.client("any")
    answer = client.check(
        ctx.args.action,
        ctx.args.resource,
        subject=ctx.args.subject,
        on_behalf_of=ctx.args.on_behalf_of,
        token=token,
        tenant_id=ctx.args.tenant,
    )
    if ctx.json:
        ctx.print_json(to_dict(answer))
    else:
        print("allowed" if answer.allowed else "denied", file=ctx.out)
    return EXIT_OK if answer.allowed else EXIT_FAILED
