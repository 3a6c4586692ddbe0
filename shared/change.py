"""One audited change: the unit every write of the service goes through.

``apply(principal, reads, work)`` runs ``work`` in a Firestore transaction
whose single read fetches, together, the documents the change names, the
settings document and the documents the principal's credential stands on. It
re-checks that credential (``credentials.confirm_standing``: no write lands
after the revoke or disable that answered first), hands ``work`` a ``Change``
to read and write through, and commits only if every change that wrote
something also recorded its audit event: a write without its event is a bug,
and nothing of it lands.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from shared import allowlist, audit, clock, credentials, errors, records, store
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
        self._txn.set(path, dict(data))
        self.notes += 1

    def create(self, path: str, data: Mapping[str, Any]) -> None:
        self._txn.create(path, dict(data))
        self.writes += 1

    def set(self, path: str, data: Mapping[str, Any]) -> None:
        self._txn.set(path, dict(data))
        self.writes += 1

    def delete(self, path: str) -> None:
        self._txn.delete(path)
        self.writes += 1

    def record(self, action: str, target: dict[str, Any]) -> None:
        """Append the change's audit event (an event may also stand alone: an integrity failure)."""
        event = audit.new_event(
            action, self._principal, target, at=self.now, retention_days=self.settings["audit_retention_days"]
        )
        self._txn.create(records.audit_event_path(event["event_id"]), event)
        self.events += 1


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
    named = list(dict.fromkeys([*reads, records.SETTINGS_PATH, *principal.standing_paths()]))

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
        return result

    return store.transact(run)
