"""Benchmark of the OAuth paths of agentpack identity (issue 9): access tokens on routes, and /oauth/token.

Run with ``bench/oauth [--quick] [--strict]`` (or ``.venv/bin/python -m bench.oauth`` from the repo
root). Not part of the tests. Everything is measured in one run against one Firestore emulator, the
way ``bench/core.py`` does it (its helpers are imported from there: emulator, round-trip counter,
functions-framework server, keep-alive client, alternating rounds, table):

1. Datastore round trips per request, counted by the gRPC interceptor of ``bench.core``: an
   ``agents/get`` called with ``Authorization: Bearer <client_credentials access token>`` (goal: 1,
   all of it inside credential resolution); ``/oauth/token`` and ``bench/bare_txn`` for reference.
2. Served p50 latency and throughput of that bearer-token ``agents/get`` against ``bench/bare_read``
   (one document read by ID), each on functions-framework's gunicorn server, in short alternating
   rounds (A B, B A, ...). Goals: p50 <= 1.3x, throughput >= 0.75x (median of paired rounds).
3. Served p50 latency of ``/oauth/token`` (``client_credentials``, ``client_secret_basic``) against
   ``bench/bare_txn`` (one transaction: read one document, write one: the floor of an audited
   change). Goal: p50 <= 1.5x. Throughput is shown for reference.

``--profile N`` adds, before 2 and 3, a cProfile (CPU time) of N in-process requests of each of the
four functions, to see where a request's CPU goes; it is not part of the table.

Every loop is bounded in count and in time. Loopback only. The machine's cores are shared by the
emulator, the servers and this client (and anything else running), alike for product and baseline.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import io
import json
import os
import pstats
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.core import (  # noqa: E402 - the repo root goes on the path first, as bench/core.py does
    AGENTS_GET_SOURCE,
    BARE_READ_SOURCE,
    CallCounter,
    InProcess,
    Report,
    ResolutionMeter,
    Served,
    alternate,
    child_env,
    concurrent,
    cpu_seconds,
    datastore,
    emulator_pids,
    install_counter,
    load_average,
    ms,
    p50,
    process_group,
    say,
    sequential,
    serve,
    use_dev_defaults,
)

OAUTH_TOKEN_SOURCE = ROOT / "functions/oauth_token/main.py"
BARE_TXN_SOURCE = ROOT / "bench/bare_txn/main.py"
# Tokens name their issuer; the in-process minting and the served functions must agree on it.
BENCH_ISSUER = "http://127.0.0.1:8000"
ROUTE = "agents/get"
FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Profile:
    name: str
    round_trip_requests: int = 5
    warmup: int = 200  # sequential requests per served function before measuring
    warmup_load: int = 1000  # then concurrent ones: the emulator's JVM keeps speeding up for a while
    latency_rounds: int = 16  # each side gets rounds * per_round sequential requests
    latency_per_round: int = 100
    latency_round_seconds: float = 30.0
    throughput_rounds: int = 6
    throughput_requests: int = 800  # per round and side
    throughput_workers: int = 8  # functions-framework's gunicorn serves 4 threads per core: 8 here
    throughput_round_seconds: float = 60.0


FULL = Profile(name="full")
QUICK = Profile(
    name="quick",
    round_trip_requests=3,
    warmup=60,
    warmup_load=200,
    latency_rounds=6,
    latency_per_round=50,
    throughput_rounds=4,
    throughput_requests=250,
)


@dataclass(frozen=True)
class OAuthFixture:
    agent_id: str
    device_key: str  # the client secret (client_secret_basic)

    def basic_headers(self) -> dict[str, str]:
        # RFC 6749 §2.3.1: each half form-urlencoded, then HTTP Basic.
        pair = f"{urllib.parse.quote_plus(self.agent_id)}:{urllib.parse.quote_plus(self.device_key)}"
        return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode("ascii"), "Content-Type": FORM}

    def token_form(self) -> bytes:
        return urllib.parse.urlencode({"grant_type": "client_credentials", "scope": ROUTE}).encode("ascii")


def make_fixture(app: InProcess) -> OAuthFixture:
    """An agent whose scopes include agents/get, and a device key of it (its client secret).

    ``bench.core.make_fixture`` makes an agent without scopes (and a secret and a delegation this
    benchmark does not use), so the three calls needed here are made directly.
    """
    bridge = {"x-agentpack-key": os.environ["AGENTPACK_BRIDGE_KEY"]}
    # A freshly started emulator on a loaded machine may miss the first writes' deadline (503, nothing
    # changed): a few bounded retries, so a slow start is not a failed run.
    for attempt in range(5):
        status, answer = app.call("agents/create", {"display_name": "oauth bench", "scopes": [ROUTE]}, bridge)
        if status != 503:
            break
        say(f"  note: agents/create answered 503 (attempt {attempt + 1}); the emulator is warming up, retrying")
        time.sleep(2)
    if status != 201:
        sys.exit(f"error: agents/create answered {status}: {answer}")
    agent_id = answer["agent_id"]
    status, answer = app.call("device/issue", {"agent_id": agent_id}, bridge)
    if status != 201:
        sys.exit(f"error: device/issue answered {status}: {answer}")
    return OAuthFixture(agent_id=agent_id, device_key=answer["device_key"])


def issue_token(app: InProcess, fixture: OAuthFixture) -> tuple[int, Any]:
    client = app.client("oauth_token")
    answer = client.post("/", data=fixture.token_form(), headers=fixture.basic_headers())
    return int(answer.status_code), answer.get_json(silent=True)


def access_token(app: InProcess, fixture: OAuthFixture) -> str:
    status, answer = issue_token(app, fixture)
    if status != 200 or answer.get("token_type") != "Bearer" or answer.get("scope") != ROUTE:
        sys.exit(f"error: /oauth/token answered {status}: {answer}")
    return str(answer["access_token"])


# --------------------------------------------------------------------------------------------
# 1. Round trips


def count_round_trips(
    counter: CallCounter, meter: ResolutionMeter, requests: int, call: Any, reset_client: bool = True
) -> tuple[int, int, list[str], int]:
    """(most calls per request, most inside resolution, the last request's methods, fewest calls)."""
    from shared import store

    totals: list[int] = []
    resolutions: list[int] = []
    methods: list[str] = []
    for index in range(1 + requests):
        if index == 0 and reset_client:
            store.reset()  # the first request builds the client and connects: counted too
        counter.reset()
        meter.calls = 0
        status = call()
        if status != 200:
            sys.exit(f"error: a round-trip request answered {status}")
        totals.append(counter.total)
        resolutions.append(meter.calls)
        methods = list(counter.methods)
    return max(totals), max(resolutions), methods, min(totals)


def measure_round_trips(
    app: InProcess,
    counter: CallCounter,
    meter: ResolutionMeter,
    fixture: OAuthFixture,
    token: str,
    profile: Profile,
    report: Report,
) -> None:
    say("\n[1] datastore round trips per request (gRPC calls counted on the emulator channel)")
    bearer = {"Authorization": f"Bearer {token}"}
    agents_get = app.client("agents_get")
    bare_txn = app.client("bare_txn", BARE_TXN_SOURCE)
    body = {"agent_id": fixture.agent_id}

    def names(methods: list[str]) -> str:
        return ", ".join(m.rsplit("/", 1)[-1] for m in methods) or "none"

    total, resolution, methods, fewest = count_round_trips(
        counter, meter, profile.round_trip_requests, lambda: agents_get.post("/", json=body, headers=bearer).status_code
    )
    spread = "" if fewest == total else f" (varied {fewest}..{total})"
    say(
        f"round trips: access-token agents/get = {total} (goal 1){spread}; credential resolution = {resolution}; "
        f"calls: {names(methods)} ({1 + profile.round_trip_requests} requests, the first on a new client)"
    )
    report.add("round trips, access-token agents/get: total", str(total), "-", "-", "= 1", total == 1)
    report.add("  of which in credential resolution", str(resolution), "-", "-", "-", None)

    total, _, methods, fewest = count_round_trips(
        counter, meter, profile.round_trip_requests, lambda: issue_token(app, fixture)[0]
    )
    say(f"round trips: /oauth/token client_credentials = {total}; calls: {names(methods)}")
    bare_total, _, bare_methods, _ = count_round_trips(
        counter,
        meter,
        profile.round_trip_requests,
        lambda: bare_txn.post("/", json=body).status_code,
        reset_client=False,  # bare_txn keeps its own client
    )
    say(f"round trips: bare one-transaction function = {bare_total}; calls: {names(bare_methods)}")
    report.add("round trips, /oauth/token client_credentials", str(total), f"{bare_total} (bare txn)", "-", "-", None)


# --------------------------------------------------------------------------------------------
# 2 and 3. Served latency and throughput


@dataclass
class Pair:
    """What one served comparison measured."""

    product_p50: float
    bare_p50: float
    round_ratios: list[float]
    product_rps: float
    bare_rps: float
    throughput_ratio: float
    cpu_ms: dict[str, tuple[float, float]]  # name -> (server, emulator) CPU ms per request under load


def compare_served(product: Served, bare: Served, host: str, profile: Profile) -> Pair:
    """Warm both, then alternating latency rounds and alternating throughput rounds (bench.core's method)."""
    emulator = emulator_pids(host)
    for target in (product, bare, product, bare):
        sequential(target, profile.warmup // 2, profile.latency_round_seconds)
        concurrent(target, profile.warmup_load // 2, profile.throughput_workers, profile.throughput_round_seconds)

    def latency_round(target: Served) -> list[float]:
        return sequential(target, profile.latency_per_round, profile.latency_round_seconds)

    rounds = alternate(profile.latency_rounds, (product, bare), latency_round)
    for target in (product, bare):
        target.connection.close()
    latency = {name: [sample for run in runs for sample in run] for name, runs in rounds.items()}
    round_ratios = [p50(a) / p50(b) for a, b in zip(rounds[product.name], rounds[bare.name], strict=True) if a and b]
    cpu: dict[str, list[tuple[float, float]]] = {product.name: [], bare.name: []}

    def throughput_round(target: Served) -> float:
        server = process_group(target.pgid)
        before = (cpu_seconds(server), cpu_seconds(emulator))
        done, elapsed = concurrent(
            target, profile.throughput_requests, profile.throughput_workers, profile.throughput_round_seconds
        )
        after = (cpu_seconds(server), cpu_seconds(emulator))
        cpu[target.name].append(((after[0] - before[0]) / done, (after[1] - before[1]) / done))
        return done / elapsed

    throughput = alternate(profile.throughput_rounds, (product, bare), throughput_round)
    for name, values in throughput.items():
        say(f"  requests/s per round, {name}: " + ", ".join(f"{v:.0f}" for v in values))
    ratios = [a / b for a, b in zip(throughput[product.name], throughput[bare.name], strict=True)]
    cpu_ms = {
        name: (p50([p[0] for p in pairs]) * 1000, p50([p[1] for p in pairs]) * 1000) for name, pairs in cpu.items()
    }
    for name, (server_ms, emulator_ms) in cpu_ms.items():
        say(
            f"  CPU per request under load, {name}: server process {server_ms:.2f} ms"
            + (f", emulator {emulator_ms:.2f} ms" if emulator else " (emulator process not visible)")
        )
    say(
        f"  {product.name}/{bare.name} p50 ratio per round: min {min(round_ratios):.2f}x, "
        f"median {p50(round_ratios):.2f}x, max {max(round_ratios):.2f}x; "
        f"throughput ratio per round: min {min(ratios):.2f}x, median {p50(ratios):.2f}x, max {max(ratios):.2f}x"
    )
    return Pair(
        product_p50=p50(latency[product.name]),
        bare_p50=p50(latency[bare.name]),
        round_ratios=round_ratios,
        product_rps=p50(throughput[product.name]),
        bare_rps=p50(throughput[bare.name]),
        throughput_ratio=p50(ratios),
        cpu_ms=cpu_ms,
    )


def add_cpu_rows(report: Report, pair: Pair, product: str, bare: str, emulator: bool) -> None:
    (product_cpu, product_emulator), (bare_cpu, bare_emulator) = pair.cpu_ms[product], pair.cpu_ms[bare]
    ratio = f"{product_cpu / bare_cpu:.2f}x" if bare_cpu else "-"
    report.add("  server CPU per request under load", f"{product_cpu:.2f} ms", f"{bare_cpu:.2f} ms", ratio, "-", None)
    if emulator and bare_emulator:
        report.add(
            "  emulator CPU per request under load",
            f"{product_emulator:.2f} ms",
            f"{bare_emulator:.2f} ms",
            f"{product_emulator / bare_emulator:.2f}x",
            "-",
            None,
        )


def measure_served_access_token(
    fixture: OAuthFixture, token: str, host: str, profile: Profile, report: Report, logs: Path
) -> None:
    say("\n[2] served by functions-framework (gunicorn), access-token agents/get vs bare one-document read")
    env = child_env(host)
    body = json.dumps({"agent_id": fixture.agent_id}).encode()
    json_header = {"Content-Type": "application/json"}
    with (
        serve("agents_get", AGENTS_GET_SOURCE, env, logs) as (product_port, product_pgid),
        serve("bare_read", BARE_READ_SOURCE, env, logs) as (bare_port, bare_pgid),
    ):
        product = Served(
            "agents_get", product_port, product_pgid, body, {**json_header, "Authorization": f"Bearer {token}"}
        )
        bare = Served("bare_read", bare_port, bare_pgid, body, json_header)
        pair = compare_served(product, bare, host, profile)
    latency_ratio = pair.product_p50 / pair.bare_p50
    say(
        f"latency p50: access-token agents/get {ms(pair.product_p50)}, bare read {ms(pair.bare_p50)}, "
        f"ratio {latency_ratio:.3f}x (goal <= 1.3x)"
    )
    say(
        f"throughput: access-token agents/get {pair.product_rps:.0f}/s, bare read {pair.bare_rps:.0f}/s, "
        f"ratio (median of paired rounds) {pair.throughput_ratio:.3f}x (goal >= 0.75x)"
    )
    report.add(
        "served p50 latency, access-token agents/get",
        ms(pair.product_p50),
        ms(pair.bare_p50),
        f"{latency_ratio:.3f}x",
        "<= 1.3x",
        latency_ratio <= 1.3,
    )
    add_cpu_rows(report, pair, "agents_get", "bare_read", bool(emulator_pids(host)))
    report.add(
        "served throughput, access-token agents/get",
        f"{pair.product_rps:.0f} req/s",
        f"{pair.bare_rps:.0f} req/s",
        f"{pair.throughput_ratio:.3f}x",
        ">= 0.75x",
        pair.throughput_ratio >= 0.75,
    )


def measure_served_token_endpoint(
    fixture: OAuthFixture, host: str, profile: Profile, report: Report, logs: Path
) -> None:
    say("\n[3] served by functions-framework (gunicorn), /oauth/token client_credentials vs bare transaction")
    env = child_env(host)
    with (
        serve("oauth_token", OAUTH_TOKEN_SOURCE, env, logs) as (product_port, product_pgid),
        serve("bare_txn", BARE_TXN_SOURCE, env, logs) as (bare_port, bare_pgid),
    ):
        product = Served("oauth_token", product_port, product_pgid, fixture.token_form(), fixture.basic_headers())
        bare = Served(
            "bare_txn",
            bare_port,
            bare_pgid,
            json.dumps({"agent_id": fixture.agent_id}).encode(),
            {"Content-Type": "application/json"},
        )
        pair = compare_served(product, bare, host, profile)
    ratio = pair.product_p50 / pair.bare_p50
    say(
        f"latency p50: /oauth/token {ms(pair.product_p50)}, bare transaction {ms(pair.bare_p50)}, "
        f"ratio {ratio:.3f}x (goal <= 1.5x)"
    )
    report.add(
        "served p50 latency, /oauth/token client_credentials",
        ms(pair.product_p50),
        ms(pair.bare_p50),
        f"{ratio:.3f}x",
        "<= 1.5x",
        ratio <= 1.5,
    )
    add_cpu_rows(report, pair, "oauth_token", "bare_txn", bool(emulator_pids(host)))
    report.add(
        "  served throughput, /oauth/token",
        f"{pair.product_rps:.0f} req/s",
        f"{pair.bare_rps:.0f} req/s",
        f"{pair.throughput_ratio:.3f}x",
        "-",
        None,
    )


# --------------------------------------------------------------------------------------------
# --profile: where a request's CPU goes, in process (not timed, not in the table)


def profile_in_process(app: InProcess, fixture: OAuthFixture, token: str, requests: int) -> None:
    say(f"\n[profile] cProfile of {requests} in-process requests each (functions-framework test client)")
    body = {"agent_id": fixture.agent_id}
    agents_get, bare_read = app.client("agents_get"), app.client("bare_read", BARE_READ_SOURCE)
    oauth_token, bare_txn = app.client("oauth_token"), app.client("bare_txn", BARE_TXN_SOURCE)
    cases: list[tuple[str, Any]] = [
        (
            "access-token agents/get",
            lambda: agents_get.post("/", json=body, headers={"Authorization": f"Bearer {token}"}),
        ),
        ("bare_read", lambda: bare_read.post("/", json=body)),
        (
            "/oauth/token client_credentials",
            lambda: oauth_token.post("/", data=fixture.token_form(), headers=fixture.basic_headers()),
        ),
        ("bare_txn", lambda: bare_txn.post("/", json=body)),
    ]
    for label, call in cases:
        for _ in range(min(50, requests)):  # warm: clients built, modules imported
            call()
        profiler = cProfile.Profile(time.thread_time)  # CPU only: waits on the emulator are not counted
        began = time.thread_time()
        profiler.enable()
        for _ in range(requests):
            if call().status_code != 200:
                sys.exit(f"error: {label} failed while profiled")
        profiler.disable()
        cpu = (time.thread_time() - began) / requests * 1e6
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(15)
        stats.sort_stats("cumulative").print_stats(
            r"/shared/|/bench/|firestore_v1/(transaction|client|base_client)", 30
        )
        say(f"\n--- {label}: {cpu:.0f} us of this thread's CPU per request under the profiler")
        say("\n".join(line for line in out.getvalue().splitlines() if line.strip()))


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/oauth", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller counts (a couple of minutes)")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="also cProfile N in-process requests each")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args(argv)
    profile = QUICK if args.quick else FULL
    use_dev_defaults()
    os.environ.setdefault("AGENTPACK_ISSUER", BENCH_ISSUER)
    started = time.monotonic()
    say(f"agentpack identity OAuth benchmark ({profile.name}); python {sys.version.split()[0]}, {os.cpu_count()} cores")
    say(f"load average at start: {load_average()} (other processes on these cores make every figure noisier)")
    report = Report()
    with tempfile.TemporaryDirectory(prefix="agentpack-bench-oauth-") as logs, datastore() as host:
        counter = install_counter()
        from shared import config, store

        config.reset()
        store.reset()
        meter = ResolutionMeter(counter)
        app = InProcess()
        fixture = make_fixture(app)
        measure_round_trips(app, counter, meter, fixture, access_token(app, fixture), profile, report)
        if args.profile > 0:
            profile_in_process(app, fixture, access_token(app, fixture), min(args.profile, 5000))
        # A fresh token for the served runs: it lives access_token_ttl_seconds (900 s by default).
        measure_served_access_token(fixture, access_token(app, fixture), host, profile, report, Path(logs))
        measure_served_token_endpoint(fixture, host, profile, report, Path(logs))
    missed = report.print_table()
    say(f"load average at end: {load_average()}; total time {time.monotonic() - started:.0f} s")
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
