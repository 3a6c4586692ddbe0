"""The delegated ``secrets/get`` timing oracle: does a refusal take longer when the grantor holds a large secret?

Run with ``.venv/bin/python -m bench.secret_oracle [--samples N] 2>/dev/null`` from the repo root (the
service's JSON log lines go to standard error). Not part of the tests. Against the Firestore emulator
named by ``FIRESTORE_EMULATOR_HOST`` (its data is wiped), else one started here on a free port and
stopped at the end; requests go through functions-framework's ``create_app(...).test_client()`` in
process.

An agent with a valid device key names another agent's secret through a delegation it does not hold.
A delegation ID names its grantor, so anyone can write one of the right shape; only the service can
write one whose tag matches (``shared/read_ahead.py``). Every such request is the same ``403``.
Two grantors hold a secret of the asked name: one of a few bytes, one of 48 KiB. Measured, one of each
in turn, in a new shuffled order each round, so the load of the machine falls on all alike:

* refusals of a written (untagged) ID naming each grantor, and a second grantor with a small secret
  (the control: the difference that is only noise). Nothing of the secret is read: large / small
  should be within the control's spread;
* refusals of a real delegation to the asker that each grantor has revoked (its tag still matches
  until it expires, so the secret is read ahead and dropped unread): the residual that
  docs/security.md describes, shown, not hidden;
* refusals of a written device key (its checksum is public) of each grantor itself, asking for its
  own secret: like a written delegation ID, it reads nothing of the secret;
* refusals of a real device key of each grantor, since revoked: its tag still matches, so its
  secret comes in the key's read (the other residual docs/security.md describes);
* for reference, a valid delegated read of the small secret (one round trip).

The medians and the CPU this process spent on each are printed. The emulator shares this machine's
cores, so the work it does for a large secret shows in wall time; the CPU column is the service's own.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import core  # noqa: E402

LARGE_BYTES = 48 * 1024


def client(name: str) -> Any:
    from functions_framework import create_app

    source = str(ROOT / "functions" / name / "main.py")
    return create_app(target=name, source=source).test_client()  # type: ignore[no-untyped-call]


def call(route: str, body: Any, headers: dict[str, str], expect: int) -> Any:
    answer = client_of(route).post("/", json=body, headers=headers)
    assert answer.status_code == expect, (route, answer.status_code, answer.get_json())
    return answer.get_json()


_clients: dict[str, Any] = {}


def client_of(route: str) -> Any:
    name = route.replace("/", "_")
    if name not in _clients:
        _clients[name] = client(name)
    return _clients[name]


def new_agent(bridge: dict[str, str]) -> tuple[str, str]:
    agent_id = call("agents/create", {"display_name": "bench"}, bridge, 201)["agent_id"]
    key = call("device/issue", {"agent_id": agent_id}, bridge, 201)["device_key"]
    return agent_id, key


def timed(request: Callable[[], Any]) -> float:
    started = time.perf_counter()
    request()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=1000, help="refusals measured per side (default 1000)")
    args = parser.parse_args()
    core.use_dev_defaults()
    from shared import ids, keys

    with core.datastore():
        bridge = {"x-agentpack-key": os.environ["AGENTPACK_BRIDGE_KEY"]}
        deadline = time.monotonic() + 120  # a fresh emulator's first answers can take seconds
        body = {"key": "secret_max_bytes", "value": 49152}
        while client_of("settings/set").post("/", json=body, headers=bridge).status_code != 200:
            assert time.monotonic() < deadline, "the emulator does not answer"
            time.sleep(0.5)
        asker_id, asker_key = new_agent(bridge)
        small_id, small_key = new_agent(bridge)
        twin_id, twin_key = new_agent(bridge)
        large_id, large_key = new_agent(bridge)
        dev = "x-agentpack-device-key"
        call("secrets/put", {"name": "db", "value": "v" * 8}, {dev: small_key}, 200)
        call("secrets/put", {"name": "db", "value": "w" * 8}, {dev: twin_key}, 200)
        call("secrets/put", {"name": "db", "value": "v" * LARGE_BYTES}, {dev: large_key}, 200)
        grant = {"to_agent": asker_id, "scope": ["secrets/get"], "ttl_seconds": 3600}
        granted = call("delegate", grant, {dev: small_key}, 201)
        revoked = {}
        for grantor_key in (small_key, large_key):
            revoked[grantor_key] = call("delegate", grant, {dev: grantor_key}, 201)["delegation_id"]
            call("delegate/revoke", {"delegation_id": revoked[grantor_key]}, {dev: grantor_key}, 200)

        def refusal(delegation_id: str) -> Callable[[], Any]:
            headers = {dev: asker_key, "x-agentpack-delegation": delegation_id}
            return lambda: call("secrets/get", {"name": "db"}, headers, 403)

        def written(grantor_id: str) -> str:
            return "dlg_" + ids.agent_part(grantor_id) + ids.random_base62(ids.PART_LENGTH)

        def key_refusal(key: str) -> Callable[[], Any]:
            return lambda: call("secrets/get", {"name": "db"}, {dev: key}, 401)

        def written_key(agent_id: str) -> Callable[[], Any]:
            return key_refusal(keys.new_device_key(ids.new_device_key_id(agent_id), keys.random_secret()))

        def revoked_key(agent_id: str) -> Callable[[], Any]:
            issued = call("device/issue", {"agent_id": agent_id}, bridge, 201)
            call("device/revoke", {"key_id": issued["key_id"]}, bridge, 200)
            return key_refusal(issued["device_key"])

        valid_headers = {dev: asker_key, "x-agentpack-delegation": granted["delegation_id"]}

        def valid() -> Any:
            return call("secrets/get", {"name": "db"}, valid_headers, 200)

        sides = {
            "small": refusal(written(small_id)),
            "twin": refusal(written(twin_id)),
            "large": refusal(written(large_id)),
            "revoked small": refusal(revoked[small_key]),
            "revoked large": refusal(revoked[large_key]),
            "key small": written_key(small_id),
            "key large": written_key(large_id),
            "revoked key small": revoked_key(small_id),
            "revoked key large": revoked_key(large_id),
            "valid": valid,
        }
        for request in sides.values():  # warm up the channels, the JVM and the code paths
            for _ in range(200):
                request()
        samples: dict[str, list[float]] = {name: [] for name in sides}
        cpu: dict[str, list[float]] = {name: [] for name in sides}
        shuffled = random.Random(20261202)  # the same orders every run
        for _ in range(args.samples):  # one of each in turn, shuffled: the machine's load falls on all
            for name in shuffled.sample(list(sides), len(sides)):
                started = time.process_time()
                samples[name].append(timed(sides[name]))
                cpu[name].append(time.process_time() - started)
    ms = {name: statistics.median(samples[name]) * 1000 for name in sides}
    cpu_us = {name: statistics.mean(cpu[name]) * 1e6 for name in sides}

    def row(label: str, name: str) -> str:
        return f"  {label:<52}{ms[name]:.3f} ms ({cpu_us[name]:.0f} us)"

    def ratio(a: str, b: str) -> str:
        return f"{ms[a] / ms[b]:.3f} ({1000 * (ms[a] - ms[b]):+.0f} us)"

    print(f"refused secrets/get, median wall time of {args.samples} each (mean CPU of this process):")
    sections = [
        ("a written delegation ID (what anyone can send):", "small", "large"),
        (
            "a delegation the grantor gave the asker, then revoked (read ahead until it expires):",
            "revoked small",
            "revoked large",
        ),
        ("a written device key of the grantor, asking for its own secret:", "key small", "key large"),
        (
            "a device key the service gave the grantor, since revoked (its secret comes in the key's read):",
            "revoked key small",
            "revoked key large",
        ),
    ]
    for title, small, large in sections:
        print(" " + title)
        print(row("grantor holds an 8-byte secret of that name:", small))
        if small == "small":
            print(row("another grantor, another 8-byte secret:", "twin"))
        print(row(f"grantor holds a {LARGE_BYTES // 1024} KiB secret of that name:", large))
        control = f"; the control, twin / small: {ratio('twin', 'small')}" if small == "small" else ""
        print(f"  large / small: {ratio(large, small)}{control}")
    print(row("valid delegated secrets/get of the 8-byte secret:", "valid").lstrip())


if __name__ == "__main__":
    main()
