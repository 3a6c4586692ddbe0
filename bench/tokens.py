"""Benchmark of capability-token verification: ``shared.tokens.verify`` against its baselines.

Run with ``.venv/bin/python -m bench.tokens`` from the repo root. Not part of the tests; needs no
emulator. One token, minted here, is verified three ways in one process:

* ours: ``tokens.verify(token, keys, now=...)``, the whole check a request pays for (format,
  header, signature, claims);
* raw: PyNaCl ``VerifyKey.verify(signing_input, signature)`` on the same token's signing input
  and signature, already decoded: the floor, signature only. Goal: ours >= 0.85x its rate.
* PyJWT: ``jwt.decode(token, key, algorithms=["EdDSA"], audience="agentpack")`` with the key
  already loaded. Goal: ours >= 2x its rate.

Each contender runs the same number of verifications in batches; the batches are interleaved
(A B C, B C A, C A B, ...) so that drift of the machine's load hits all three alike. Each round
yields a rate per contender and a ratio between contenders of that round; the table shows the
medians. Rates are per second of this thread's CPU time (``time.thread_time``): on a machine shared
with other work, wall-clock time also counts the time this process waited for a core. Wall-clock
medians are shown beside them for reference. Every loop is bounded in count.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

AGENT_ID = "agt_0123456789ABCDEFGHIJkl"
SCOPES = ["secrets/get", "secrets/list"]
RAW_GOAL = 0.85
PYJWT_GOAL = 2.0


@dataclass
class Samples:
    cpu_rates: list[float] = field(default_factory=list)
    wall_rates: list[float] = field(default_factory=list)


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def run_batch(call: Callable[[], object], count: int, samples: Samples) -> None:
    wall, cpu = time.perf_counter(), time.thread_time()
    for _ in range(count):
        call()
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    samples.cpu_rates.append(count / cpu if cpu > 0 else float("inf"))
    samples.wall_rates.append(count / wall)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.tokens",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="example:\n  .venv/bin/python -m bench.tokens --count 20000 --rounds 40",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--count", type=int, default=20000, help="verifications per contender (default 20000)")
    parser.add_argument("--rounds", type=int, default=40, help="interleaved rounds the count is split into")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args(argv)
    rounds = max(1, min(args.rounds, args.count))
    per_round = max(1, args.count // rounds)

    import jwt
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from nacl.signing import VerifyKey

    from shared import crypto, tokens

    seed, public = crypto.new_signing_key()
    keys = tokens.KeySet({"bench-1": public})
    pyjwt_key = Ed25519PublicKey.from_public_bytes(public)
    nacl_key = VerifyKey(public)

    def fresh_token() -> tuple[str, datetime]:
        now = datetime.now(UTC).replace(microsecond=0)
        return tokens.mint(seed, "bench-1", AGENT_ID, SCOPES, 300, now), now

    token, now = fresh_token()
    signing_input, _, encoded_signature = token.rpartition(".")
    signature = tokens._b64decode(encoded_signature)

    # Each contender must succeed on this token before it is timed.
    assert tokens.verify(token, keys, now=now).agent_id == AGENT_ID
    assert nacl_key.verify(signing_input.encode("ascii"), signature) == signing_input.encode("ascii")
    assert jwt.decode(token, pyjwt_key, algorithms=["EdDSA"], audience="agentpack")["sub"] == AGENT_ID
    print(f"token: {len(token)} characters, header {jwt.get_unverified_header(token)}")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load average at start: {load_average()}")
    print(f"{rounds} interleaved rounds x {per_round} verifications per contender", flush=True)

    names = ("ours", "raw", "pyjwt")
    samples = {name: Samples() for name in names}
    for number in range(rounds):
        # A new token each round (same shape), so PyJWT's wall-clock exp check never fails mid-run.
        token, now = fresh_token()
        signing_input, _, encoded_signature = token.rpartition(".")
        message, signature = signing_input.encode("ascii"), tokens._b64decode(encoded_signature)
        calls: dict[str, Callable[[], object]] = {
            "ours": lambda token=token, now=now: tokens.verify(token, keys, now=now),  # type: ignore[misc]
            "raw": lambda message=message, signature=signature: nacl_key.verify(message, signature),  # type: ignore[misc]
            "pyjwt": lambda token=token: jwt.decode(token, pyjwt_key, algorithms=["EdDSA"], audience="agentpack"),  # type: ignore[misc]
        }
        order = names[number % 3 :] + names[: number % 3]
        for name in order:
            run_batch(calls[name], per_round, samples[name])

    def median(name: str, clock: str) -> float:
        s = samples[name]
        return statistics.median(s.cpu_rates if clock == "cpu" else s.wall_rates)

    def ratio(a: str, b: str, clock: str) -> float:
        sa, sb = samples[a], samples[b]
        ra, rb = (sa.cpu_rates, sb.cpu_rates) if clock == "cpu" else (sa.wall_rates, sb.wall_rates)
        return statistics.median(x / y for x, y in zip(ra, rb, strict=True))

    rows = [
        ("tokens.verify (ours)", median("ours", "cpu"), median("ours", "wall"), "", "", ""),
        ("PyNaCl VerifyKey.verify (raw)", median("raw", "cpu"), median("raw", "wall"), "", "", ""),
        ("PyJWT jwt.decode", median("pyjwt", "cpu"), median("pyjwt", "wall"), "", "", ""),
    ]
    goals = [
        ("ours / raw", ratio("ours", "raw", "cpu"), ratio("ours", "raw", "wall"), RAW_GOAL),
        ("ours / PyJWT", ratio("ours", "pyjwt", "cpu"), ratio("ours", "pyjwt", "wall"), PYJWT_GOAL),
    ]
    print()
    print(f"{'contender':32s} {'verif/s (cpu)':>14s} {'verif/s (wall)':>15s} {'us each (cpu)':>14s}")
    print("-" * 78)
    for name, cpu_rate, wall_rate, *_ in rows:
        print(f"{name:32s} {cpu_rate:14,.0f} {wall_rate:15,.0f} {1e6 / cpu_rate:14.1f}")
    print()
    print(f"{'ratio (median of rounds)':32s} {'cpu':>8s} {'wall':>8s} {'goal':>8s}  result")
    print("-" * 78)
    missed = 0
    for name, cpu_ratio, wall_ratio, goal in goals:
        ok = cpu_ratio >= goal
        missed += not ok
        print(f"{name:32s} {cpu_ratio:8.3f} {wall_ratio:8.3f} {'>= ' + str(goal):>8s}  {'PASS' if ok else 'MISS'}")
    print(f"\nload average at end: {load_average()}")
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
