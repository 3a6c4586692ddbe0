"""Benchmark of issue 10: the relationship check and the user credential, against bare baselines.

Run with ``bench/authz [--quick] [--strict]`` (or ``.venv/bin/python -m bench.authz`` from the repo
root). Not part of the tests. Everything is measured in one run against one Firestore emulator (the
one named by ``FIRESTORE_EMULATOR_HOST`` if set, wiped first, else one started here) and one Firebase
Auth emulator (the one named by ``FIREBASE_AUTH_EMULATOR_HOST`` if set, else one started here from
node_modules); every process started here is stopped at the end.

The fixture: an agent whose scopes hold ``authz:check`` and its device key; a user signed up in the
Auth emulator and registered with ``users/create``; a live ``delegate_of`` grant from the user to the
agent (``users/delegate``); a ``viewer`` tuple of the user on ``doc:1`` (``authz/write``). The check
measured is the heaviest one: the agent, by its device key, asks whether it may ``read`` ``doc:1`` on
behalf of the user (three tuples, the agent, the user and the grant read beside the credential).

1. Datastore round trips per request, counted by bench/core.py's interceptor on the emulator channel
   (requests in process through functions-framework's test client, the first on a new client).
2. Served p50 of that ``authz/check`` (functions-framework's gunicorn, a separate process) against
   ``bench/bare_read`` (one document read by ID, served the same way), alternating rounds.
3. Served p50 of ``users/get`` with the user's ID token against the sum of ``bench/bare_read``'s
   served p50 and the p50 of firebase-admin's own ``auth.verify_id_token`` of the same token (in this
   process, its app initialised once); the three sides are measured in rotating rounds (A B C, B C A,
   C A B, reversed every other sweep) so that drift of the machine hits them alike. For reference,
   ``bench/bare_verify_read`` (firebase-admin's verify, then one read, in one served function) too.
4. Scale: the same ``authz/check`` p50 (in process) at 1k, 10k and 100k relationship tuples, written
   straight into Firestore in batches of 500 shaped as ``authz/write`` writes them; sizes are visited
   up and back down, and a bare document get is measured in interleaved blocks as a control.

Every loop is bounded in count and in time. The machine has 2 cores shared by the emulators, the
served functions, this client and anything else running: the table shows the load average.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import core  # noqa: E402
from bench.core import Report, Served, ms, p50, say  # noqa: E402

AUTHZ_CHECK_SOURCE = ROOT / "functions/authz_check/main.py"
USERS_GET_SOURCE = ROOT / "functions/users_get/main.py"
BARE_VERIFY_READ_SOURCE = ROOT / "bench/bare_verify_read/main.py"
SIGN_UP = "/identitytoolkit.googleapis.com/v1/accounts:signUp?key=any"
CHECK_SCOPE = "authz:check"
RESOURCE = "doc:1"
RELATIONS = ("owner", "editor", "viewer")
LATENCY_GOAL = 1.3
SCALE_GOAL = 1.2


@dataclass(frozen=True)
class Profile:
    name: str
    round_trip_requests: int = 5
    warmup: int = 200  # sequential requests per served function before measuring
    warmup_load: int = 1000  # then concurrent ones: the emulator's JVM keeps speeding up for a while
    warmup_workers: int = 8
    latency_rounds: int = 20  # each side gets rounds * per_round sequential requests
    latency_per_round: int = 100
    round_seconds: float = 30.0
    scales: tuple[int, ...] = (1_000, 10_000, 100_000)
    scale_warmup: int = 200
    scale_samples: int = 1500
    scale_block: int = 25
    scale_settle_seconds: float = 3.0
    scale_seconds: float = 60.0
    seed_seconds: float = 300.0


FULL = Profile(name="full")
QUICK = Profile(
    name="quick",
    round_trip_requests=3,
    warmup=50,
    warmup_load=300,
    latency_rounds=8,
    latency_per_round=50,
    scales=(1_000, 10_000),
    scale_warmup=50,
    scale_samples=300,
    scale_settle_seconds=1.0,
    seed_seconds=120.0,
)


@dataclass(frozen=True)
class Fixture:
    agent_id: str
    device_key: str
    user_id: str
    id_token: str
    tenant_id: str

    def check_body(self) -> dict[str, str]:
        return {
            "subject": f"agent:{self.agent_id}",
            "action": "read",
            "resource": RESOURCE,
            "on_behalf_of": f"user:{self.user_id}",
        }

    def device_headers(self) -> dict[str, str]:
        return {"x-agentpack-device-key": self.device_key}

    def user_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.id_token}"}


# --------------------------------------------------------------------------------------------
# Emulators and the fixture


@contextlib.contextmanager
def auth_emulator() -> Iterator[str]:
    from scripts import emulator

    host = os.environ.get("FIREBASE_AUTH_EMULATOR_HOST")
    if host:
        if not emulator.auth_is_up(host):
            sys.exit(f"error: FIREBASE_AUTH_EMULATOR_HOST={host} does not answer")
        say(f"auth emulator: using FIREBASE_AUTH_EMULATOR_HOST={host}")
        yield host
        return
    with emulator.auth_running(emulator.free_port()) as address:
        say(f"auth emulator: started on {address}")
        os.environ["FIREBASE_AUTH_EMULATOR_HOST"] = address
        try:
            yield address
        finally:
            del os.environ["FIREBASE_AUTH_EMULATOR_HOST"]


def sign_up(host: str, email: str, password: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://{host}{SIGN_UP}",
        data=json.dumps({"email": email, "password": password, "returnSecureToken": True}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        found: dict[str, Any] = json.loads(answer.read())
    return found


def expect(status: int, answer: Any, wanted: int, what: str) -> Any:
    if status != wanted:
        sys.exit(f"error: {what} answered {status}: {answer}")
    return answer


def make_fixture(app: core.InProcess, auth_host: str) -> Fixture:
    bridge = {"x-agentpack-key": os.environ["AGENTPACK_BRIDGE_KEY"]}
    created = app.call("agents/create", {"display_name": "authz bench agent", "scopes": [CHECK_SCOPE]}, bridge)
    for _ in range(5):  # a just-started emulator on a busy machine may miss the first deadline: bounded retries
        if created[0] != 503:
            break
        say("  note: the emulator answered its first write late (503); trying again")
        time.sleep(2)
        created = app.call("agents/create", {"display_name": "authz bench agent", "scopes": [CHECK_SCOPE]}, bridge)
    agent = expect(*created, 201, "agents/create")
    agent_id, tenant_id = agent["agent_id"], agent["tenant_id"]
    device = expect(*app.call("device/issue", {"agent_id": agent_id}, bridge), 201, "device/issue")
    account = sign_up(auth_host, f"bench-{int(time.time() * 1000)}@example.com", "bench-password-1")
    user = expect(*app.call("users/create", {"firebase_uid": account["localId"]}, bridge), 201, "users/create")
    user_id = user["user_id"]
    grant = {"user_id": user_id, "agent_id": agent_id, "actions": ["read"]}
    expect(*app.call("users/delegate", grant, bridge), 201, "users/delegate")
    tuples = {
        "tenant_id": tenant_id,
        "writes": [{"resource": RESOURCE, "relation": "viewer", "subject": f"user:{user_id}"}],
    }
    written = expect(*app.call("authz/write", tuples, bridge), 200, "authz/write")
    if written.get("written") != 1:
        sys.exit(f"error: authz/write wrote {written}")
    fixture = Fixture(agent_id, device["device_key"], user_id, account["idToken"], tenant_id)
    answer = expect(*app.call("authz/check", fixture.check_body(), fixture.device_headers()), 200, "authz/check")
    if answer != {"allowed": True}:
        sys.exit(f"error: the fixture's check is not allowed: {answer}")
    denied = dict(fixture.check_body(), action="write")  # the grant holds read only
    if expect(*app.call("authz/check", denied, fixture.device_headers()), 200, "authz/check") != {"allowed": False}:
        sys.exit("error: a check outside the grant was allowed")
    me = expect(*app.call("users/get", {}, fixture.user_headers()), 200, "users/get")
    if me.get("user_id") != user_id:
        sys.exit(f"error: users/get answered another user: {me}")
    return fixture


# --------------------------------------------------------------------------------------------
# 1. Round trips


def measure_round_trips(
    app: core.InProcess,
    counter: core.CallCounter,
    meter: core.ResolutionMeter,
    fixture: Fixture,
    profile: Profile,
    report: Report,
) -> None:
    say("\n[1] datastore round trips per request (gRPC calls counted on the emulator channel)")
    from shared import store

    plain_check = {k: v for k, v in fixture.check_body().items() if k != "on_behalf_of"}
    plain_check["subject"] = f"user:{fixture.user_id}"
    cases: list[tuple[str, str, dict[str, Any], dict[str, str], int | None]] = [
        ("authz/check on behalf of a user", "authz/check", fixture.check_body(), fixture.device_headers(), 1),
        ("authz/check of a user", "authz/check", plain_check, fixture.device_headers(), 1),
        ("ID-token users/get", "users/get", {}, fixture.user_headers(), None),
    ]
    for label, route, body, headers, goal in cases:
        totals: list[int] = []
        resolutions: list[int] = []
        methods: list[str] = []
        for index in range(1 + profile.round_trip_requests):
            if index == 0:
                store.reset()  # the first request builds the client and connects: counted too
            counter.reset()
            meter.calls = 0
            status, answer = app.call(route, body, headers)
            expect(status, answer, 200, label)
            totals.append(counter.total)
            resolutions.append(meter.calls)
            methods = list(counter.methods)
        total, resolution = max(totals), max(resolutions)
        spread = "" if min(totals) == total else f" (varied {min(totals)}..{total})"
        names = ", ".join(m.rsplit("/", 1)[-1] for m in methods) or "none"
        say(
            f"round trips: {label} = {total}{spread}; inside credential resolution = {resolution}; "
            f"calls: {names} ({len(totals)} requests, the first on a new client)"
        )
        report.add(
            f"round trips, {label}",
            str(total),
            "-",
            "-",
            f"= {goal}" if goal is not None else "-",
            None if goal is None else total == goal,
        )


# --------------------------------------------------------------------------------------------
# 2. and 3. Served latency


def warm(target: Served, profile: Profile) -> None:
    core.sequential(target, profile.warmup // 2, profile.round_seconds)
    core.concurrent(target, profile.warmup_load // 2, profile.warmup_workers, profile.round_seconds * 2)


def rotate(sides: list[str], rounds: int) -> Iterator[list[str]]:
    """A B C, B C A, C A B, then the same reversed, ...: every side takes every place equally often."""
    count = len(sides)
    for index in range(rounds):
        shift = index % count
        order = sides[shift:] + sides[:shift]
        yield order if (index // count) % 2 == 0 else order[::-1]


def round_ratio_summary(a: list[list[float]], b: list[list[float]]) -> str:
    ratios = [p50(x) / p50(y) for x, y in zip(a, b, strict=True) if x and y]
    return f"min {min(ratios):.2f}x, median {p50(ratios):.2f}x, max {max(ratios):.2f}x"


def measure_served_check(fixture: Fixture, host: str, profile: Profile, report: Report, logs: Path) -> None:
    say("\n[2] served by functions-framework: device-key authz/check on behalf of a user vs bare one-document read")
    env = core.child_env(host)
    json_header = {"Content-Type": "application/json"}
    with (
        core.serve("authz_check", AUTHZ_CHECK_SOURCE, env, logs) as (product_port, product_pgid),
        core.serve("bare_read", core.BARE_READ_SOURCE, env, logs) as (bare_port, bare_pgid),
    ):
        product = Served(
            "authz_check",
            product_port,
            product_pgid,
            json.dumps(fixture.check_body()).encode(),
            {**json_header, **fixture.device_headers()},
        )
        bare = Served(
            "bare_read", bare_port, bare_pgid, json.dumps({"agent_id": fixture.agent_id}).encode(), json_header
        )
        for target in (product, bare, product, bare):
            warm(target, profile)

        def latency_round(target: Served) -> list[float]:
            return core.sequential(target, profile.latency_per_round, profile.round_seconds)

        rounds = core.alternate(profile.latency_rounds, (product, bare), latency_round)
        for target in (product, bare):
            target.connection.close()
    say(f"  authz_check/bare_read p50 ratio per round: {round_ratio_summary(rounds[product.name], rounds[bare.name])}")
    latency = {name: [s for run in runs for s in run] for name, runs in rounds.items()}
    product_p50, bare_p50 = p50(latency[product.name]), p50(latency[bare.name])
    ratio = product_p50 / bare_p50
    say(
        f"latency p50 ({len(latency[product.name])} sequential requests each): authz/check {ms(product_p50)}, "
        f"bare read {ms(bare_p50)}, ratio {ratio:.3f}x (goal <= {LATENCY_GOAL}x)"
    )
    report.add(
        "served p50, authz/check (device key, on behalf of user)",
        ms(product_p50),
        ms(bare_p50) + " bare read",
        f"{ratio:.3f}x",
        f"<= {LATENCY_GOAL}x",
        ratio <= LATENCY_GOAL,
    )


class Verifier:
    """firebase-admin's own ``auth.verify_id_token`` of one token, in this process, timed call by call."""

    def __init__(self, token: str) -> None:
        import firebase_admin
        from firebase_admin import auth

        self.token = token
        self.auth = auth
        project = os.environ.get("GOOGLE_CLOUD_PROJECT", "demo-agentpack")
        self.app = firebase_admin.initialize_app(options={"projectId": project}, name="bench-authz-verify")
        self.firebase_admin = firebase_admin

    def run(self, count: int, seconds: float) -> list[float]:
        samples: list[float] = []
        deadline = time.monotonic() + seconds
        for _ in range(count):
            start = time.perf_counter()
            self.auth.verify_id_token(self.token, app=self.app, check_revoked=False, clock_skew_seconds=60)
            samples.append(time.perf_counter() - start)
            if time.monotonic() > deadline:
                break
        return samples

    def close(self) -> None:
        self.firebase_admin.delete_app(self.app)


def measure_served_user(fixture: Fixture, host: str, profile: Profile, report: Report, logs: Path) -> None:
    say("\n[3] served: users/get with an ID token vs bare one-document read + firebase-admin verify_id_token")
    env = core.child_env(host)
    json_header = {"Content-Type": "application/json"}
    agent_body = json.dumps({"agent_id": fixture.agent_id}).encode()
    verifier = Verifier(fixture.id_token)
    try:
        with (
            core.serve("users_get", USERS_GET_SOURCE, env, logs) as (product_port, product_pgid),
            core.serve("bare_read", core.BARE_READ_SOURCE, env, logs) as (bare_port, bare_pgid),
            core.serve("bare_verify_read", BARE_VERIFY_READ_SOURCE, env, logs) as (ref_port, ref_pgid),
        ):
            product = Served("users_get", product_port, product_pgid, b"{}", {**json_header, **fixture.user_headers()})
            bare = Served("bare_read", bare_port, bare_pgid, agent_body, json_header)
            reference = Served(
                "bare_verify_read", ref_port, ref_pgid, agent_body, {**json_header, **fixture.user_headers()}
            )
            served = {t.name: t for t in (product, bare, reference)}
            for target in (product, bare, reference, product, bare, reference):
                warm(target, profile)
            verifier.run(profile.warmup, profile.round_seconds)
            runs: dict[str, list[list[float]]] = {name: [] for name in (*served, "verify_id_token")}
            for order in rotate([*served, "verify_id_token"], profile.latency_rounds):
                for name in order:
                    if name == "verify_id_token":
                        runs[name].append(verifier.run(profile.latency_per_round, profile.round_seconds))
                    else:
                        runs[name].append(
                            core.sequential(served[name], profile.latency_per_round, profile.round_seconds)
                        )
            for target in served.values():
                target.connection.close()
    finally:
        verifier.close()
    latency = {name: [s for run in values for s in run] for name, values in runs.items()}
    product_p50, bare_p50 = p50(latency["users_get"]), p50(latency["bare_read"])
    verify_p50, reference_p50 = p50(latency["verify_id_token"]), p50(latency["bare_verify_read"])
    baseline = bare_p50 + verify_p50
    ratio = product_p50 / baseline
    round_baselines = [
        [p50(b) + p50(v)] for b, v in zip(runs["bare_read"], runs["verify_id_token"], strict=True) if b and v
    ]
    per_round = round_ratio_summary(runs["users_get"], round_baselines)
    say(f"  users_get/(bare_read + verify) p50 ratio per round: {per_round}")
    say(
        f"latency p50 ({len(latency['users_get'])} each): users/get {ms(product_p50)}; bare read {ms(bare_p50)} + "
        f"verify_id_token {verify_p50 * 1e6:.0f} us = {ms(baseline)}; ratio {ratio:.3f}x (goal <= {LATENCY_GOAL}x); "
        f"bare verify+read served {ms(reference_p50)} (users/get vs it {product_p50 / reference_p50:.3f}x)"
    )
    report.add(
        "served p50, users/get with an ID token",
        ms(product_p50),
        f"{ms(baseline)} read+verify",
        f"{ratio:.3f}x",
        f"<= {LATENCY_GOAL}x",
        ratio <= LATENCY_GOAL,
    )
    report.add("  of which bare read (served)", ms(bare_p50), "-", "-", "-", None)
    report.add("  of which verify_id_token (in process)", f"{verify_p50 * 1e6:.0f} us", "-", "-", "-", None)
    report.add(
        "  reference: verify + read in one served function",
        ms(product_p50),
        ms(reference_p50),
        f"{product_p50 / reference_p50:.3f}x",
        "-",
        None,
    )


# --------------------------------------------------------------------------------------------
# 4. Scale


SEED_WORKERS = 4  # batches committed at once: the emulator takes concurrent commits faster than one by one


def tuple_document(tenant_id: str, number: int, now: datetime) -> tuple[str, dict[str, Any]]:
    """Seeded tuple ``number``, shaped as ``authz/write`` stores it: a relation of a made-up user to
    ``doc:seed-N`` (never a tuple the check reads)."""
    from shared import ids, records

    resource = f"doc:seed-{number}"
    relation = RELATIONS[number % len(RELATIONS)]
    subject = f"user:{ids.user_id_of(f'seeded-{number // 10}')}"  # ten tuples per made-up user
    record = {"tenant_id": tenant_id, "resource": resource, "relation": relation, "subject": subject, "created_at": now}
    return records.relation_tuple_path(resource, relation, subject), record


def seed_tuples(db: Any, tenant_id: str, start: int, count: int, deadline: float) -> list[str]:
    """Write up to ``count`` tuples in batches of 500, a few batches at once; in the order numbered."""
    from concurrent.futures import ThreadPoolExecutor

    def commit(first: int) -> list[str]:
        if time.monotonic() > deadline:
            return []
        batch = db.batch()
        now = datetime.now(UTC)
        paths = []
        for number in range(first, min(first + core.SEED_BATCH, start + count)):
            path, record = tuple_document(tenant_id, number, now)
            batch.set(db.document(path), record)
            paths.append(path)
        batch.commit()
        return paths

    written: list[str] = []
    with ThreadPoolExecutor(max_workers=SEED_WORKERS) as pool:
        for paths in pool.map(commit, range(start, start + count, core.SEED_BATCH)):
            if not paths:
                break  # out of time: keep only the unbroken run written so far
            written += paths
    return written


def delete_paths(db: Any, paths: list[str], deadline: float) -> int:
    deleted = 0
    while deleted < len(paths) and time.monotonic() < deadline:
        batch = db.batch()
        for path in paths[deleted : deleted + core.SEED_BATCH]:
            batch.delete(db.document(path))
        batch.commit()
        deleted += len(paths[deleted : deleted + core.SEED_BATCH])
    return deleted


def measure_scale(app: core.InProcess, fixture: Fixture, profile: Profile, report: Report) -> None:
    say("\n[4] scale: authz/check p50 (in process) as the relationship tuples grow, then shrink")
    say("  sizes are visited up then down; each size's figure is the mean of its visits, so steady drift cancels")
    from google.cloud import firestore

    from shared import records

    db = firestore.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT", "demo-agentpack"))
    client = app.client("authz_check")
    body, headers = fixture.check_body(), fixture.device_headers()
    tuple_ref = db.document(records.relation_tuple_path(RESOURCE, "viewer", f"user:{fixture.user_id}"))

    def product_call() -> None:
        answer = client.post("/", json=body, headers=headers)
        if answer.status_code != 200 or answer.get_json(silent=True) != {"allowed": True}:
            sys.exit(f"error: authz/check answered {answer.status_code}: {answer.get_data(as_text=True)}")

    def bare_call() -> None:
        if not tuple_ref.get().exists:
            sys.exit("error: the fixture's tuple is missing")

    def measure(present: int) -> tuple[float, float]:
        time.sleep(profile.scale_settle_seconds)
        for _ in range(profile.scale_warmup):
            product_call()
            bare_call()
        product_samples: list[float] = []
        bare_samples: list[float] = []
        deadline = time.monotonic() + profile.scale_seconds
        calls: tuple[tuple[Callable[[], None], list[float]], ...] = (
            (product_call, product_samples),
            (bare_call, bare_samples),
        )
        while len(product_samples) < profile.scale_samples and time.monotonic() < deadline:
            for call, samples in calls:
                for _ in range(profile.scale_block):
                    start = time.perf_counter()
                    call()
                    samples.append(time.perf_counter() - start)
        figure = (p50(product_samples), p50(bare_samples))
        say(
            f"  {present:>6} tuples: authz/check p50 {ms(figure[0])}, bare document get p50 {ms(figure[1])} "
            f"({len(product_samples)} samples each, load {core.load_average().split()[0]})"
        )
        return figure

    seeded: list[str] = []
    visits: dict[int, list[tuple[float, float]]] = {}
    sizes = list(profile.scales)
    for size in sizes + sizes[-2::-1]:
        target = size - 1  # the fixture's tuple is one of them
        began = time.monotonic()
        if target > len(seeded):
            added = seed_tuples(db, fixture.tenant_id, len(seeded), target - len(seeded), began + profile.seed_seconds)
            seeded += added
            took = time.monotonic() - began
            say(f"  seeded {len(added)} tuples in {took:.1f} s ({len(added) / max(took, 1e-9):.0f}/s)")
        elif target < len(seeded):
            gone = delete_paths(db, seeded[target:], began + profile.seed_seconds)
            del seeded[len(seeded) - gone :]
            took = time.monotonic() - began
            say(f"  deleted {gone} tuples in {took:.1f} s ({gone / max(took, 1e-9):.0f}/s)")
        present = len(seeded) + 1
        if present != size:
            say(f"  note: seeding or deleting stopped at its time limit ({profile.seed_seconds:.0f} s); stopping here")
            break
        visits.setdefault(size, []).append(measure(present))
    delete_paths(db, seeded, time.monotonic() + profile.seed_seconds)
    db.close()  # type: ignore[no-untyped-call]

    figures = {
        size: (statistics.fmean(v[0] for v in runs), statistics.fmean(v[1] for v in runs))
        for size, runs in visits.items()
    }
    for size, runs in sorted(visits.items()):
        if len(runs) > 1:
            spread = max(r[0] for r in runs) / min(r[0] for r in runs) - 1
            say(
                f"  {size} tuples, its two visits: authz/check p50 {' and '.join(ms(r[0]) for r in runs)} "
                f"({spread:.0%} apart: the same data, so that much is the machine's own drift)"
            )
    base_size = min(figures)
    base_product, base_bare = figures[base_size]
    for size, (product_p50, bare_p50) in sorted(figures.items()):
        if size == base_size:
            continue
        ratio = product_p50 / base_product
        bare_ratio = bare_p50 / base_bare
        say(
            f"scale: authz/check p50 at {size} tuples / at {base_size} = {ratio:.3f}x (goal <= {SCALE_GOAL}x); "
            f"bare document get {bare_ratio:.2f}x, so authz/check relative to it {ratio / bare_ratio:.2f}x"
        )
        report.add(
            f"authz/check p50 at {size:,} tuples vs {base_size:,}",
            ms(product_p50),
            ms(base_product),
            f"{ratio:.3f}x",
            f"<= {SCALE_GOAL}x",
            ratio <= SCALE_GOAL,
        )
        report.add(
            "  control: bare document get, same sizes",
            ms(bare_p50),
            ms(base_bare),
            f"{bare_ratio:.3f}x",
            "-",
            None,
        )
        report.add("  authz/check growth relative to the control", "-", "-", f"{ratio / bare_ratio:.3f}x", "-", None)


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/authz", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller counts, at most 10k tuples")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args(argv)
    profile = QUICK if args.quick else FULL
    core.use_dev_defaults()
    started = time.monotonic()
    say(f"agentpack identity authz benchmark ({profile.name}); python {sys.version.split()[0]}, {os.cpu_count()} cores")
    start_load = core.load_average()
    say(f"load average at start: {start_load} (other processes on these cores make every figure noisier)")
    report = Report()
    with (
        tempfile.TemporaryDirectory(prefix="agentpack-bench-authz-") as logs,
        core.datastore() as host,
        auth_emulator() as auth_host,
    ):
        counter = core.install_counter()
        from shared import config, firebase, store

        config.reset()
        store.reset()
        firebase.reset()
        meter = core.ResolutionMeter(counter)
        app = core.InProcess()
        fixture = make_fixture(app, auth_host)
        measure_round_trips(app, counter, meter, fixture, profile, report)
        measure_served_check(fixture, host, profile, report, Path(logs))
        measure_served_user(fixture, host, profile, report, Path(logs))
        measure_scale(app, fixture, profile, report)
        firebase.reset()
    missed = report.print_table()
    say("(ratios are of figures measured in this one run; each row's baseline beside it)")
    took = time.monotonic() - started
    say(f"load average at start: {start_load}; at end: {core.load_average()}; total time {took:.0f} s")
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
