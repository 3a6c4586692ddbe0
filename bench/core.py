"""Benchmark of agentpack identity: round trips, served latency and throughput, cold start, scale.

Run with ``bench/run [--quick] [--strict]`` (or ``.venv/bin/python -m bench.core`` from the repo
root). Not part of the tests. Everything is measured in one run against one Firestore emulator: the
one named by ``FIRESTORE_EMULATOR_HOST`` if set (its data is wiped first, as the tests do), else one
started here on a free port with firestore.rules and stopped at the end.

1. Datastore round trips per request: every gRPC call of the Firestore client is counted by an
   interceptor on its emulator channel; requests are driven in process through
   functions-framework's ``create_app(...).test_client()``, the first one on a freshly built client.
   Calls made inside ``shared.credentials.resolve`` are also counted apart ("credential resolution").
2. Served p50 latency and throughput of a device-key ``agents/get`` (functions-framework's own
   gunicorn server, a separate process) against ``bench/bare_read`` (one document read by ID, served
   the same way), with the same load, in short alternating rounds (A B, B A, ...). Latency: p50 of
   all sequential samples of each side. Throughput: median over rounds of the ratio of a round's two
   adjacent runs. The CPU each request costs the server process and the emulator is shown as well.
3. Cold start: a fresh process imports ``agents_get`` and answers its first request (one emulator
   read), wall clock from process start, against ``bench/bare_import`` (imports
   google.cloud.firestore, answers without reading); alternating, medians.
4. Scale: device-key ``agents/get`` p50 (in process) at 1k, 10k and 100k agents, visiting the sizes
   up and back down so that steady drift of the machine cancels; a bare document get is measured
   alongside, in interleaved blocks, as a control.

Every loop is bounded in count and in time. The machine has 2 cores: the emulator, the server and
this client share them (with anything else running), the same way for the product and its baseline.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

VENV_BIN = ROOT / ".venv/bin"
AGENTS_GET_SOURCE = ROOT / "functions/agents_get/main.py"
SECRETS_GET_SOURCE = ROOT / "functions/secrets_get/main.py"
BARE_READ_SOURCE = ROOT / "bench/bare_read/main.py"
BARE_IMPORT_SOURCE = ROOT / "bench/bare_import/main.py"
COLDSTART_SCRIPT = ROOT / "bench/coldstart.py"
SEED_BATCH = 500  # Firestore's limit of writes per batch


@dataclass(frozen=True)
class Profile:
    name: str
    round_trip_requests: int = 5
    warmup: int = 200  # sequential requests per served function before measuring
    warmup_load: int = 2000  # then concurrent ones: the emulator's JVM keeps speeding up for a while
    # Short alternating rounds (A B, B A, A B, ...) so both sides see the same machine load over time.
    latency_rounds: int = 20  # each side gets rounds * per_round sequential requests
    latency_per_round: int = 100
    latency_round_seconds: float = 30.0
    throughput_rounds: int = 8
    throughput_requests: int = 1000  # per round and side
    throughput_workers: int = 8  # functions-framework's gunicorn serves 4 threads per core: 8 here
    throughput_round_seconds: float = 60.0
    cold_repeats: int = 7
    cold_seconds: float = 60.0
    scales: tuple[int, ...] = (1_000, 10_000, 100_000)
    scale_warmup: int = 200
    scale_samples: int = 1500
    scale_block: int = 25  # product and bare-get blocks alternate, so both see the same machine load
    scale_settle_seconds: float = 3.0  # let the emulator finish digesting the writes
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
    throughput_requests=250,
    throughput_rounds=4,
    cold_repeats=3,
    scales=(1_000, 10_000),
    scale_warmup=50,
    scale_samples=300,
    scale_settle_seconds=1.0,
    seed_seconds=120.0,
)


@dataclass
class Row:
    metric: str
    measured: str
    baseline: str
    ratio: str
    goal: str
    ok: bool | None  # None: informational, no goal


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)

    def add(self, metric: str, measured: str, baseline: str, ratio: str, goal: str, ok: bool | None) -> None:
        self.rows.append(Row(metric, measured, baseline, ratio, goal, ok))

    def print_table(self) -> int:
        header = Row("metric", "measured", "baseline", "ratio", "goal", None)
        cells = [
            [r.metric, r.measured, r.baseline, r.ratio, r.goal, "" if r.ok is None else ("PASS" if r.ok else "MISS")]
            for r in [header, *self.rows]
        ]
        cells[0][5] = "result"
        widths = [max(len(row[i]) for row in cells) for i in range(6)]
        line = "  ".join("-" * w for w in widths)
        print()
        print("=" * len(line))
        for i, row in enumerate(cells):
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
            if i == 0:
                print(line)
        print("=" * len(line))
        missed = [r.metric for r in self.rows if r.ok is False]
        passed = sum(1 for r in self.rows if r.ok)
        print(f"{passed} goals met, {len(missed)} missed" + (f": {', '.join(missed)}" if missed else ""))
        return len(missed)


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def say(text: str) -> None:
    print(text, flush=True)


def p50(samples: list[float]) -> float:
    return statistics.median(samples)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


# --------------------------------------------------------------------------------------------
# Environment and emulator


def dev_env() -> dict[str, str]:
    from scripts import emulator

    return emulator.read_dev_env()  # the one reader of emulator-config/dev.env (it strips the shell quotes)


def use_dev_defaults() -> None:
    """Every dev.env value this process's environment does not set already (as scripts/serve does)."""
    for name, value in dev_env().items():
        os.environ.setdefault(name, value)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _proc_stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # state, ppid, pgrp, ..., utime (11), stime (12)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (all their threads), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        fields = _proc_stat(pid)
        if fields is not None:
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def process_group(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _proc_stat(int(entry))
            if fields is not None and int(fields[2]) == pgid:
                members.append(int(entry))
    return members


def emulator_pids(host: str) -> list[int]:
    """The emulator's JVM on this machine, if it is visible (best effort: only to report its CPU)."""
    flag = f"--port={host.rsplit(':', 1)[-1]}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].rsplit(b"/", 1)[-1] == b"java" and flag in argv:
                found.append(int(entry))
    return found


@contextlib.contextmanager
def datastore() -> Iterator[str]:
    from scripts import emulator

    host = os.environ.get("FIRESTORE_EMULATOR_HOST")
    if host:
        if not emulator.is_up(host):
            sys.exit(f"error: FIRESTORE_EMULATOR_HOST={host} does not answer")
        say(f"emulator: using FIRESTORE_EMULATOR_HOST={host} (its data is wiped)")
        emulator.wipe(host)
        yield host
        return
    with emulator.running(free_port()) as address:
        say(f"emulator: started on {address}")
        os.environ["FIRESTORE_EMULATOR_HOST"] = address
        yield address


def child_env(host: str) -> dict[str, str]:
    """The environment of every served or cold-start process: this one's (dev.env defaults filled in by
    ``main``), the emulator, the repo on the path: the served functions see what the in-process ones see."""
    env = dict(os.environ)
    env["FIRESTORE_EMULATOR_HOST"] = host
    env["PYTHONPATH"] = str(ROOT)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # both sides start from byte-compiled files
    return env


# --------------------------------------------------------------------------------------------
# Counting gRPC calls of the Firestore client


class CallCounter:
    """A grpc client interceptor for every call shape: counts calls and keeps their method names."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total = 0
        self.methods: list[str] = []

    def note(self, details: Any) -> None:
        with self._lock:
            self.total += 1
            if len(self.methods) < 1000:
                method = details.method
                self.methods.append(method.decode() if isinstance(method, bytes) else str(method))

    def reset(self) -> None:
        with self._lock:
            self.total = 0
            self.methods.clear()

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        self.note(details)
        return continuation(details, request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        self.note(details)
        return continuation(details, request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        self.note(details)
        return continuation(details, requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        self.note(details)
        return continuation(details, requests)


Interceptor = TypeVar("Interceptor")


def interceptor(kind: type[Interceptor]) -> Interceptor:
    """An instance of ``kind`` that is also each of gRPC's four client interceptor types."""
    import grpc

    bases = (
        grpc.UnaryUnaryClientInterceptor,
        grpc.UnaryStreamClientInterceptor,
        grpc.StreamUnaryClientInterceptor,
        grpc.StreamStreamClientInterceptor,
    )
    made: Interceptor = type(kind.__name__ + "Interceptor", (kind, *bases), {})()
    return made


def install_counter() -> CallCounter:
    """Wrap the channel of every Firestore client built from now on (emulator only) with a counter."""
    import grpc
    from google.cloud.firestore_v1 import base_client

    counter = interceptor(CallCounter)
    original: Any = base_client.BaseClient._emulator_channel

    def counted(self: Any, transport: Any) -> Any:
        return grpc.intercept_channel(original(self, transport), counter)

    base_client.BaseClient._emulator_channel = counted  # type: ignore[method-assign]
    return counter


class ResolutionMeter:
    """Counts the datastore calls made inside ``shared.credentials.resolve``."""

    def __init__(self, counter: CallCounter) -> None:
        from shared import credentials

        self.counter = counter
        self.calls = 0
        original = credentials.resolve

        def resolve(*args: Any, **kwargs: Any) -> Any:
            before = counter.total
            try:
                return original(*args, **kwargs)
            finally:
                self.calls += counter.total - before

        credentials.resolve = resolve


# --------------------------------------------------------------------------------------------
# In-process calls through functions-framework


class InProcess:
    def __init__(self) -> None:
        self._apps: dict[str, Any] = {}

    def client(self, name: str, source: Path | None = None) -> Any:
        if name not in self._apps:
            from functions_framework import create_app

            path = source or ROOT / "functions" / name / "main.py"
            self._apps[name] = create_app(target=name, source=str(path))  # type: ignore[no-untyped-call]
        return self._apps[name].test_client()

    def call(self, route: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        answer = self.client(route.replace("/", "_")).post("/", json=body, headers=headers)
        return int(answer.status_code), answer.get_json(silent=True)


@dataclass(frozen=True)
class Fixture:
    bridge_key: str
    agent_id: str
    device_key: str
    grantee_key: str
    delegation_id: str

    def device_headers(self) -> dict[str, str]:
        return {"x-agentpack-device-key": self.device_key}

    def delegated_headers(self) -> dict[str, str]:
        return {"x-agentpack-device-key": self.grantee_key, "x-agentpack-delegation": self.delegation_id}

    def bridge_headers(self) -> dict[str, str]:
        return {"x-agentpack-key": self.bridge_key}


def make_fixture(app: InProcess) -> Fixture:
    bridge_key = os.environ["AGENTPACK_BRIDGE_KEY"]
    status, answer = app.call("agents/create", {"display_name": "bench agent"}, {"x-agentpack-key": bridge_key})
    if status != 201:
        sys.exit(f"error: agents/create answered {status}: {answer}")
    agent_id = answer["agent_id"]
    status, answer = app.call("device/issue", {"agent_id": agent_id}, {"x-agentpack-key": bridge_key})
    if status != 201:
        sys.exit(f"error: device/issue answered {status}: {answer}")
    device_key = answer["device_key"]
    # A secret, and a second agent that may read it through a delegation (issues 3 and 4).
    app.call("secrets/put", {"name": "bench", "value": "benchmark value"}, {"x-agentpack-device-key": device_key})
    _, grantee = app.call("agents/create", {"display_name": "bench grantee"}, {"x-agentpack-key": bridge_key})
    _, grantee_key = app.call("device/issue", {"agent_id": grantee["agent_id"]}, {"x-agentpack-key": bridge_key})
    grant = {"to_agent": grantee["agent_id"], "scope": ["secrets/get"], "ttl_seconds": 86400}
    status, delegation = app.call("delegate", grant, {"x-agentpack-device-key": device_key})
    if status != 201:
        sys.exit(f"error: delegate answered {status}: {delegation}")
    return Fixture(
        bridge_key=bridge_key,
        agent_id=agent_id,
        device_key=device_key,
        grantee_key=grantee_key["device_key"],
        delegation_id=delegation["delegation_id"],
    )


# --------------------------------------------------------------------------------------------
# 1. Round trips


def measure_round_trips(
    app: InProcess, counter: CallCounter, meter: ResolutionMeter, fixture: Fixture, profile: Profile, report: Report
) -> None:
    say("\n[1] datastore round trips per request (gRPC calls counted on the emulator channel)")
    from shared import store

    agent = {"agent_id": fixture.agent_id}
    secret = {"name": "bench"}
    cases: list[tuple[str, str, dict[str, Any], dict[str, str], int, int | None]] = [
        ("device-key agents/get", "agents/get", agent, fixture.device_headers(), 1, None),
        ("bridge-key agents/get", "agents/get", agent, fixture.bridge_headers(), 1, 0),
        ("bridge-key settings/list", "settings/list", {}, fixture.bridge_headers(), 1, 0),
        ("device-key secrets/get", "secrets/get", secret, fixture.device_headers(), 1, 1),
        ("delegated secrets/get", "secrets/get", secret, fixture.delegated_headers(), 1, 1),
    ]
    for label, route, body, headers, total_goal, resolution_goal in cases:
        totals: list[int] = []
        resolutions: list[int] = []
        methods: list[str] = []
        for index in range(1 + profile.round_trip_requests):
            if index == 0:
                store.reset()  # the first request builds the client and connects: counted too
            counter.reset()
            meter.calls = 0
            status, answer = app.call(route, body, headers)
            if status != 200:
                sys.exit(f"error: {label} answered {status}: {answer}")
            totals.append(counter.total)
            resolutions.append(meter.calls)
            methods = list(counter.methods)
        total, resolution = max(totals), max(resolutions)
        spread = "" if min(totals) == total else f" (varied {min(totals)}..{total})"
        requests = f"{len(totals)} requests, the first on a new client"
        names = ", ".join(m.rsplit("/", 1)[-1] for m in methods) or "none"
        say(
            f"round trips: {label} = {total} (goal {total_goal}){spread}; credential resolution = {resolution}"
            + (f" (goal {resolution_goal})" if resolution_goal is not None else "")
            + f"; calls: {names} ({requests})"
        )
        if resolution_goal is not None:
            report.add(
                f"round trips, {label}: resolution",
                str(resolution),
                "-",
                "-",
                f"= {resolution_goal}",
                resolution == resolution_goal,
            )
        else:
            report.add(f"round trips, {label}: resolution", str(resolution), "-", "-", "-", None)
        report.add(f"round trips, {label}: total", str(total), "-", "-", f"= {total_goal}", total == total_goal)


# --------------------------------------------------------------------------------------------
# 2. Served latency and throughput


class Connection:
    """One keep-alive HTTP/1.1 connection; reconnects once if the server closed an idle one."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def open(self) -> None:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            self.conn.connect()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def post(self, body: bytes, headers: dict[str, str]) -> int:
        for attempt in range(2):
            self.open()
            assert self.conn is not None
            try:
                self.conn.request("POST", "/", body=body, headers=headers)
                response = self.conn.getresponse()
                response.read()
                if response.will_close:
                    self.close()
                return response.status
            except (http.client.RemoteDisconnected, ConnectionError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")


@dataclass
class Served:
    name: str
    port: int
    pgid: int  # functions-framework runs in its own process group: gunicorn's arbiter and worker
    body: bytes
    headers: dict[str, str]
    connection: Connection = field(init=False)

    def __post_init__(self) -> None:
        self.connection = Connection(self.port)


@contextlib.contextmanager
def serve(target: str, source: Path, env: dict[str, str], logs: Path) -> Iterator[tuple[int, int]]:
    port = free_port()
    log_path = logs / f"{target}.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [
                str(VENV_BIN / "functions-framework"),
                "--target",
                target,
                "--source",
                str(source),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"error: functions-framework {target} did not start:\n{log_path.read_text()[-2000:]}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield port, process.pid
    finally:
        from scripts.emulator import stop_group

        stop_group(process)


def sequential(target: Served, count: int, seconds: float) -> list[float]:
    """Latencies of up to ``count`` requests one after another on the target's keep-alive connection."""
    conn = target.connection
    samples: list[float] = []
    deadline = time.monotonic() + seconds
    for _ in range(count):
        start = time.perf_counter()
        status = conn.post(target.body, target.headers)
        samples.append(time.perf_counter() - start)
        if status != 200:
            sys.exit(f"error: {target.name} answered {status}")
        if time.monotonic() > deadline:
            say(f"  note: {target.name} sequential run stopped at its time limit after {len(samples)} requests")
            break
    return samples


def concurrent(target: Served, count: int, workers: int, seconds: float) -> tuple[int, float]:
    """Up to ``count`` requests from ``workers`` keep-alive connections at once: (done, elapsed seconds)."""
    lock = threading.Lock()
    state = {"left": count, "done": 0, "failed": 0}
    start_gate = threading.Barrier(workers + 1)
    deadline = time.monotonic() + seconds

    def worker() -> None:
        conn = Connection(target.port)
        try:
            conn.open()
            start_gate.wait(timeout=30)
            while time.monotonic() < deadline:
                with lock:
                    if state["left"] <= 0:
                        return
                    state["left"] -= 1
                status = conn.post(target.body, target.headers)
                with lock:
                    state["done" if status == 200 else "failed"] += 1
        except (OSError, http.client.HTTPException, threading.BrokenBarrierError):
            with lock:
                state["failed"] += 1
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for thread in threads:
        thread.start()
    start_gate.wait(timeout=30)
    began = time.perf_counter()
    for thread in threads:
        thread.join(timeout=seconds + 30)
    elapsed = time.perf_counter() - began
    if state["failed"]:
        sys.exit(f"error: {target.name}: {state['failed']} requests failed under load")
    if state["done"] < count:
        say(f"  note: {target.name} throughput run stopped at its time limit after {state['done']} requests")
    return state["done"], elapsed


def alternate(rounds: int, pair: tuple[Served, Served], run: Callable[[Served], T]) -> dict[str, list[T]]:
    """Run ``run`` on both targets each round, in the order A B, B A, A B, ... so drift cancels out."""
    results: dict[str, list[T]] = {pair[0].name: [], pair[1].name: []}
    for index in range(rounds):
        order = pair if index % 2 == 0 else (pair[1], pair[0])
        for target in order:
            results[target.name].append(run(target))
    return results


def measure_served(fixture: Fixture, host: str, profile: Profile, report: Report, logs: Path) -> None:
    say("\n[2] served by functions-framework (gunicorn), device-key agents/get vs bare one-document read")
    env = child_env(host)
    body = json.dumps({"agent_id": fixture.agent_id}).encode()
    json_header = {"Content-Type": "application/json"}
    emulator = emulator_pids(host)
    cpu: dict[str, list[tuple[float, float]]] = {"agents_get": [], "bare_read": []}
    with (
        serve("agents_get", AGENTS_GET_SOURCE, env, logs) as (product_port, product_pgid),
        serve("bare_read", BARE_READ_SOURCE, env, logs) as (bare_port, bare_pgid),
    ):
        product = Served("agents_get", product_port, product_pgid, body, {**json_header, **fixture.device_headers()})
        bare = Served("bare_read", bare_port, bare_pgid, body, json_header)
        for target in (product, bare, product, bare):
            sequential(target, profile.warmup // 2, profile.latency_round_seconds)
            concurrent(target, profile.warmup_load // 2, profile.throughput_workers, profile.throughput_round_seconds)

        def latency_round(target: Served) -> list[float]:
            return sequential(target, profile.latency_per_round, profile.latency_round_seconds)

        rounds = alternate(profile.latency_rounds, (product, bare), latency_round)
        for target in (product, bare):
            target.connection.close()
        latency = {name: [sample for run in runs for sample in run] for name, runs in rounds.items()}
        round_ratios = [
            p50(a) / p50(b) for a, b in zip(rounds[product.name], rounds[bare.name], strict=True) if a and b
        ]
        say(
            f"  agents_get/bare_read p50 ratio per round: min {min(round_ratios):.2f}x, "
            f"median {p50(round_ratios):.2f}x, max {max(round_ratios):.2f}x"
        )

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
        tput_ratios = [a / b for a, b in zip(throughput[product.name], throughput[bare.name], strict=True)]
        say(
            f"  agents_get/bare_read throughput ratio per round: min {min(tput_ratios):.2f}x, "
            f"median {p50(tput_ratios):.2f}x, max {max(tput_ratios):.2f}x"
        )
    cpu_ms = {name: [p50([pair[i] for pair in pairs]) * 1000 for i in (0, 1)] for name, pairs in cpu.items()}
    for name, (server_ms, emulator_ms) in cpu_ms.items():
        say(
            f"  CPU per request under load, {name}: server process {server_ms:.2f} ms"
            + (f", emulator {emulator_ms:.2f} ms" if emulator else " (emulator process not visible)")
        )

    product_p50, bare_p50 = p50(latency[product.name]), p50(latency[bare.name])
    latency_ratio = product_p50 / bare_p50
    product_rps, bare_rps = p50(throughput[product.name]), p50(throughput[bare.name])
    throughput_ratio = p50(tput_ratios)  # paired rounds sit next to each other in time: drift cancels
    sequential_total = len(latency[product.name])
    say(
        f"latency p50 ({sequential_total} sequential requests each): agents/get {ms(product_p50)}, "
        f"bare read {ms(bare_p50)}, ratio {latency_ratio:.3f}x (goal <= 1.3x)"
    )
    say(
        f"throughput ({profile.throughput_workers} keep-alive connections, {profile.throughput_rounds} rounds of "
        f"{profile.throughput_requests} requests, medians): agents/get {product_rps:.0f}/s, "
        f"bare read {bare_rps:.0f}/s, "
        f"ratio (median of paired rounds) {throughput_ratio:.3f}x (goal >= 0.75x)"
    )
    report.add(
        "served p50 latency, device-key agents/get",
        ms(product_p50),
        ms(bare_p50),
        f"{latency_ratio:.3f}x",
        "<= 1.3x",
        latency_ratio <= 1.3,
    )
    (product_cpu, product_emulator_cpu), (bare_cpu, bare_emulator_cpu) = cpu_ms["agents_get"], cpu_ms["bare_read"]
    report.add(
        "  server CPU per request under load",
        f"{product_cpu:.2f} ms",
        f"{bare_cpu:.2f} ms",
        f"{product_cpu / bare_cpu:.2f}x",
        "-",
        None,
    )
    if emulator:
        report.add(
            "  emulator CPU per request under load",
            f"{product_emulator_cpu:.2f} ms",
            f"{bare_emulator_cpu:.2f} ms",
            f"{product_emulator_cpu / bare_emulator_cpu:.2f}x",
            "-",
            None,
        )
    report.add(
        "served throughput, device-key agents/get",
        f"{product_rps:.0f} req/s",
        f"{bare_rps:.0f} req/s",
        f"{throughput_ratio:.3f}x",
        ">= 0.75x",
        throughput_ratio >= 0.75,
    )


def measure_served_secret(fixture: Fixture, host: str, profile: Profile, report: Report, logs: Path) -> None:
    say("\n[2b] served by functions-framework, device-key secrets/get vs bare one-document read")
    env = child_env(host)
    json_header = {"Content-Type": "application/json"}
    with (
        serve("secrets_get", SECRETS_GET_SOURCE, env, logs) as (product_port, product_pgid),
        serve("bare_read", BARE_READ_SOURCE, env, logs) as (bare_port, bare_pgid),
    ):
        product = Served(
            "secrets_get", product_port, product_pgid, b'{"name":"bench"}', {**json_header, **fixture.device_headers()}
        )
        bare = Served(
            "bare_read", bare_port, bare_pgid, json.dumps({"agent_id": fixture.agent_id}).encode(), json_header
        )
        for target in (product, bare, product, bare):
            sequential(target, profile.warmup // 2, profile.latency_round_seconds)

        def latency_round(target: Served) -> list[float]:
            return sequential(target, profile.latency_per_round, profile.latency_round_seconds)

        rounds = alternate(profile.latency_rounds, (product, bare), latency_round)
        for target in (product, bare):
            target.connection.close()
    latency = {name: [sample for run in runs for sample in run] for name, runs in rounds.items()}
    product_p50, bare_p50 = p50(latency[product.name]), p50(latency[bare.name])
    ratio = product_p50 / bare_p50
    say(
        f"latency p50 ({len(latency[product.name])} sequential requests each): secrets/get {ms(product_p50)}, "
        f"bare read {ms(bare_p50)}, ratio {ratio:.3f}x (goal <= 1.4x)"
    )
    report.add(
        "served p50 latency, device-key secrets/get",
        ms(product_p50),
        ms(bare_p50),
        f"{ratio:.3f}x",
        "<= 1.4x",
        ratio <= 1.4,
    )


# --------------------------------------------------------------------------------------------
# 3. Cold start


def cold_start(env: dict[str, str], target: str, source: Path, body: dict[str, Any], headers: dict[str, str]) -> float:
    spec = {"target": target, "source": str(source), "body": json.dumps(body), "headers": headers}
    run_env = {**env, "BENCH_COLD_REQUEST": json.dumps(spec)}
    began = time.time()
    finished = subprocess.run(
        [str(VENV_BIN / "python"), str(COLDSTART_SCRIPT)],
        cwd=ROOT,
        env=run_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = finished.stdout.strip().splitlines()
    if finished.returncode != 0 or not lines:
        sys.exit(f"error: cold start of {target} failed:\n{finished.stderr[-2000:]}")
    answer = json.loads(lines[-1])
    if answer["status"] != 200:
        sys.exit(f"error: cold start of {target} answered {answer['status']}")
    return float(answer["done"]) - began


def measure_cold_start(fixture: Fixture, host: str, profile: Profile, report: Report) -> None:
    say("\n[3] cold start: fresh process imports the function and answers its first request")
    env = child_env(host)
    product = ("agents_get", AGENTS_GET_SOURCE, {"agent_id": fixture.agent_id}, fixture.device_headers())
    bare: tuple[str, Path, dict[str, Any], dict[str, str]] = ("bare_import", BARE_IMPORT_SOURCE, {}, {})
    for case in (product, bare):
        cold_start(env, *case)  # untimed: byte-compiled files and the page cache warm for both alike
    times: dict[str, list[float]] = {product[0]: [], bare[0]: []}
    deadline = time.monotonic() + profile.cold_seconds
    for index in range(profile.cold_repeats):
        for case in (product, bare) if index % 2 == 0 else (bare, product):
            times[case[0]].append(cold_start(env, *case))
        if time.monotonic() > deadline:
            say(f"  note: cold starts stopped at their time limit after {index + 1} pairs")
            break
    for name, values in times.items():
        say(f"  {name}: " + ", ".join(f"{v * 1000:.0f} ms" for v in values))
    product_s, bare_s = p50(times[product[0]]), p50(times[bare[0]])
    ratio = product_s / bare_s
    say(
        f"cold start (median of {len(times[product[0]])}): agents/get {product_s * 1000:.0f} ms, "
        f"bare import {bare_s * 1000:.0f} ms, ratio {ratio:.3f}x (goal <= 1.3x)"
    )
    report.add(
        "cold start to first answer, agents/get",
        f"{product_s * 1000:.0f} ms",
        f"{bare_s * 1000:.0f} ms",
        f"{ratio:.3f}x",
        "<= 1.3x",
        ratio <= 1.3,
    )


# --------------------------------------------------------------------------------------------
# 4. Scale


def seed_agents(db: Any, count: int, deadline: float) -> list[str]:
    """Write up to ``count`` agent documents shaped as shared/agents.py makes them, in batches of 500."""
    from shared import ids

    written: list[str] = []
    while len(written) < count and time.monotonic() < deadline:
        batch = db.batch()
        now = datetime.now(UTC)
        chunk = [ids.new_agent_id() for _ in range(min(SEED_BATCH, count - len(written)))]
        for agent_id in chunk:
            batch.set(
                db.document(f"agents/{agent_id}"),
                {
                    "agent_id": agent_id,
                    "display_name": f"seeded {len(written)}",
                    "tenant_id": "default",
                    "created_at": now,
                    "disabled": False,
                    "active_keys": {},
                },
            )
        batch.commit()
        written += chunk
    return written


def delete_agents(db: Any, agent_ids: list[str], deadline: float) -> int:
    """Delete seeded agents in batches of 500; returns how many went."""
    deleted = 0
    while deleted < len(agent_ids) and time.monotonic() < deadline:
        batch = db.batch()
        for agent_id in agent_ids[deleted : deleted + SEED_BATCH]:
            batch.delete(db.document(f"agents/{agent_id}"))
        batch.commit()
        deleted += len(agent_ids[deleted : deleted + SEED_BATCH])
    return deleted


def measure_scale(app: InProcess, fixture: Fixture, profile: Profile, report: Report) -> None:
    say("\n[4] scale: device-key agents/get p50 (in process) as the agents collection grows, then shrinks")
    say("  sizes are visited up then down (1k, 10k, 100k, 10k, 1k): each size's figure is the mean of its")
    say("  two visits, which sit symmetrically around the largest in time, so steady drift cancels out")
    from google.cloud import firestore

    db = firestore.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT", "demo-agentpack"))
    client = app.client("agents_get")
    body = {"agent_id": fixture.agent_id}
    headers = fixture.device_headers()
    agent_ref = db.document(f"agents/{fixture.agent_id}")

    def product_call() -> None:
        answer = client.post("/", json=body, headers=headers)
        if answer.status_code != 200:
            sys.exit(f"error: agents/get answered {answer.status_code}")

    def bare_call() -> None:
        if not agent_ref.get().exists:
            sys.exit("error: the fixture agent is missing")

    def measure(present: int) -> tuple[float, float]:
        time.sleep(profile.scale_settle_seconds)
        for _ in range(profile.scale_warmup):
            product_call()
            bare_call()
        product_samples: list[float] = []
        bare_samples: list[float] = []
        deadline = time.monotonic() + profile.scale_seconds
        while len(product_samples) < profile.scale_samples and time.monotonic() < deadline:
            for call, samples in ((product_call, product_samples), (bare_call, bare_samples)):
                for _ in range(profile.scale_block):
                    start = time.perf_counter()
                    call()
                    samples.append(time.perf_counter() - start)
        figure = (p50(product_samples), p50(bare_samples))
        say(
            f"  {present:>6} agents: agents/get p50 {ms(figure[0])}, bare document get p50 {ms(figure[1])} "
            f"({len(product_samples)} samples each, load {load_average().split()[0]})"
        )
        return figure

    seeded: list[str] = []  # in the order written, so shrinking deletes the newest first
    visits: dict[int, list[tuple[float, float]]] = {}
    sizes = list(profile.scales)
    path = sizes + sizes[-2::-1]  # up, then back down
    for size in path:
        target = size - 1  # the fixture's agent is one of them
        began = time.monotonic()
        if target > len(seeded):
            added = seed_agents(db, target - len(seeded), began + profile.seed_seconds)
            seeded += added
            took = time.monotonic() - began
            say(f"  seeded {len(added)} agents in {took:.1f} s ({len(added) / max(took, 1e-9):.0f}/s)")
        elif target < len(seeded):
            gone = delete_agents(db, seeded[target:], began + profile.seed_seconds)
            del seeded[len(seeded) - gone :]
            took = time.monotonic() - began
            say(f"  deleted {gone} agents in {took:.1f} s ({gone / max(took, 1e-9):.0f}/s)")
        present = len(seeded) + 1
        if present != size:
            say(f"  note: seeding or deleting stopped at its time limit ({profile.seed_seconds:.0f} s); stopping here")
            break
        visits.setdefault(size, []).append(measure(present))
    delete_agents(db, seeded, time.monotonic() + profile.seed_seconds)  # leave the datastore as found

    figures = {
        size: (statistics.fmean(v[0] for v in runs), statistics.fmean(v[1] for v in runs))
        for size, runs in visits.items()
    }
    for size, runs in sorted(visits.items()):
        if len(runs) > 1:
            spread = max(r[0] for r in runs) / min(r[0] for r in runs) - 1
            say(
                f"  {size} agents, its two visits: agents/get p50 {' and '.join(ms(r[0]) for r in runs)} "
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
            f"scale: agents/get p50 at {size} agents / at {base_size} = {ratio:.3f}x (goal <= 1.2x); "
            f"bare document get {bare_ratio:.2f}x, so agents/get relative to it {ratio / bare_ratio:.2f}x"
        )
        report.add(
            f"agents/get p50 at {size:,} agents vs {base_size:,}",
            ms(product_p50),
            ms(base_product),
            f"{ratio:.3f}x",
            "<= 1.2x",
            ratio <= 1.2,
        )
        report.add(
            "  the same, relative to a bare document get",
            f"{product_p50 / bare_p50:.2f}x get",
            f"{base_product / base_bare:.2f}x get",
            f"{ratio / bare_ratio:.2f}x",
            "-",
            None,
        )


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller counts, at most 10k agents")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args(argv)
    profile = QUICK if args.quick else FULL
    use_dev_defaults()
    started = time.monotonic()
    say(f"agentpack identity benchmark ({profile.name}); python {sys.version.split()[0]}, {os.cpu_count()} cores")
    say(f"load average at start: {load_average()} (other processes on these cores make every figure noisier)")
    report = Report()
    with tempfile.TemporaryDirectory(prefix="agentpack-bench-") as logs, datastore() as host:
        counter = install_counter()
        from shared import config, store

        config.reset()
        store.reset()
        meter = ResolutionMeter(counter)
        app = InProcess()
        fixture = make_fixture(app)
        measure_round_trips(app, counter, meter, fixture, profile, report)
        measure_served(fixture, host, profile, report, Path(logs))
        measure_served_secret(fixture, host, profile, report, Path(logs))
        measure_cold_start(fixture, host, profile, report)
        measure_scale(app, fixture, profile, report)
    missed = report.print_table()
    say(f"load average at end: {load_average()}; total time {time.monotonic() - started:.0f} s")
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
