"""Benchmark of OAuth access-token verification: ``shared.access_tokens.verify`` against its baselines.

Run with ``.venv/bin/python -m bench.access_tokens`` from the repo root. Not part of the tests;
needs no emulator. Modelled on ``bench/tokens.py`` (its batch timer and samples are imported from
there). One access token, minted here with the dev signing keys (``AGENTPACK_TOKEN_SIGNING_KEYS`` of
emulator-config/dev.env, as ``shared.config`` loads them) and shaped as ``/oauth/token``'s
client_credentials grant makes it, is verified three ways in one process:

* ours: ``access_tokens.verify(token, keys, issuer=..., now=...)``, the offline check a request
  pays for (format, header, signature, claims);
* raw: PyNaCl ``VerifyKey.verify(signing_input, signature)`` on the same token's signing input
  and signature, already decoded: the floor, signature only. Goal: ours >= 0.85x its rate.
* PyJWT: ``jwt.decode(token, key, algorithms=["EdDSA"], audience=issuer, issuer=issuer)`` with the
  key already loaded. Goal: ours >= 2x its rate.

The batches are interleaved (A B C, B C A, C A B, ...); rates are per second of this thread's CPU
time, with wall-clock medians beside them; the ratios are medians of per-round ratios. Every loop is
bounded in count. ``--profile`` adds a cProfile of ``verify`` alone.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.tokens import PYJWT_GOAL, RAW_GOAL, Samples, load_average, run_batch  # noqa: E402 - path first

ISSUER = "http://127.0.0.1:8000"
AGENT_ID = "agt_0123456789ABCDEFGHIJkl"
SCOPES = ["agents/get"]
NAMES = ("ours", "raw", "pyjwt")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.access_tokens",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="example:\n  .venv/bin/python -m bench.access_tokens --count 20000 --rounds 40",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--count", type=int, default=20000, help="verifications per contender (default 20000)")
    parser.add_argument("--rounds", type=int, default=40, help="interleaved rounds the count is split into")
    parser.add_argument("--quick", action="store_true", help="--count 4000 --rounds 20")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of ours (not timed)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args(argv)
    count, rounds = (4000, 20) if args.quick else (max(1, args.count), args.rounds)
    rounds = max(1, min(rounds, count))
    per_round = max(1, count // rounds)

    import jwt
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from nacl.signing import VerifyKey

    from bench.core import use_dev_defaults
    from shared import access_tokens, config, jws

    use_dev_defaults()
    config.reset()
    keys = config.token_signing_keys()  # the dev signing keys, parsed as the service parses them
    public = keys.public_key(keys.signing_kid)
    pyjwt_key = Ed25519PublicKey.from_public_bytes(public)
    nacl_key = VerifyKey(public)

    def fresh_token() -> tuple[str, float]:
        now = time.time()
        claims = access_tokens.new_claims(
            issuer=ISSUER,
            sub=AGENT_ID,
            aud=ISSUER,
            client_id=AGENT_ID,
            scopes=SCOPES,
            tenant_id="default",
            key_id=f"{AGENT_ID}.dk_0123456789ABCDEFGHIJ",
            iat=int(now),
            ttl_seconds=900,
        )
        return keys.sign(claims), now

    def decoded(token: str) -> tuple[bytes, bytes]:
        signing_input, _, encoded_signature = token.rpartition(".")
        return signing_input.encode("ascii"), jws.b64decode(encoded_signature)

    def pyjwt_decode(token: str) -> object:
        return jwt.decode(token, pyjwt_key, algorithms=["EdDSA"], audience=ISSUER, issuer=ISSUER)

    token, now = fresh_token()
    message, signature = decoded(token)
    # Each contender must succeed on this token before it is timed.
    assert access_tokens.verify(token, keys, issuer=ISSUER, now=now).sub == AGENT_ID
    assert nacl_key.verify(message, signature) == message
    assert pyjwt_decode(token)["sub"] == AGENT_ID  # type: ignore[index]
    print(f"token: {len(token)} characters, header {jwt.get_unverified_header(token)}, key {keys!r}")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load average at start: {load_average()}")
    print(f"{rounds} interleaved rounds x {per_round} verifications per contender", flush=True)

    samples = {name: Samples() for name in NAMES}
    for number in range(rounds):
        # A new token each round (same shape), so PyJWT's wall-clock exp check never fails mid-run.
        token, now = fresh_token()
        message, signature = decoded(token)
        calls: dict[str, Callable[[], object]] = {
            "ours": lambda token=token, now=now: access_tokens.verify(token, keys, issuer=ISSUER, now=now),  # type: ignore[misc]
            "raw": lambda message=message, signature=signature: nacl_key.verify(message, signature),  # type: ignore[misc]
            "pyjwt": lambda token=token: pyjwt_decode(token),  # type: ignore[misc]
        }
        order = NAMES[number % 3 :] + NAMES[: number % 3]
        for name in order:
            run_batch(calls[name], per_round, samples[name])

    def median(name: str, clock: str) -> float:
        s = samples[name]
        return statistics.median(s.cpu_rates if clock == "cpu" else s.wall_rates)

    def ratio(a: str, b: str, clock: str) -> float:
        sa, sb = samples[a], samples[b]
        ra, rb = (sa.cpu_rates, sb.cpu_rates) if clock == "cpu" else (sa.wall_rates, sb.wall_rates)
        return statistics.median(x / y for x, y in zip(ra, rb, strict=True))

    labels = {
        "ours": "access_tokens.verify (ours)",
        "raw": "PyNaCl VerifyKey.verify (raw)",
        "pyjwt": "PyJWT jwt.decode",
    }
    print()
    print(f"{'contender':32s} {'verif/s (cpu)':>14s} {'verif/s (wall)':>15s} {'us each (cpu)':>14s}")
    print("-" * 78)
    for name in NAMES:
        cpu_rate = median(name, "cpu")
        print(f"{labels[name]:32s} {cpu_rate:14,.0f} {median(name, 'wall'):15,.0f} {1e6 / cpu_rate:14.1f}")
    goals = [("ours", "raw", RAW_GOAL), ("ours", "pyjwt", PYJWT_GOAL)]
    print()
    print(
        f"{'figure':32s} {'measured/s':>11s} {'baseline/s':>11s} {'ratio cpu':>10s} {'ratio wall':>11s} "
        f"{'goal':>8s}  result"
    )
    print("-" * 98)
    missed = 0
    for a, b, goal in goals:
        cpu_ratio = ratio(a, b, "cpu")
        ok = cpu_ratio >= goal
        missed += not ok
        print(
            f"{'ours / ' + b:32s} {median(a, 'cpu'):11,.0f} {median(b, 'cpu'):11,.0f} {cpu_ratio:10.3f} "
            f"{ratio(a, b, 'wall'):11.3f} {'>= ' + str(goal):>8s}  {'PASS' if ok else 'MISS'}"
        )
    print(f"{len(goals) - missed} goals met, {missed} missed")
    print(f"\nload average at end: {load_average()}")
    if args.profile:
        token, now = fresh_token()
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(per_round * 5):
            access_tokens.verify(token, keys, issuer=ISSUER, now=now)
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(15)
        print(f"\ncProfile of {per_round * 5} access_tokens.verify calls (tottime order):")
        print(out.getvalue())
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
