"""Watching the reads a request makes, at ``store.start_read`` (observation only: the real read runs)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from shared import store


class Reads:
    """The reads a request makes, observed at the store (observation only): every read, ``get_many``'s
    too, is started by ``start_read`` and collected by its ``result()``."""

    def __init__(self) -> None:
        self.events: list[tuple[str, list[str]]] = []

    def clear(self) -> None:
        self.events.clear()

    def round_trips(self) -> int:
        """Reads in flight together count once: a new round trip starts with a read after a collection."""
        trips, collected = 0, True
        for kind, _ in self.events:
            if kind == "start" and collected:
                trips, collected = trips + 1, False
            elif kind == "collect":
                collected = True
        return trips

    def sizes(self) -> list[tuple[str, int]]:
        """Each start and collection, with the number of documents of its read."""
        return [(kind, len(paths)) for kind, paths in self.events]

    def documents(self) -> set[str]:
        return {path for kind, paths in self.events if kind == "start" for path in paths}


def watch_reads(monkeypatch: pytest.MonkeyPatch) -> Reads:
    reads = Reads()
    real_start = store.start_read

    class Started:
        def __init__(self, paths: list[str], **options: bool) -> None:
            self.pending, self.paths = real_start(paths, **options), list(paths)
            reads.events.append(("start", self.paths))

        def result(self) -> list[Any]:
            reads.events.append(("collect", self.paths))
            return self.pending.result()

        def __enter__(self) -> Any:
            return self

        def __exit__(self, *_: object) -> None:
            self.pending.cancel()

    monkeypatch.setattr(store, "start_read", Started)
    return reads


def watch_transaction_reads(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The paths of each read made inside a transaction (``store.Transaction.get_many``), in order
    (observation only: the real read runs)."""
    reads: list[list[str]] = []
    real = store.Transaction.get_many

    def recorded(self: store.Transaction, paths: Sequence[str]) -> list[Any]:
        reads.append(list(paths))
        return real(self, paths)

    monkeypatch.setattr(store.Transaction, "get_many", recorded)
    return reads
