"""A bounded load run on this machine (issue 13): the token endpoint and a device-key write route, at once.

Run with ``.venv/bin/python -m bench.load --seconds 60`` from the repo root. Not part of the tests.
It starts a Firestore emulator on a free loopback port and serves every route on one port against
it, with ``scripts.serve``'s own app and server (what ``scripts/serve`` runs, less the Auth emulator:
no route of this run reads a user); ``--url`` uses a server already running instead, with
``FIRESTORE_EMULATOR_HOST`` naming its emulator (nothing is wiped: this run's requests are told apart
by their request IDs).

For ``--seconds``, ``--workers`` threads (keep-alive connections) split in two halves hammer:

- ``POST /oauth/token``, ``client_credentials`` with a device key as the client secret (HTTP Basic);
- a device key's own writes: ``device/issue`` of a new key, then ``device/revoke`` of that key.

It prints throughput, p50 and p99 latency and errors per route, then reads the emulator and checks
that nothing was lost: every success has exactly one audit event of its action with its request ID,
no failure has one, every issued key is stored, and every revoked one is revoked. Exit status 1 if
not. Loopback only; every loop is bounded in time. The machine's load average is printed before
and after: the cores are shared by the emulators, the server and this client (and anything else).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.core import cpu_seconds, emulator_pids, free_port, load_average, say, use_dev_defaults  # noqa: E402 - the repo root goes on the path first

FORM = "application/x-www-form-urlencoded"
ACTIONS = {"oauth/token": "token.issue", "device/issue": "device.issue", "device/revoke": "device.revoke"}


@dataclass
class Tally:
    """What the workers saw, per route: latencies of successes, statuses, request IDs."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    succeeded: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    failed: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    transport_errors: Counter[str] = field(default_factory=Counter)
    issued: list[str] = field(default_factory=list)  # device key paths issued
    revoked: list[str] = field(default_factory=list)  # and of those, revoked

    def note(self, route: str, request_id: str, status: int, seconds: float) -> None:
        with self.lock:
            self.statuses[route][status] += 1
            if 200 <= status < 300:
                self.latencies[route].append(seconds)
                self.succeeded[route].add(request_id)
            else:
                self.failed[route].add(request_id)


class Client:
    """One keep-alive connection; a request is (status, JSON answer), its time noted in the tally."""

    def __init__(self, port: int, tally: Tally, run: str, worker: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.tally, self.prefix, self.count = tally, f"{run}-{worker}", 0

    def post(self, route: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        self.count += 1
        request_id = f"{self.prefix}-{self.count}"
        began = time.perf_counter()
        try:
            self.conn.request("POST", "/" + route, body=body, headers={**headers, "x-request-id": request_id})
            response = self.conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as error:
            self.conn.close()  # reconnects on the next request
            with self.tally.lock:
                self.tally.transport_errors[f"{route}: {type(error).__name__}"] += 1
                self.tally.failed[route].add(request_id)
            return 0, None
        self.tally.note(route, request_id, response.status, time.perf_counter() - began)
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, None


@dataclass(frozen=True)
class Agent:
    agent_id: str
    device_key: str

    def basic(self) -> dict[str, str]:
        # RFC 6749 §2.3.1: each half form-urlencoded, then HTTP Basic.
        pair = f"{urllib.parse.quote(self.agent_id, safe='')}:{urllib.parse.quote(self.device_key, safe='')}"
        return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode("ascii"), "Content-Type": FORM}

    def device(self) -> dict[str, str]:
        return {"x-agentpack-device-key": self.device_key, "Content-Type": "application/json"}


def make_agents(port: int, count: int) -> list[Agent]:
    tally = Tally()  # setup requests are not part of the run's figures
    client = Client(port, tally, "setup-" + secrets.token_hex(4), 0)
    bridge = {"x-agentpack-key": os.environ["AGENTPACK_BRIDGE_KEY"], "Content-Type": "application/json"}
    agents = []
    for index in range(count):
        body = json.dumps({"display_name": f"load {index}", "scopes": ["agents/get"]}).encode()
        status, created = client.post("agents/create", body, bridge)
        if status != 201:
            sys.exit(f"error: agents/create answered {status}: {created}")
        status, issued = client.post("device/issue", json.dumps({"agent_id": created["agent_id"]}).encode(), bridge)
        if status != 201:
            sys.exit(f"error: device/issue answered {status}: {issued}")
        agents.append(Agent(created["agent_id"], issued["device_key"]))
    return agents


def token_worker(client: Client, agent: Agent, deadline: float) -> None:
    body = b"grant_type=client_credentials"
    while time.monotonic() < deadline:
        client.post("oauth/token", body, agent.basic())


def write_worker(client: Client, agent: Agent, deadline: float) -> None:
    while time.monotonic() < deadline:
        status, issued = client.post("device/issue", b"{}", agent.device())
        if status != 201 or not isinstance(issued, dict):
            continue
        key_path = f"agents/{agent.agent_id}/device_keys/{issued['key_id']}"
        with client.tally.lock:
            client.tally.issued.append(key_path)
        status, _ = client.post("device/revoke", json.dumps({"key_id": issued["key_id"]}).encode(), agent.device())
        if status == 200:
            with client.tally.lock:
                client.tally.revoked.append(key_path)


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def report(tally: Tally, seconds: float) -> None:
    say(f"\n{'route':<15} {'ok':>7} {'ok/s':>8} {'p50':>9} {'p99':>9}  errors")
    for route in ACTIONS:
        done = tally.latencies[route]
        errors = {status: n for status, n in tally.statuses[route].items() if not 200 <= status < 300}
        say(
            f"{route:<15} {len(done):>7} {len(done) / seconds:>8.1f} "
            f"{statistics.median(done) * 1000 if done else float('nan'):>7.1f}ms "
            f"{percentile(done, 0.99) * 1000:>7.1f}ms  {errors or 'none'}"
        )
    if tally.transport_errors:
        say(f"transport errors: {dict(tally.transport_errors)}")


def audit_check(tally: Tally, run: str) -> list[str]:
    """Read the emulator: each success has exactly one event of its action, no failure has one, keys stand."""
    from google.cloud import firestore

    db = firestore.Client(project=os.environ["GOOGLE_CLOUD_PROJECT"])
    events: dict[str, Counter[str]] = defaultdict(Counter)  # action -> request ID -> events
    seen = 0
    for snapshot in db.collection("audit_events").select(["action", "request_id"]).stream():
        event = snapshot.to_dict() or {}
        if str(event.get("request_id", "")).startswith(run + "-"):
            events[event["action"]][event["request_id"]] += 1
            seen += 1
    problems = []
    for route, action in ACTIONS.items():
        found = events[action]
        ok = tally.succeeded[route]
        missing = ok - set(found)
        twice = {rid for rid, n in found.items() if n > 1}
        stray = set(found) - ok  # an event without a success the client saw (a failure, or a lost answer)
        say(f"audit {action:<14} successes {len(ok):>6}  events {sum(found.values()):>6}  "
            f"missing {len(missing)}  duplicated {len(twice)}  without a success {len(stray)}")  # fmt: skip
        if missing or twice:
            problems.append(f"{action}: {len(missing)} successes without their event, {len(twice)} with two")
        lost_answers = stray & tally.failed[route]
        if stray - lost_answers:
            problems.append(f"{action}: {len(stray - lost_answers)} events of no request of this run")
        if lost_answers:  # committed, but the client saw an error (a timeout): reported, not lost
            say(f"  note: {len(lost_answers)} {route} requests failed at the client after their change committed")
    stored = dict(zip(tally.issued, _get_all(db, tally.issued), strict=True))
    absent = [path for path, doc in stored.items() if doc is None]
    unrevoked = [path for path in tally.revoked if (stored.get(path) or {}).get("revoked_at") is None]
    say(f"keys issued {len(tally.issued)}: stored {len(tally.issued) - len(absent)}; "
        f"revoked {len(tally.revoked)}: revoked in the store {len(tally.revoked) - len(unrevoked)}")  # fmt: skip
    if absent or unrevoked:
        problems.append(f"keys: {len(absent)} issued but not stored, {len(unrevoked)} revoked but not revoked")
    say(f"events of this run read back: {seen}")
    return problems


def _get_all(db: Any, paths: list[str]) -> Iterator[dict[str, Any] | None]:
    for start in range(0, len(paths), 300):
        chunk = [db.document(p) for p in paths[start : start + 300]]
        found = {s.reference.path: (s.to_dict() if s.exists else None) for s in db.get_all(chunk)}
        yield from (found.get(ref.path) for ref in chunk)


# scripts.serve's app on its threaded server, as scripts/serve runs it, without waiting for an Auth emulator.
SERVE = (
    "import sys; from scripts import serve; serve.load_dev_defaults(); serve.check_config(); serve.install_logs(); "
    "server = serve.bind('127.0.0.1', int(sys.argv[1]), serve.build_app()); serve.warm_up(); "
    "print('serving every route', flush=True); server.serve_forever()"
)


@contextlib.contextmanager
def served() -> Iterator[tuple[int, list[int], list[int]]]:
    """A fresh Firestore emulator on a free port and every route served against it: the server's port,
    its process and the emulator's (to report their CPU time)."""
    from scripts import emulator

    with emulator.running(free_port()) as firestore_host:
        os.environ["FIRESTORE_EMULATOR_HOST"] = firestore_host
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        logs = Path(tempfile.gettempdir()) / f"agentpack-load-{port}.log"
        with open(logs, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-c", SERVE, str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while b"serving every route" not in logs.read_bytes():
                if process.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"error: the server did not start:\n{logs.read_text()[-2000:]}")
                time.sleep(0.2)
            say(f"serving on 127.0.0.1:{port} (Firestore emulator {firestore_host})")
            yield port, [process.pid], emulator_pids(firestore_host)
        finally:
            emulator.stop_group(process)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to hammer (at most 600)")
    parser.add_argument("--workers", type=int, default=8, help="concurrent connections, half on each route")
    parser.add_argument("--url", help="a server already running (http://127.0.0.1:PORT); else one is started")
    args = parser.parse_args(argv)
    if not 1 <= args.seconds <= 600 or not 2 <= args.workers <= 64:
        parser.error("--seconds from 1 to 600, --workers from 2 to 64")
    use_dev_defaults()
    if args.url is not None:
        parsed = urllib.parse.urlparse(args.url)
        if parsed.hostname not in ("127.0.0.1", "localhost") or parsed.port is None:
            parser.error("--url: a loopback http://127.0.0.1:PORT")
        if not os.environ.get("FIRESTORE_EMULATOR_HOST"):
            parser.error("--url needs FIRESTORE_EMULATOR_HOST naming the server's emulator (to count its events)")
        server: contextlib.AbstractContextManager[tuple[int, list[int], list[int]]]
        server = contextlib.nullcontext((parsed.port, [], []))
    else:
        server = served()
    with server as (port, server_pids, emulator_pids_):
        return run(port, args.seconds, args.workers, server_pids, emulator_pids_)


def run(port: int, seconds: float, workers: int, server_pids: list[int], emulator_pids_: list[int]) -> int:
    run_id = "load-" + secrets.token_hex(6)
    half = workers // 2
    agents = make_agents(port, workers)
    tally = Tally()
    say(f"run {run_id}: {half} token workers, {workers - half} write workers, {seconds:.0f} s; "
        f"load average before: {load_average()}")  # fmt: skip
    deadline = time.monotonic() + seconds
    threads = [
        threading.Thread(
            target=token_worker if index < half else write_worker,
            args=(Client(port, tally, run_id, index), agents[index], deadline),
            daemon=True,
        )
        for index in range(workers)
    ]
    cpu_before = cpu_seconds(server_pids), cpu_seconds(emulator_pids_)
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 60)
    elapsed = time.perf_counter() - began
    server_cpu, emulator_cpu = cpu_seconds(server_pids) - cpu_before[0], cpu_seconds(emulator_pids_) - cpu_before[1]
    say(f"ran {elapsed:.1f} s; load average after: {load_average()}")
    report(tally, elapsed)
    answered = sum(len(done) for done in tally.latencies.values())
    if server_pids and answered:
        say(f"CPU: server {server_cpu:.1f} s ({server_cpu / answered * 1000:.1f} ms a success), "
            f"emulator {emulator_cpu:.1f} s ({emulator_cpu / answered * 1000:.1f} ms a success)")  # fmt: skip
    problems = audit_check(tally, run_id)
    for problem in problems:
        say(f"LOST: {problem}")
    say("nothing lost" if not problems else f"{len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
