"""Moving audit events written before chains (IDs ``evt_<13 ms digits><10 random>``) to spread IDs and
their chains.

Old events are taken in the order of their IDs, which begin with the time in milliseconds (finer than
``at``, which is whole seconds). Each batch is one change: the old documents and the heads of their
chains are read, each event is created under a new random ID with ``logged_at`` (from its old ID),
``shard`` and ``chain``, linked after its chain's head, and its old document is deleted, all in one
transaction. An interrupted run leaves every event either old or moved, so running again carries on
from the first old event left; a run with nothing left changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared import audit_chain, change, ids, records, store
from shared.principal import BRIDGE

BATCH = 100  # two writes an event and a head a chain: well under a commit's 500


@dataclass
class Progress:
    seen: int = 0  # documents scanned
    moved: int = 0  # old events moved to their chains
    last: str | None = None  # the last document scanned (for a progress line)


def is_old(event_id: str, event: dict[str, Any]) -> bool:
    return ids.OLD_EVENT_ID.fullmatch(event_id) is not None and "chain" not in event


def _moved(old_id: str, old: dict[str, Any], event_id: str) -> records.AuditEventRecord:
    actor, target = dict(old.get("actor") or {}), dict(old.get("target") or {})
    action = str(old.get("action", ""))
    millis = int(old_id[len("evt_") : len("evt_") + 13])
    return {
        "event_id": event_id,
        "at": old["at"],
        "category": str(old.get("category", "auth")),
        "action": action,
        "actor": actor,
        "target": target,
        "request_id": str(old.get("request_id", "")),
        "subjects": list(old.get("subjects") or []),
        "expire_at": old["expire_at"],
        "logged_at": datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=millis),
        **audit_chain.unlinked(event_id, action, actor, target),
    }


def _move(batch: list[tuple[str, dict[str, Any]]]) -> int:
    """Move one batch (in ID order) in one change; events another run moved meanwhile are skipped."""
    paths = [records.audit_event_path(old_id) for old_id, _ in batch]
    fresh = [ids.new_event_id() for _ in batch]
    named = [(e.get("action", ""), e.get("actor") or {}, e.get("target") or {}) for _, e in batch]
    chains = [audit_chain.chain_of(*n, event_id) for n, event_id in zip(named, fresh, strict=True)]
    heads = [records.audit_chain_path(chain) for chain in dict.fromkeys(chains)]

    def work(c: change.Change) -> int:
        moved = 0
        for (old_id, _), path, event_id in zip(batch, paths, fresh, strict=True):
            old = c[path]
            if old is None or not is_old(old_id, old):
                continue
            c.adopt(_moved(old_id, old, event_id), path)
            moved += 1
        return moved

    return change.apply(BRIDGE, [*paths, *heads], work)  # each event keeps its own request_id


def migrate(report: Callable[[Progress], None], page_size: int = BATCH) -> Progress:
    """Move every old event, a batch at a time, calling ``report`` after each page."""
    progress = Progress()
    while True:
        page = store.query(records.AUDIT_EVENTS, after_id=progress.last, limit=page_size)
        old = [(event_id, event) for event_id, event in page if is_old(event_id, event)]
        if old:
            progress.moved += _move(old)
        progress.seen += len(page)
        if page:
            progress.last = page[-1][0]
            report(progress)
        if len(page) < page_size:
            return progress
