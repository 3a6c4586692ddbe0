"""One audited change: the unit every write of the service goes through.

``apply(principal, reads, work)`` runs ``work`` in a Firestore transaction
whose single read fetches, together, the documents the change names, the
settings document and the documents the principal's credential stands on. It
re-checks that credential (``credentials.confirm_standing``: no write lands
after the revoke or disable that answered first), hands ``work`` a ``Change``
to read and write through, and commits only if every change that wrote
something also recorded its audit event: a write without its event is a bug,
and nothing of it lands.

Each event joins its chain (``audit_chain``) when the work is done: the heads
of the chains the change could name up front (the caller's own agent or user,
every agent or user it reads) come with the first read; any other costs one
more read; every head is written once, with the change.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from shared import allowlist, audit, audit_chain, clock, credentials, errors, records, store
from shared.principal import Principal

T = TypeVar("T")


class Change:
    """What one change read, what it writes, and its audit events, inside one transaction."""

    def __init__(self, txn: store.Transaction, principal: Principal, documents: dict[str, Any]) -> None:
        self._txn = txn
        self._principal = principal
        self._documents = documents
        self.now: datetime = clock.now()
        self.settings: Mapping[str, int] = allowlist.effective(documents[records.SETTINGS_PATH])
        self.writes = 0
        self.events = 0
        self.notes = 0
        self._events: list[records.AuditEventRecord] = []  # linked to their chains by ``seal``
        # Writes wait for ``seal`` (copied as they stand when made): the library refuses a read after a
        # write, and a chain head may still need reading once the work is done.
        self._writes: list[tuple[str, str, dict[str, Any] | None]] = []

    def __getitem__(self, path: str) -> Any:
        """A document read at the start of the change (None if absent); only paths named in ``reads``."""
        return self._documents[path]

    def read(self, paths: list[str]) -> None:
        """Read more documents in the same transaction, before any write: for a change whose second set
        of documents is named only by the first (a refresh family names its user and grant)."""
        if self.writes or self.events or self.notes:
            raise AssertionError("a transaction reads before it writes")
        named = [path for path in dict.fromkeys(paths) if path not in self._documents]
        self._documents.update(zip(named, self._txn.get_many(named), strict=True))

    def note(self, path: str, data: Mapping[str, Any]) -> None:
        """Bookkeeping that changes no identity state (a poll's time, a count of wrong codes): written
        with the change, audited by no event, and never counted as the change's writes."""
        self._writes.append(("set", path, copy.deepcopy(dict(data))))
        self.notes += 1

    def create(self, path: str, data: Mapping[str, Any]) -> None:
        self._writes.append(("create", path, copy.deepcopy(dict(data))))
        self.writes += 1

    def set(self, path: str, data: Mapping[str, Any]) -> None:
        self._writes.append(("set", path, copy.deepcopy(dict(data))))
        self.writes += 1

    def delete(self, path: str) -> None:
        self._writes.append(("delete", path, None))
        self.writes += 1

    def record(self, action: str, target: dict[str, Any]) -> None:
        """Append the change's audit event (an event may also stand alone: an integrity failure)."""
        event = audit.new_event(
            action, self._principal, target, at=self.now, retention_days=self.settings["audit_retention_days"]
        )
        self._events.append(event)
        self.events += 1

    def adopt(self, event: records.AuditEventRecord, old_path: str) -> None:
        """Move an event written before chains to its spread ID and its chain (the migration)."""
        self._writes.append(("delete", old_path, None))
        self._events.append(event)
        self.events += 1

    def seal(self) -> None:
        """Write what the work wrote, then link its events to their chains in the order recorded and
        write them and the chains' heads."""
        chains = dict.fromkeys(records.audit_chain_path(event["chain"]) for event in self._events)
        unread = [path for path in chains if path not in self._documents]
        if unread:  # a chain no one could name before the work ran: one more read
            self._documents.update(zip(unread, self._txn.get_many(unread), strict=True))
        for operation, path, data in self._writes:
            if operation == "delete":
                self._txn.delete(path)
            elif operation == "create":
                self._txn.create(path, data or {})
            else:
                self._txn.set(path, data or {})
        heads: dict[str, records.AuditChainRecord | None] = {path: self._documents[path] for path in chains}
        for event in self._events:
            path = records.audit_chain_path(event["chain"])
            heads[path] = audit_chain.link(event, heads[path])
            self._txn.create(records.audit_event_path(event["event_id"]), event)
        for path, head in heads.items():
            if head is not None:  # every chain here took an event: never None
                self._txn.set(path, dict(head))


def apply(
    principal: Principal,
    reads: Sequence[str],
    work: Callable[[Change], T],
    *,
    refused: Callable[[], errors.ApiError] | None = None,
) -> T:
    """Run ``work`` as one audited change by ``principal``; return what it returns.

    ``reads`` are the documents ``work`` reads (through ``change[path]``); they, the settings and
    the credential's own documents are read in one round trip at the start of the transaction.
    ``refused`` makes the error a fallen credential answers (``invalid_client`` at the OAuth
    endpoints, where the principal is a client still to be authenticated); ``401`` by default.
    """
    standing = principal.standing_paths()
    heads = audit_chain.head_paths(principal, [*reads, *standing])
    named = list(dict.fromkeys([*reads, records.SETTINGS_PATH, *standing, *heads]))

    def run(txn: store.Transaction) -> T:
        documents = dict(zip(named, txn.get_many(named), strict=True))
        try:
            credentials.confirm_standing(principal, documents)
        except errors.Unauthenticated:
            if refused is None:
                raise
            raise refused() from None
        change = Change(txn, principal, documents)
        result = work(change)
        if change.writes and not change.events:
            raise errors.Internal()  # a change without its audit event: refuse to commit it
        change.seal()
        return result

    return store.transact(run)
