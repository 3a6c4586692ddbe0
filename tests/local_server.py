"""Helpers for the tests that run ``scripts/serve`` (and the docs that start it) as a newcomer would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from scripts import emulator
from tests import log_scan
from tests.conftest import ROOT


def clean_env(extra: dict[str, str] | None = None, home: Path | None = None) -> dict[str, str]:
    """A newcomer's environment: no emulator or agentpack variables of the test session leak in."""
    env = {name: os.environ[name] for name in ("PATH", "LANG", "LC_ALL", "TMPDIR", "HOME") if name in os.environ}
    if home is not None:
        env["HOME"] = str(home)
    env.update(extra or {})
    return env


def own_emulator_ports() -> dict[str, str]:
    """Free ports for the emulators a served process starts itself (never the shared 8080 and 9099)."""
    return {
        "AGENTPACK_FIRESTORE_EMULATOR_PORT": str(emulator.free_port()),
        "AGENTPACK_AUTH_EMULATOR_PORT": str(emulator.free_port()),
    }


def serve(env: dict[str, str], script: bool = False) -> subprocess.Popen[str]:
    """Start ``scripts/serve`` (``script``) or ``python -m scripts.serve`` in its own process group."""
    command = [str(ROOT / "scripts/serve")] if script else [str(ROOT / ".venv/bin/python"), "-m", "scripts.serve"]
    env = {**env, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def _scan_output(server: subprocess.Popen[str]) -> None:
    assert server.stderr is not None
    for line in server.stderr:
        log_scan.SESSION.feed("scripts/serve", line)


def banner(server: subprocess.Popen[str], timeout: float = 150) -> str:
    """The first line the server prints, within ``timeout`` seconds (it prints nothing else to stdout);
    if it exits without serving, that and the end of its standard error.

    Once it is serving, its standard error (one JSON log line per request) is read as it comes, for
    the session's log scan, so that pipe never fills: ``server.stderr`` is that thread's alone."""
    assert server.stdout is not None
    os.set_blocking(server.stdout.fileno(), False)
    deadline = time.monotonic() + timeout
    text = ""
    while "\n" not in text:
        chunk = server.stdout.readline()
        text += chunk or ""
        if not chunk:
            if server.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    if "serving" in text:
        threading.Thread(target=_scan_output, args=(server,), daemon=True).start()
    elif server.poll() is not None and server.stderr is not None:
        # It stopped without serving: what it said on the way out makes the failure readable.
        text += f"[exited {server.returncode}] " + server.stderr.read()[-2000:]
    return text


def stop(server: subprocess.Popen[str], timeout: float = 40, how: signal.Signals = signal.SIGTERM) -> int:
    """Signal the server alone (it must stop its emulators itself), then make sure its group is gone."""
    if server.poll() is None:
        server.send_signal(how)
    try:
        return server.wait(timeout=timeout)
    finally:
        emulator.stop_group(server)


def post(url: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as answer:
            return answer.status, json.loads(answer.read()), answer.headers
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), error.headers


def answers(host: str) -> bool:
    """Whether anything at all answers HTTP at ``host:port``."""
    try:
        urllib.request.urlopen(f"http://{host}/", timeout=2).close()
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True
