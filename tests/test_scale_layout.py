"""Issue 13: the data layout has no hot spot, checked by simulation (no datastore, a few seconds).

A realistic mix of 100,000 writing requests, at the rates of the fleet docs/scale.md states, is
turned into the documents each writes and the values each stores, by the service's own ID and path
functions (``shared/ids.py``, ``shared/records.py``, ``audit.new_event``). Two checks follow:

- **key ranges**: for every collection group, the document names, and the entries of every index
  that ``firestore.indexes.json`` leaves on (single-field, minus exemptions, and composite), are
  placed in the key space the collection already holds (a day of the same writers), and bucketed
  in hundredths. A minute's writes must not crowd one hundredth: Firestore splits a hot key range
  only so far, and an ever-rising key (a time-first ID, an indexed timestamp) writes at its tail;
- **documents**: no document takes more than one write a second, on average over the simulated window.

Each collection's writer is one small function in ``REQUESTS``; a new writer is one line there.
The self-tests show both checks flag the old ``evt_<ms><random>`` event IDs and a global counter; two
more tests hold ``firestore.indexes.json`` to the records (TTL policies) and to the queries (no exempted
field is filtered or ordered on).
"""

from __future__ import annotations

import ast
import bisect
import itertools
import json
import math
import random
import secrets
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import pytest

from shared import audit, clients, device_flow, ids, keys, leaks, principal, ratelimit, records
from tests.conftest import ROOT, forged_delegation_id, forged_device_key

INDEXES = json.loads((ROOT / "firestore.indexes.json").read_text())

AGENTS, USERS, TENANTS = 1_000_000, 10_000_000, 10  # the stated fleet
WINDOW_REQUESTS = 100_000
HISTORY_PER_KIND = 1_500  # each request kind's writes spread over the day before: the key space held
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC).timestamp()
BUCKETS = 100  # hundredths of a key space
SAMPLE = 3_000  # of a collection's writes in the window, placed in its key space (a share needs no more)
RANGE_BUDGET = 250.0  # writes a second into one hundredth: half the 500 Firestore allows a range of rising keys
MAX_DOCUMENT_RATE = 1.0  # sustained writes a second to one document


@dataclass(frozen=True)
class Write:
    """One document write: its path and the stored values an index would hold."""

    path: str
    values: Mapping[str, Any]

    @property
    def group(self) -> str:
        return self.path.split("/")[-2]  # the collection group: a subcollection's own name


class Fleet:
    """The agents, users and tenants requests come from: IDs made by the real functions, on first use."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self._agents: dict[int, str] = {}

    def agent(self) -> str:
        index = self.rng.randrange(AGENTS)
        if index not in self._agents:
            self._agents[index] = ids.new_agent_id()
        return self._agents[index]

    def user(self) -> str:
        return ids.user_id_of(f"firebase-uid-{self.rng.randrange(USERS)}")

    def tenant(self) -> str:
        return f"tenant-{self.rng.randrange(TENANTS)}"


def stamp(at: float) -> datetime:
    return datetime.fromtimestamp(at, UTC)


def event(action: str, at: float, agent_id: str | None = None, target: dict[str, Any] | None = None) -> list[Write]:
    """The change's audit event as ``audit.new_event`` makes it (the real event ID), and its chain's head.

    ``agent_id`` is the calling agent (None: the bridge key); ``target`` what the change names, as the
    domain code records it (by default the caller's own agent)."""
    request_id = "req_" + secrets.token_urlsafe(16)
    caller = (
        principal.Principal(kind="bridge", via="bridge_key", request_id=request_id)
        if agent_id is None
        else principal.Principal(
            kind="agent", via="device_key", agent_id=agent_id, actor_id=agent_id, request_id=request_id
        )
    )
    made = audit.new_event(
        action,
        caller,
        target if target is not None else {"kind": "x", "agent_id": agent_id},
        at=stamp(at),
        retention_days=400,
    )
    stored: dict[str, Any] = dict(made)
    head = {"seq": 1, "event_id": stored["event_id"], "at": stored["at"]}  # its chain's head moves too
    return [
        Write(records.audit_event_path(stored["event_id"]), stored),
        Write(records.audit_chain_path(stored["chain"]), head),
    ]


def spent(at: float) -> Write:
    """A client assertion's or DPoP proof's single-use record (named by a hash)."""
    digest = clients.spent_digest("client_assertion", "agt_…", secrets.token_urlsafe(16))  # agent, jti
    return Write(records.spent_assertion_path(digest), {"kind": "dpop_proof", "expire_at": stamp(at + 120)})


def key_record(agent_id: str, at: float) -> Write:
    key_id = ids.new_device_key_id(agent_id)
    t = stamp(at)
    return Write(
        records.device_key_path(agent_id, key_id),
        {
            "key_id": key_id,
            "agent_id": agent_id,
            "key_hash": keys.hash_key(forged_device_key(key_id)),
            "created_at": t,
            "expires_at": t + timedelta(days=30),
            "revoked_at": None,
            "replaces": None,
            "replaced_by": None,
            "kind": "secret",
        },
    )


def agent_record(agent_id: str, at: float, tenant: str) -> Write:
    t = stamp(at)
    return Write(
        records.agent_path(agent_id),
        {
            "agent_id": agent_id,
            "display_name": "agent",
            "tenant_id": tenant,
            "created_at": t,
            "disabled": False,
            "active_keys": {"dk_x": t + timedelta(days=30)},
            "scopes": ["read"],
        },
    )


def family(agent_id: str, at: float, tenant: str, family_id: str | None = None) -> Write:
    family_id = family_id or ids.new_family_id(agent_id, ids.new_device_key_id(agent_id))
    t = stamp(at)
    return Write(
        records.refresh_family_path(family_id),
        {
            "family_id": family_id,
            "client_id": agent_id,
            "sub": agent_id,
            "tenant_id": tenant,
            "scopes": ["read"],
            "created_at": t - timedelta(days=1),
            "current_hash": keys.hash_key(ids.random_base62(40)),
            "current_expires_at": t + timedelta(days=30),
            "spent_hashes": [keys.hash_key(ids.random_base62(40))],
            "revoked_at": None,
            "jkt": None,
            "expire_at": t + timedelta(days=30),
        },
    )


# ---------------------------------------------------------------- the writers, one per request kind


def token_client_credentials(f: Fleet, at: float) -> list[Write]:
    agent_id = f.agent()
    writes = [*event("token.issue", at, agent_id)]
    if f.rng.random() < 0.2:  # private_key_jwt or DPoP: a single-use record
        writes.append(spent(at))
    return writes


def token_refresh(f: Fleet, at: float) -> list[Write]:
    agent_id = f.agent()
    return [family(agent_id, at, f.tenant()), *event("token.refresh", at, agent_id)]


def token_jwt_bearer(f: Fleet, at: float) -> list[Write]:
    agent_id = f.agent()
    return [family(agent_id, at, f.tenant()), spent(at), *event("token.issue", at, agent_id)]


def token_revoke(f: Fleet, at: float) -> list[Write]:
    agent_id, jti = f.agent(), ids.random_base62(22)  # an access token's jti (access_tokens.new_claims)
    t = stamp(at)
    revoked = {"jti": jti, "client_id": agent_id, "revoked_at": t, "expire_at": t + timedelta(minutes=15)}
    return [Write(records.revoked_token_path(jti), revoked), *event("token.revoke", at, agent_id)]


def authz_check_dpop(f: Fleet, at: float) -> list[Write]:
    return [spent(at)]  # a check by a DPoP-bound access token spends its proof; other checks write nothing


def authz_write(f: Fleet, at: float) -> list[Write]:
    tenant, subject = f.tenant(), f"user:{f.user()}"
    tuples = [
        Write(
            records.relation_tuple_path(f"doc:{secrets.token_hex(8)}", "viewer", subject),
            {
                "tenant_id": tenant,
                "resource": "doc:x",
                "relation": "viewer",
                "subject": subject,
                "created_at": stamp(at),
            },
        )
        for _ in range(f.rng.randint(1, 3))
    ]
    # By the bridge key (an application's back end, naming the tenant): an event naming no agent or user.
    target = {"kind": "relations", "tenant_id": tenant, "written": len(tuples), "deleted": 0}
    return [*tuples, *event("relation.write", at, target=target)]


def secrets_put(f: Fleet, at: float) -> list[Write]:
    agent_id = f.agent()
    stored = {
        "agent_id": agent_id,
        "name": "db",
        "version": 2,
        "updated_at": stamp(at),
        "key_version": 1,
        "nonce": secrets.token_urlsafe(18),
        "ciphertext": secrets.token_urlsafe(96),
    }
    return [
        Write(records.secret_path(agent_id, f"name-{f.rng.randrange(20)}"), stored),
        *event("secret.put", at, agent_id),
    ]


def device_issue(f: Fleet, at: float) -> list[Write]:
    agent_id = f.agent()
    return [key_record(agent_id, at), agent_record(agent_id, at, f.tenant()), *event("device.issue", at, agent_id)]


def device_revoke(f: Fleet, at: float) -> list[Write]:
    agent_id = f.agent()
    return [key_record(agent_id, at), agent_record(agent_id, at, f.tenant()), *event("device.revoke", at, agent_id)]


def agents_create(f: Fleet, at: float) -> list[Write]:
    agent_id = ids.new_agent_id()
    tenant = f.tenant()
    target = {"kind": "agent", "agent_id": agent_id, "tenant_id": tenant}
    return [agent_record(agent_id, at, tenant), *event("agent.create", at, target=target)]


def delegate(f: Fleet, at: float) -> list[Write]:
    grantor, t = f.agent(), stamp(at)
    delegation_id = forged_delegation_id(grantor)
    stored = {
        "delegation_id": delegation_id,
        "from_agent": grantor,
        "to_agent": f.agent(),
        "tenant_id": f.tenant(),
        "scope": ["secrets/get"],
        "created_at": t,
        "expires_at": t + timedelta(hours=1),
        "revoked_at": None,
    }
    return [Write(records.delegation_path(delegation_id), stored), *event("delegation.grant", at, grantor)]


def users_create(f: Fleet, at: float) -> list[Write]:
    user_id = f.user()
    stored = {
        "user_id": user_id,
        "firebase_uid": secrets.token_hex(14),
        "tenant_id": f.tenant(),
        "display_name": None,
        "disabled": False,
        "created_at": stamp(at),
    }
    target = {"kind": "user", "user_id": user_id, "tenant_id": stored["tenant_id"]}
    return [Write(records.user_path(user_id), stored), *event("user.create", at, target=target)]


def users_delegate(f: Fleet, at: float) -> list[Write]:
    user_id, agent_id, t = f.user(), f.agent(), stamp(at)
    grant_id = ids.grant_id_of(user_id, agent_id)
    stored = {
        "grant_id": grant_id,
        "user_id": user_id,
        "agent_id": agent_id,
        "tenant_id": f.tenant(),
        "actions": ["read"],
        "created_at": t,
        "expires_at": t + timedelta(days=90),
        "revoked_at": None,
    }
    return [Write(records.user_grant_path(grant_id), stored), *event("user_delegation.grant", at, agent_id)]


def device_authorization(f: Fleet, at: float) -> list[Write]:
    agent_id, t = f.agent(), stamp(at)
    stored = {
        "user_code": "x",
        "client_id": agent_id,
        "tenant_id": f.tenant(),
        "created_at": t,
        "expires_at": t + timedelta(minutes=10),
        "next_poll_at": t,
        "status": "pending",
        "decided_at": None,
        "expire_at": t + timedelta(days=1, minutes=10),
    }
    path = records.device_authorization_path(device_flow.new_user_code())
    return [Write(path, stored), *event("device_authorization.start", at, agent_id)]


def activation_wrong_code(f: Fleet, at: float) -> list[Write]:
    t = stamp(at)
    failures = {"user_id": "x", "times": [t], "expire_at": t + timedelta(minutes=1)}
    return [Write(records.activation_failures_path(f.user()), failures)]


def capability_record(f: Fleet, at: float) -> list[Write]:
    jti, iat = ids.random_base62(22), int(at)
    stored = {
        "jti": jti,
        "sub": f.agent(),
        "scope": "secrets/get",
        "iat": iat,
        "exp": iat + 300,
        "kid": "k1",
        "recorded_at": stamp(at),
    }
    target = {"kind": "capability", "jti": jti, "agent_id": stored["sub"], "kid": "k1", "scope": "secrets/get"}
    return [Write(records.capability_path(jti), stored), *event("capability.record", at, target=target)]


def report_leak(f: Fleet, at: float) -> list[Write]:
    """``keys/report-leak``: one rate counter of the client's address (shared/ratelimit.py), then the leak."""
    address = f"198.51.{f.rng.randrange(256)}.{f.rng.randrange(256)}"
    path, expire_at = leaks.LIMIT.next_counter(ratelimit.address_key(address), stamp(at))
    return [Write(path, {"count": 1, "expire_at": expire_at})]


Writer = Callable[[Fleet, float], list[Write]]

# Requests a second, at the fleet's stated load (docs/scale.md): 1 million agents fetching a token every
# 15 minutes; 10 tenants each checking 1,000 times a second, a twentieth of it with DPoP-bound tokens.
REQUESTS: dict[str, tuple[float, Writer]] = {
    "oauth/token client_credentials": (1_111.0, token_client_credentials),
    "oauth/token refresh_token": (50.0, token_refresh),
    "oauth/token jwt-bearer": (10.0, token_jwt_bearer),
    "oauth/revoke": (5.0, token_revoke),
    "authz/check (DPoP)": (500.0, authz_check_dpop),
    "authz/write": (20.0, authz_write),
    "secrets/put": (20.0, secrets_put),
    "device/issue": (2.0, device_issue),
    "device/revoke": (2.0, device_revoke),
    "agents/create": (2.0, agents_create),
    "delegate": (2.0, delegate),
    "users/create": (2.0, users_create),
    "users/delegate": (2.0, users_delegate),
    "oauth/device_authorization": (2.0, device_authorization),
    "activate/lookup (wrong code)": (1.0, activation_wrong_code),
    "capability/record": (1.0, capability_record),
    "keys/report-leak": (1.0, report_leak),
}


# ---------------------------------------------------------------- the index model


def _exempt() -> set[tuple[str, str]]:
    return {(o["collectionGroup"], o["fieldPath"]) for o in INDEXES.get("fieldOverrides", []) if o["indexes"] == []}


def _composites() -> dict[str, list[list[dict[str, str]]]]:
    found: dict[str, list[list[dict[str, str]]]] = defaultdict(list)
    for index in INDEXES.get("indexes", []):
        found[index["collectionGroup"]].append(index["fields"])
    return found


def _order(value: Any) -> str:
    """A value as a string that sorts as Firestore orders values: null, booleans, numbers, timestamps, strings."""
    if value is None:
        return "0"
    if isinstance(value, bool):
        return f"1{int(value)}"
    if isinstance(value, int | float):
        return f"2{value + 1e12:024.6f}"
    if isinstance(value, datetime):
        return f"3{value.timestamp():020.6f}"
    return "4" + str(value)


def _flat(values: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(field path, value) of every indexed value: map fields by their subfields, arrays by element."""
    for name, value in values.items():
        path = prefix + name
        if isinstance(value, Mapping):
            yield from _flat(value, path + ".")
        elif isinstance(value, list):
            yield from ((path, element) for element in value)
        else:
            yield path, value


def index_entries(
    write: Write, exempt: set[tuple[str, str]], composites: Sequence[list[dict[str, str]]]
) -> Iterator[tuple[str, str]]:
    """(index name, entry key) of the entries one write makes; the document name is an index of its own."""
    group = write.group
    yield "__name__", write.path
    flat = list(_flat(write.values))
    for path, value in flat:
        if (group, path.split(".")[0]) not in exempt and (group, path) not in exempt:
            yield path, _order(value) + "\x00" + write.path
    for fields in composites:
        names = [f["fieldPath"] for f in fields if f["fieldPath"] != "__name__"]
        columns = [[v for p, v in flat if p == name] or [None] for name in names]
        for combination in itertools.product(*columns):
            yield "+".join(names), "\x00".join([*map(_order, combination), write.path])


# ---------------------------------------------------------------- simulation and the two checks


@dataclass
class Simulation:
    window_seconds: float
    window: list[tuple[float, Write]] = field(default_factory=list)
    history: list[Write] = field(default_factory=list)


def simulate(
    requests: Mapping[str, tuple[float, Writer]], count: int, history_per_kind: int, seed: int = 13
) -> Simulation:
    rng = random.Random(seed)
    fleet = Fleet(rng)
    names = list(requests)
    rates = [requests[n][0] for n in names]
    total = sum(rates)
    sim = Simulation(window_seconds=count / total)
    for name in names:  # the key space the collections already hold: the day before, every kind alike
        for _ in range(history_per_kind):
            sim.history += requests[name][1](fleet, NOW - rng.uniform(60, 86_400))
    for i, name in enumerate(rng.choices(names, weights=rates, k=count)):
        at = NOW + i / total
        sim.window += [(at, w) for w in requests[name][1](fleet, at)]
    return sim


Crowding = tuple[int, int, float, float]  # writes placed, in the hottest hundredth, the limit, that hundredth's rate


def crowding(sim: Simulation) -> dict[tuple[str, str], Crowding]:
    """For each (collection group, index): writes placed (a sample of the window's), how many fell in its
    hottest hundredth, the most chance would put there, and the writes a second that hundredth takes."""
    exempt, composites = _exempt(), _composites()
    held: dict[tuple[str, str], list[str]] = defaultdict(list)
    for write in sim.history:
        for index, key in index_entries(write, exempt, composites[write.group]):
            held[(write.group, index)].append(key)
    for space in held.values():
        space.sort()
    by_group: dict[str, list[Write]] = defaultdict(list)
    for _, write in sim.window:
        by_group[write.group].append(write)
    rng = random.Random(13)
    sample = [w for ws in by_group.values() for w in (rng.sample(ws, SAMPLE) if len(ws) > SAMPLE else ws)]
    buckets: dict[tuple[str, str], Counter[int]] = defaultdict(Counter)
    for write in sample:
        for index, key in index_entries(write, exempt, composites[write.group]):
            space = held[(write.group, index)]
            if not space:
                continue  # a value the day before never held: nothing to compare with
            position = bisect.bisect_left(space, key) / len(space)
            buckets[(write.group, index)][min(BUCKETS - 1, int(position * BUCKETS))] += 1
    result = {}
    for name, counts in buckets.items():
        n, hottest = sum(counts.values()), max(counts.values())
        expected = n / BUCKETS
        limit = max(0.03 * n, expected + 6 * math.sqrt(expected) + 6)  # a few percent, or far beyond chance
        written = len(by_group[name[0]])  # the group's writes in the window, of which a sample was placed
        rate = hottest * written / min(written, SAMPLE) / sim.window_seconds
        result[name] = (n, hottest, limit, rate)
    return result


def is_crowded(figures: Crowding) -> bool:
    """Far more than its share in one hundredth, at a rate a single range of rising keys cannot take."""
    _, hottest, limit, rate = figures
    return hottest > limit and rate > RANGE_BUDGET


def document_rates(sim: Simulation) -> dict[str, float]:
    """Each document's writes a second over the window."""
    counts = Counter(write.path for _, write in sim.window)
    return {path: count / sim.window_seconds for path, count in counts.items()}


def crowded(sim: Simulation) -> set[str]:
    return {f"{group} {index}" for (group, index), figures in crowding(sim).items() if is_crowded(figures)}


def hot_documents(sim: Simulation) -> set[str]:
    return {path for path, rate in document_rates(sim).items() if rate > MAX_DOCUMENT_RATE}


@cache
def fleet_simulation() -> Simulation:
    return simulate(REQUESTS, WINDOW_REQUESTS, HISTORY_PER_KIND)


@cache
def fleet_crowding() -> dict[tuple[str, str], Crowding]:
    return crowding(fleet_simulation())


# ---------------------------------------------------------------- the tests

GROUPS = sorted({w.group for _, writer in REQUESTS.values() for w in writer(Fleet(random.Random(0)), NOW)})


@pytest.mark.parametrize("group", GROUPS)
def test_a_minutes_writes_spread_over_the_key_space(group: str) -> None:
    sim = fleet_simulation()
    assert 50 <= sim.window_seconds <= 70  # about a minute of the fleet's writes
    found = {name: figures for name, figures in fleet_crowding().items() if name[0] == group}
    assert found, f"no write of {group} in the window"
    hot = {
        index: f"{hottest} of {n} writes in one hundredth (limit {limit:.0f}), {rate:.0f} writes a second"
        for (_, index), (n, hottest, limit, rate) in found.items()
        if is_crowded((n, hottest, limit, rate))
    }
    assert not hot, f"{group}: {hot}"


def test_no_document_takes_more_than_a_write_a_second() -> None:
    sim = fleet_simulation()
    rates = document_rates(sim)
    assert len(rates) > 50_000  # the check saw the fleet's documents
    hot = {path: f"{rate:.2f}/s" for path, rate in rates.items() if rate > MAX_DOCUMENT_RATE}
    assert not hot


def test_every_writer_ran_and_every_group_is_one_the_service_names() -> None:
    sim = fleet_simulation()
    written = {w.group for _, w in sim.window}
    named = {
        value for name, value in vars(records).items() if name.isupper() and isinstance(value, str) and "/" not in value
    }
    assert written <= named and len(written) >= 14


# ---------------------------------------------------------------- the checks can fail


def old_event_ids(f: Fleet, at: float) -> list[Write]:
    """Today's style of event ID: milliseconds first, then 10 random digits."""
    event_id = f"evt_{int(at * 1000):013d}{ids.random_base62(10)}"
    return [Write(records.audit_event_path(event_id), {})]


def global_counter(f: Fleet, at: float) -> list[Write]:
    return [Write("counters/global", {})]


def random_ids(f: Fleet, at: float) -> list[Write]:
    return [Write(records.agent_path(ids.new_agent_id()), {"tenant_id": f.tenant()})]


def indexed_time(f: Fleet, at: float) -> list[Write]:
    """Random IDs, but a rising timestamp left indexed (not in firestore.indexes.json's exemptions)."""
    return [Write(f"sightings/{ids.new_agent_id()}", {"seen_at": stamp(at)})]


def sharded_tails(f: Fleet, at: float) -> list[Write]:
    """Time-first names behind 30 shard prefixes (as a sharded listing index is): 30 tails, each slow."""
    return [Write(f"tails/{f.rng.randrange(30):02d}_{int(at * 1000):013d}{ids.random_base62(6)}", {})]


def slow_time_first(f: Fleet, at: float) -> list[Write]:
    """Time-first names at a few writes a second: a tail Firestore takes in its stride."""
    return [Write(f"slow/{int(at * 1000):013d}{ids.random_base62(6)}", {})]


def test_the_checks_flag_time_first_ids_an_indexed_timestamp_and_a_global_counter() -> None:
    sim = simulate(
        {
            "old events": (1_000.0, old_event_ids),
            "counter": (5.0, global_counter),
            "agents": (1_000.0, random_ids),
            "sightings": (500.0, indexed_time),
            "tails": (1_000.0, sharded_tails),
            "slow": (5.0, slow_time_first),
        },
        count=20_000,
        history_per_kind=1_000,
    )
    found = crowded(sim)
    assert "audit_events __name__" in found  # and the composite indexes that end in the name, alike
    assert {name for name in found if not name.startswith("audit_events ")} == {"sightings seen_at"}
    figures = crowding(sim)
    for group in ("audit_events", "slow", "counters"):  # every write in one hundredth: the tail, or one document
        assert figures[(group, "__name__")][1] == figures[(group, "__name__")][0]
    assert figures[("slow", "__name__")][3] < 10  # crowded, but at 5 writes a second: not a hot range
    assert hot_documents(sim) == {"counters/global"}  # 5 writes a second


def test_ttl_fields_are_policies_and_not_indexed() -> None:
    """Every record with an ``expire_at`` has a TTL policy on it, and the field is exempt from indexing."""
    ttl = {o["collectionGroup"]: o for o in INDEXES["fieldOverrides"] if o.get("ttl")}
    shaped = {
        records.REFRESH_FAMILIES: records.RefreshFamilyRecord,
        records.DEVICE_AUTHORIZATIONS: records.DeviceAuthorizationRecord,
        records.ACTIVATION_FAILURES: records.ActivationFailuresRecord,
        records.REVOKED_TOKENS: records.RevokedTokenRecord,
        records.SPENT_ASSERTIONS: records.SpentAssertionRecord,
        records.AUDIT_EVENTS: records.AuditEventRecord,
    }
    for group, shape in shaped.items():
        assert "expire_at" in shape.__annotations__
        assert ttl[group]["fieldPath"] == "expire_at" and ttl[group]["indexes"] == [], group


QUERY_CALLS = ("query", "query_ordered", "tenant_page")


@dataclass(frozen=True)
class Query:
    where: str
    collection: str
    always: frozenset[str]  # fields every run of the query filters or orders on
    sometimes: frozenset[str]  # fields it uses only under a condition (``{...} if x else None``)


def _field_names(value: ast.AST, keys: bool) -> set[str]:
    if keys:
        return {
            key.value
            for d in ast.walk(value)
            if isinstance(d, ast.Dict)
            for key in d.keys
            if isinstance(key, ast.Constant) and isinstance(key.value, str)
        }
    return {c.value for c in ast.walk(value) if isinstance(c, ast.Constant) and isinstance(c.value, str)}


def _queries() -> list[Query]:
    """Every query the service makes in shared/, with the fields it filters or orders on."""
    found = []
    for source in sorted((ROOT / "shared").glob("*.py")):
        tree = ast.parse(source.read_text())
        named = {
            t.id: n.value for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)
        }
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "store"
                and node.func.attr in QUERY_CALLS
            ):
                continue
            where = f"{source.name}:{node.lineno}"
            always = {"tenant_id"} if node.func.attr == "tenant_page" else set()
            sometimes: set[str] = set()
            for keyword in node.keywords:
                value = (
                    named.get(keyword.value.id, keyword.value) if isinstance(keyword.value, ast.Name) else keyword.value
                )
                if keyword.arg in ("equals", "contains", "one_of", "order_by"):
                    names = _field_names(value, keys=keyword.arg != "order_by") - {"__name__"}
                    (sometimes if isinstance(value, ast.IfExp) else always).update(names)
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Attribute) and isinstance(first.value, ast.Name) and first.value.id == "records":
                collection = getattr(records, first.attr)
                found.append(Query(where, collection, frozenset(always), frozenset(sometimes - always)))
            else:
                assert not always | sometimes, (
                    f"{where}: a query that filters or orders names its collection by records"
                )
    return found


def test_no_query_needs_an_index_this_file_takes_away() -> None:
    """A query on an exempted field needs a composite index holding that field and all the query always uses.
    The emulator serves any query without an index, so only this test says a production query would fail."""
    exempt, composites = _exempt(), _composites()
    queries = _queries()
    used = {(q.collection, f) for q in queries for f in q.always | q.sometimes}
    assert {(records.AGENTS, "tenant_id"), (records.DELEGATIONS, "to_agent"), (records.AUDIT_EVENTS, "action")} <= used
    for q in queries:
        for field_name in sorted(f for f in q.always | q.sometimes if (q.collection, f) in exempt):
            covering = [c for c in composites[q.collection] if {field_name, *q.always} <= {f["fieldPath"] for f in c}]
            assert covering, (
                f"{q.where}: {q.collection}.{field_name} is exempted and no composite index covers the query"
            )
