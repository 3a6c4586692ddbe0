"""Tamper-evident audit chains: which chain an event joins, how it is hashed and linked, and how a chain
is verified.

Every event belongs to one chain, named by the first agent or user ID it names (target agent, target user,
the agent acted for, the acting agent, the acting user), ``settings`` for ``setting.set``, else
``project.<n>`` (one of ``PROJECT_CHAINS`` project chains, by a hash of the event's ID). Bare IDs, with no
``kind:`` prefix: a colon in a document ID trips the REST API. Along its chain an event carries ``seq``
(1, 2, …), ``prev_hash`` (the previous event's hash, ``GENESIS`` for seq 1), ``prev_at`` (the previous
event's ``at``) and ``hash``: SHA-256 over its canonical encoding. A head document per chain
(``audit_chains/{chain}``) holds the last event's seq, hash, ID and time; it is read and written in the
transaction of the change that appends (``change.Change``), so changes of different subjects never touch
one document. docs/audit.md says what this proves and what it cannot.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from shared import allowlist, ids, records, store
from shared.principal import Principal

# Listing reads every shard's index range in one `in` filter (at most 30 values). 10,000 audit writes a
# second over 30 ranges is about 333 a second each, under Firestore's ~500 a second per key range.
SHARDS = 30
GENESIS = "0" * 64  # the prev_hash of a chain's first event
SETTINGS_CHAIN = "settings"
# Events that name no agent and no user (the bridge's relation writes, a public caller's leak reports) go
# to one of PROJECT_CHAINS chains, by a hash of their ID: one chain of them all would be one hot head
# document. 128 keep each head near a write every six seconds at 20 such events a second.
PROJECT_CHAIN = "project"
PROJECT_CHAINS = 128
# No event lives shorter than the smallest retention the settings allow: a missing event younger than
# that was removed, not expired.
MIN_RETENTION = timedelta(days=allowlist.ALLOW_LIST["audit_retention_days"].minimum)
UNHASHED = ("hash", "expire_at")  # the hash itself, and the TTL field (retention may be changed by hand)
PAGE = 500


def chain_of(action: str, actor: dict[str, Any], target: dict[str, Any], event_id: str) -> str:
    """The chain an event joins: the first agent or user it names, ``settings``, or ``project.<n>``."""
    if action == "setting.set":
        return SETTINGS_CHAIN
    named = (
        target.get("agent_id"),
        target.get("user_id"),
        actor.get("on_behalf_of"),
        actor.get("agent_id"),
        actor.get("user_id"),
    )
    for value in named:
        if isinstance(value, str) and (ids.is_agent_id(value) or ids.is_user_id(value)):
            return value  # the ID's prefix says whether an agent's or a user's
    return f"{PROJECT_CHAIN}.{_spread(event_id, 8) % PROJECT_CHAINS}"


def unlinked(
    event_id: str, action: str, actor: dict[str, Any], target: dict[str, Any]
) -> records.AuditEventChainFields:
    """The chain fields of an event not yet linked: its shard and its chain, and the place (``seq``,
    ``prev_hash``, ``prev_at``, ``hash``) that ``link`` fills when its change is sealed."""
    return {
        "shard": shard_of(event_id),
        "chain": chain_of(action, actor, target, event_id),
        "seq": 0,
        "prev_hash": "",
        "prev_at": None,
        "hash": "",
    }


def shard_of(event_id: str) -> int:
    return _spread(event_id, 0) % SHARDS


def _spread(event_id: str, offset: int) -> int:
    """Eight bytes of the ID's SHA-256 from ``offset``: the shard and the project chain use apart ones."""
    return int.from_bytes(hashlib.sha256(event_id.encode()).digest()[offset : offset + 8], "big")


def head_paths(principal: Principal, reads: Iterable[str]) -> list[str]:
    """The chain heads a change can name before it runs: the caller's own agent and user, every agent
    or user document it reads, and the settings chain when it reads the settings by name."""
    chains = [name for name in (principal.actor_id, principal.agent_id, principal.user_id) if name]
    for path in reads:
        collection, _, name = path.partition("/")
        if (collection == records.AGENTS and ids.is_agent_id(name)) or (
            collection == records.USERS and ids.is_user_id(name)
        ):
            chains.append(name)
        elif path == records.SETTINGS_PATH:
            chains.append(SETTINGS_CHAIN)
    return [records.audit_chain_path(chain) for chain in dict.fromkeys(chains)]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def canonical(event: dict[str, Any] | records.AuditEventRecord) -> bytes:
    """Sorted-key compact JSON (UTF-8) of every stored field but ``UNHASHED``; times as RFC 3339 with
    microseconds."""
    fields = {name: _plain(value) for name, value in event.items() if name not in UNHASHED}
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest(event: dict[str, Any] | records.AuditEventRecord) -> str:
    return hashlib.sha256(canonical(event)).hexdigest()


def link(event: records.AuditEventRecord, head: records.AuditChainRecord | None) -> records.AuditChainRecord:
    """Append ``event`` to its chain after ``head`` (None: a new chain): fill its place and hash, and
    return the chain's new head."""
    event["seq"] = head["seq"] + 1 if head else 1
    event["prev_hash"] = head["hash"] if head else GENESIS
    event["prev_at"] = head["at"] if head else None
    event["hash"] = digest(event)
    return {
        "chain": event["chain"],
        "seq": event["seq"],
        "hash": event["hash"],
        "event_id": event["event_id"],
        "at": event["at"],
    }


# ---------------------------------------------------------------- verification

Kind = Literal["altered", "removed", "reordered", "unchained"]


@dataclass(frozen=True)
class Finding:
    """The first break of one chain: what happened, at which place, and to which event (if one is left)."""

    chain: str
    kind: Kind
    seq: int | None
    event_id: str | None
    detail: str

    def __str__(self) -> str:
        where = f"event {self.event_id}" if self.event_id else "no event left"
        place = f" (seq {self.seq})" if self.seq is not None else ""
        return f"chain {self.chain}: {self.kind}: {where}{place}: {self.detail}"


@dataclass
class Report:
    chains: int = 0
    events: int = 0
    expired: int = 0  # events missing where retention may have removed them
    findings: list[Finding] = field(default_factory=list)

    @property
    def whole(self) -> bool:
        return not self.findings


@dataclass
class ChainCheck:
    events: int = 0
    expired: int = 0
    finding: Finding | None = None


def _written_at(event: dict[str, Any], rest: Iterator[dict[str, Any]]) -> int | None:
    """The seq an event whose hash fails was written at, if another event's place reproduces its hash
    (two events' places swapped). The first failing event moved to an earlier place, so its own place is
    held by an event further on."""
    for other in rest:
        for prev_at in (other.get("prev_at"), event.get("prev_at")):
            moved = {**event, "seq": other.get("seq"), "prev_hash": other.get("prev_hash"), "prev_at": prev_at}
            if digest(moved) == event.get("hash"):
                return int(other["seq"])
    return None


def check_chain(
    chain: str,
    head: dict[str, Any] | None,
    events: Iterable[dict[str, Any]],
    now: datetime,
    reread: Callable[[], dict[str, Any] | None] | None = None,
) -> ChainCheck:
    """Walk one chain's events in seq order and stop at its first break.

    ``reread`` fetches the head again when events past it turn up (the service kept writing).
    A missing stretch counts as expired, not removed, only if its newest event is older than
    ``MIN_RETENTION``: its time is the next event's ``prev_at``, or the head's ``at`` at the end.
    """
    result = ChainCheck()
    stream = iter(events)
    previous: dict[str, Any] | None = None

    def broken(kind: Kind, seq: int | None, event_id: str | None, detail: str) -> ChainCheck:
        result.finding = Finding(chain, kind, seq, event_id, detail)
        return result

    for event in stream:
        result.events += 1
        seq, event_id = event.get("seq"), event.get("event_id")
        expected = previous["seq"] + 1 if previous is not None else 1
        if not isinstance(seq, int) or seq < expected:
            after = f"event {previous['event_id']} (seq {previous['seq']})" if previous else "the chain's start"
            place = seq if isinstance(seq, int) else None
            return broken("reordered", place, event_id, f"its seq repeats or goes back after {after}")
        if digest(event) != event.get("hash"):
            written = _written_at(event, stream)
            if written is not None:
                return broken("reordered", seq, event_id, f"it was written at seq {written}")
            return broken("altered", seq, event_id, "its hash does not match its contents")
        if seq > expected:
            newest_missing = event.get("prev_at")
            if not isinstance(newest_missing, datetime) or newest_missing + MIN_RETENTION > now:
                missing = f"seq {expected}" if seq == expected + 1 else f"seq {expected} to {seq - 1}"
                return broken("removed", expected, None, f"{missing} missing, before event {event_id} (seq {seq})")
            result.expired += seq - expected
        elif event.get("prev_hash") != (previous["hash"] if previous is not None else GENESIS):
            before = f"event {previous['event_id']} (seq {previous['seq']})" if previous else "the chain's start"
            return broken("reordered", seq, event_id, f"its prev_hash does not match {before}")
        previous = event
    if head is None:
        last = previous or {}
        return broken("removed", last.get("seq"), last.get("event_id"), "the chain's head is missing")
    last_seq = previous["seq"] if previous is not None else 0
    if last_seq > int(head["seq"]) and reread is not None:
        fresh = reread()  # events past the head read first: written since, or not by the service
        if fresh is not None and int(fresh["seq"]) > last_seq:
            return result  # written since, after the last event walked: nothing to compare
        head = fresh or head
    head_seq, head_at = int(head["seq"]), head["at"]
    if head_seq > last_seq:
        if head_at + MIN_RETENTION > now:
            missing = f"seq {last_seq + 1}" if head_seq == last_seq + 1 else f"seq {last_seq + 1} to {head_seq}"
            return broken("removed", head_seq, head["event_id"], f"{missing} missing at the end (the head names it)")
        result.expired += head_seq - last_seq
    elif previous is not None and (head["hash"] != previous["hash"] or head["event_id"] != previous["event_id"]):
        return broken("altered", previous["seq"], previous["event_id"], "the chain's head names another last event")
    return result


def _events_of(chain: str) -> Iterator[dict[str, Any]]:
    """A chain's events in (seq, ID) order."""
    after: Sequence[Any] | None = None
    while True:
        page = store.query_ordered(
            records.AUDIT_EVENTS, equals={"chain": chain}, order_by=("seq", "event_id"), after=after, limit=PAGE
        )
        yield from page
        if len(page) < PAGE:
            return
        after = (page[-1]["seq"], page[-1]["event_id"])


def _head_reader(chain: str) -> Callable[[], dict[str, Any] | None]:
    return lambda: store.get_many([records.audit_chain_path(chain)])[0]


def _pages(collection: str) -> Iterator[tuple[str, Any]]:
    after: str | None = None
    while True:
        page = store.query(collection, after_id=after, limit=PAGE)
        yield from page
        if len(page) < PAGE:
            return
        after = page[-1][0]


def verify(now: datetime) -> Report:
    """Walk every chain from its head; then, if fewer events were walked than are stored, find the ones
    in no known chain (a removed head, or events never chained)."""
    report = Report()
    stored = store.count(records.AUDIT_EVENTS)  # counted first: every event counted is in a head read later
    known: set[str] = set()
    for chain, head in _pages(records.AUDIT_CHAINS):
        known.add(chain)
        checked = check_chain(chain, head, _events_of(chain), now, _head_reader(chain))
        _tally(report, checked)
    if report.events >= stored:
        return report
    orphans: dict[str, list[dict[str, Any]]] = {}
    unchained: list[str] = []
    for event_id, event in _pages(records.AUDIT_EVENTS):
        chain = event.get("chain")
        if not isinstance(chain, str):
            unchained.append(event_id)
        elif chain not in known:
            orphans.setdefault(chain, []).append(event)
    for chain, events in sorted(orphans.items()):
        events.sort(key=lambda e: (e.get("seq") if isinstance(e.get("seq"), int) else -1, e.get("event_id")))
        _tally(report, check_chain(chain, None, events, now))
    if unchained:
        report.events += len(unchained)
        detail = f"{len(unchained)} event(s) carry no chain (written before chains: run agentpack audit migrate)"
        report.findings.append(Finding("-", "unchained", None, unchained[0], detail))
    return report


def _tally(report: Report, checked: ChainCheck) -> None:
    report.chains += 1
    report.events += checked.events
    report.expired += checked.expired
    if checked.finding is not None:
        report.findings.append(checked.finding)
