"""docs/quickstart.md and docs/walkthrough.md, run top to bottom with bash as a newcomer would.

Every ```bash block of a doc runs, in order, in one bash process from the repository root, in a
temporary HOME, with PORT on a free port and the emulators the docs' ``scripts/serve &`` starts on
free ports too (AGENTPACK_*_EMULATOR_PORT): nothing else is adapted. An ERR trap reports any command
that fails; markers between blocks let each step's output be checked against what the doc says.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from scripts import emulator
from tests import log_scan
from tests.conftest import ROOT
from tests.local_server import answers, clean_env, own_emulator_ports

DOCS = ROOT / "docs"
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
ANSWER = re.compile(r"^(\d{3}) (\{.*\})$", re.MULTILINE)


def bash_blocks(doc: Path) -> list[str]:
    fences = FENCE.findall(doc.read_text())
    assert fences, f"{doc.name} has no code blocks"
    assert all(language == "bash" for language, _ in fences), f"{doc.name}: every code block is marked bash"
    return [code for _, code in fences]


def script(doc: Path) -> str:
    """The doc's blocks, with a marker before each and an ERR trap reporting any failing command."""
    lines = ["set -E", """trap 'echo "@@failed ($?) at line $LINENO: $BASH_COMMAND" >&2' ERR"""]
    for number, block in enumerate(bash_blocks(doc)):
        lines += [f"printf '\\n@@block {number}\\n'", block]
    lines.append("""printf '\\n@@server %s\\n' "${SERVER:-}" """)
    return "\n".join(lines) + "\n"


@dataclass
class Run:
    blocks: list[str]  # the standard output of each block
    stderr: str
    server: int | None  # the PID of the scripts/serve the doc started, if it started one


def run_doc(doc: Path, env: dict[str, str], tmp_path: Path) -> Run:
    out, err = tmp_path / f"{doc.stem}.out", tmp_path / f"{doc.stem}.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        shell = subprocess.Popen(
            ["bash", "-c", script(doc)], cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr
        )
        try:
            code = shell.wait(timeout=600)
        except subprocess.TimeoutExpired:
            shell.kill()
            raise
    printed, errors = out.read_text(), err.read_text()
    log_scan.SESSION.feed(f"{doc.name}: scripts/serve", errors)  # the served JSON log lines, scanned
    assert code == 0, errors[-3000:]
    parts = re.split(r"\n@@block \d+\n", printed)
    last, _, server = parts[-1].partition("\n@@server ")
    return Run(blocks=[*parts[1:-1], last], stderr=errors, server=int(server) if server.strip() else None)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stop_server(pid: int | None, ports: dict[str, str], port: str) -> None:
    """What ``kill $SERVER`` does for a reader: scripts/serve stops, and with it both its emulators."""
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)
        pytest.fail("scripts/serve did not stop on SIGTERM")
    for host_port in (port, *ports.values()):
        assert not answers(f"127.0.0.1:{host_port}"), f"something still answers on {host_port}"


def post(url: str, body: Any, headers: dict[str, str]) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json", **headers}
    )
    with urllib.request.urlopen(request, timeout=15) as answer:
        return json.loads(answer.read())


def answers_in(block: str) -> list[tuple[int, dict[str, Any]]]:
    return [(int(status), json.loads(body)) for status, body in ANSWER.findall(block)]


def newcomer(tmp_path: Path) -> tuple[dict[str, str], dict[str, str], str]:
    home = tmp_path / "home"
    home.mkdir()
    ports, port = own_emulator_ports(), str(emulator.free_port())
    return clean_env({"PORT": port, **ports}, home=home), ports, port


def check_quickstart(run: Run, home: Path, url: str) -> None:
    assert "@@failed" not in run.stderr, run.stderr[-3000:]
    assert run.server is not None and alive(run.server), "the quick start leaves its server running"
    files = home / ".agentpack"
    for name in ("bridge.key", "alice.key", "bob.key"):
        assert (files / name).stat().st_mode & 0o777 == 0o600, name
    printed = "".join(run.blocks)
    assert "apkd_" not in printed and (files / "bridge.key").read_text().strip() not in printed  # keys printed nowhere
    *_, read, upkeep = run.blocks
    assert len(run.blocks) == 6
    assert read.strip("\n") == "correct horse"  # step 4: the value, and only it, read through the delegation
    # Step 5: alice's key was rotated in place; the audit trail holds every change, read here independently.
    bridge_key = (files / "bridge.key").read_text().strip()
    alice = post(f"{url}/agents/list", {"page_size": 200}, {"x-agentpack-key": bridge_key})["agents"]
    alice_id = next(agent["agent_id"] for agent in alice if agent["display_name"] == "alice")
    assert alice_id in upkeep
    keys = post(f"{url}/device/list", {"agent_id": alice_id}, {"x-agentpack-key": bridge_key})["keys"]
    assert len(keys) == 2 and keys[0]["expires_at"] < keys[1]["expires_at"], keys  # the old one: grace only
    alice_key = (files / "alice.key").read_text().strip()
    assert post(f"{url}/agents/get", {}, {"x-agentpack-device-key": alice_key})["agent_id"] == alice_id
    events = post(f"{url}/audit/list", {"agent_id": alice_id}, {"x-agentpack-key": bridge_key})["events"]
    actions = {event["action"] for event in events}
    assert {"agent.create", "device.issue", "secret.put", "delegation.grant", "device.rotate"} <= actions, actions
    for action in ("agent.create", "secret.put", "device.rotate"):
        assert action in upkeep  # the audit table printed by the doc's last command


def check_walkthrough(run: Run) -> None:
    assert "@@failed" not in run.stderr, run.stderr[-3000:]
    _, created, issued, as_itself, oauth, revoked, audit = run.blocks
    [(status, agent)] = answers_in(created)
    assert status == 201
    [(status, key)] = answers_in(issued)
    assert status == 201 and key["device_key"].startswith("apkd_")
    (status, me), (listed_status, listed) = answers_in(as_itself)
    assert (status, me["agent_id"]) == (200, agent["agent_id"])  # the forged agent_id was ignored
    assert listed_status == 200 and [k["key_id"] for k in listed["keys"]] == [key["key_id"]]
    # Step 4: scopes, a client-credentials token, verified with PyJWT against the JWKS, then used on a route.
    (status, scoped), (token_status, token), (used_status, used) = answers_in(oauth)
    assert status == 200 and scoped["scopes"] == ["device/list", "read:reports"]
    assert token_status == 200 and token["token_type"] == "Bearer" and token["scope"] == "device/list"
    assert token["expires_in"] == 900 and "refresh_token" not in token
    assert f"verified: {agent['agent_id']} device/list" in oauth  # PyJWKClient checked signature, aud and iss
    assert used_status == 200 and [k["key_id"] for k in used["keys"]] == [key["key_id"]]
    (status, _), (after, refused), (token_after, token_refused) = answers_in(revoked)
    assert status == 200
    assert (after, refused["error"]) == (401, "unauthenticated")  # the very next request with it
    assert (token_after, token_refused["error"]) == (401, "unauthenticated")  # and the token it gave
    [(status, trail)] = answers_in(audit)
    assert status == 200
    actions = [event["action"] for event in trail["events"]]
    # newest first
    assert actions[:5] == ["device.revoke", "token.issue", "agent.update", "device.issue", "agent.create"], actions


def test_the_quick_start_then_the_curl_walkthrough_one_after_the_other(tmp_path: Path) -> None:
    env, ports, port = newcomer(tmp_path)
    url = f"http://127.0.0.1:{port}"
    quick = None
    try:
        quick = run_doc(DOCS / "quickstart.md", env, tmp_path)
        check_quickstart(quick, Path(env["HOME"]), url)
        # Another terminal, same HOME: the walk-through finds the quick start's server and its key.
        walk = run_doc(DOCS / "walkthrough.md", env, tmp_path)
        assert walk.server is None, "the walk-through used the running server"
        check_walkthrough(walk)
    finally:
        stop_server(quick.server if quick else _started_pid(tmp_path / "quickstart.out"), ports, port)


def test_the_curl_walkthrough_on_its_own(tmp_path: Path) -> None:
    env, ports, port = newcomer(tmp_path)
    walk = None
    try:
        walk = run_doc(DOCS / "walkthrough.md", env, tmp_path)
        assert walk.server is not None, "on its own, the walk-through starts a server"
        check_walkthrough(walk)
        assert (Path(env["HOME"]) / ".agentpack/bridge.key").stat().st_mode & 0o777 == 0o600
    finally:
        stop_server(walk.server if walk else _started_pid(tmp_path / "walkthrough.out"), ports, port)


def _started_pid(printed: Path) -> int | None:
    """When a doc failed half-way (no PID printed): the scripts.serve process with this run's HOME."""
    home = str(printed.parent / "home")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"scripts.serve" in command and f"HOME={home}".encode() in environ:
            return int(entry.name)
    return None
