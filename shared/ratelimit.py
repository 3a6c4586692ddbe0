"""Counting requests per key over sliding windows, in Firestore, so a limit holds across function instances.

A ``Limit`` allows ``most`` requests of one key (a client address, a user) in any window of
``window_seconds``. Requests are counted in buckets of ``bucket_seconds`` (the window slides one
bucket at a time), and each bucket is split into ``shards`` documents: a request adds one to a
random shard, so a burst spreads over them and no counter document takes more than about one
sustained write a second. A counter is named by a hash of the limit and the key first, then the
bucket and the shard (``records.rate_counter_path``): the names written at one moment spread over
the key range instead of rising with time. Each carries ``expire_at``, for Firestore's TTL policy.

Reading a window is one batched read of its bucket and shard documents; a refused request
writes nothing. Nothing is kept in memory: every instance counts the same requests.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared import clock, errors, records, store
from shared.records import RateCounterRecord


@dataclass(frozen=True)
class Limit:
    name: str  # names the counters apart from another limit's for the same key
    most: int  # requests allowed in any window
    window_seconds: int
    bucket_seconds: int
    shards: int

    def __post_init__(self) -> None:
        if self.window_seconds % self.bucket_seconds or self.most < 1 or self.shards < 1:
            raise ValueError("a window is a whole number of buckets, and a limit allows something")

    @property
    def buckets(self) -> int:
        return self.window_seconds // self.bucket_seconds

    def _digest(self, key: str) -> str:
        return hashlib.sha256(f"{self.name}\x00{key}".encode()).hexdigest()[:32]

    def _bucket(self, now: datetime) -> int:
        return int(now.timestamp()) // self.bucket_seconds

    def paths(self, key: str, now: datetime) -> list[str]:
        """Every counter of the window that ends at ``now``, oldest bucket first: read them in one call."""
        digest, last = self._digest(key), self._bucket(now)
        first = last - self.buckets + 1
        return [
            records.rate_counter_path(digest, bucket, shard)
            for bucket in range(first, last + 1)
            for shard in range(self.shards)
        ]

    def refusal(self, key: str, now: datetime, documents: Mapping[str, Any]) -> errors.RateLimited | None:
        """``RateLimited`` (with the seconds until one more request fits) if the window is full, else None."""
        paths = self.paths(key, now)
        shards = self.shards
        totals = [sum(_count(documents[p]) for p in paths[i : i + shards]) for i in range(0, len(paths), shards)]
        excess = sum(totals) - self.most + 1  # how many counted requests must leave the window first
        if excess <= 0:
            return None
        left, first = 0, self._bucket(now) - self.buckets + 1
        for offset, total in enumerate(totals):
            left += total
            if left >= excess:  # this bucket leaves the window when the bucket a window after it begins
                leaves_at = (first + offset + self.buckets) * self.bucket_seconds
                return errors.RateLimited(retry_after=max(1, leaves_at - int(now.timestamp())))
        raise AssertionError("unreachable: the excess is within the totals")

    def next_counter(self, key: str, now: datetime) -> tuple[str, datetime]:
        """The counter a request made at ``now`` adds one to (a random shard), and when it may be deleted."""
        bucket = self._bucket(now)
        path = records.rate_counter_path(self._digest(key), bucket, secrets.randbelow(self.shards))
        ends = datetime.fromtimestamp((bucket + 1) * self.bucket_seconds, UTC)
        return path, ends + timedelta(seconds=self.window_seconds)


def _count(document: RateCounterRecord | None) -> int:
    return document["count"] if document is not None else 0


def take(limit: Limit, key: str) -> None:
    """Count one request of ``key``, or refuse it (``RateLimited``, nothing written) if its window is full.

    One batched read of the window, then one blind increment of a random shard (no transaction):
    requests racing at the very edge of the limit may each pass, so the limit holds to within the
    requests in flight at once."""
    now = clock.now()
    paths = limit.paths(key, now)
    documents = dict(zip(paths, store.get_many(paths), strict=True))
    refused = limit.refusal(key, now, documents)
    if refused is not None:
        raise refused
    path, expire_at = limit.next_counter(key, now)
    store.increment(path, "count", {"expire_at": expire_at})


def address_key(address: str) -> str:
    """What one client is counted as: an IPv4 address; an IPv6 /64 (one subscriber's usual block, whose
    addresses it may change at will); anything unparsable as itself."""
    try:
        parsed = ipaddress.ip_address(address.strip())
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)
