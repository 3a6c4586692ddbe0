"""Start and stop the local emulators: the Cloud SDK's Firestore emulator (with firestore.rules
loaded) and the Firebase Auth emulator (from firebase-tools in node_modules).

Used by ``scripts/serve``, the tests and the benchmark. Hosts and default ports come from
firebase.json, so the Firebase CLI and these scripts agree. Every emulator runs in its own
process group and is stopped with everything it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "demo-agentpack"
FIREBASE = ROOT / "node_modules/.bin/firebase"
START_TIMEOUT_SECONDS = 90
DEV_ENV = ROOT / "emulator-config/dev.env"


def read_dev_env(path: Path = DEV_ENV) -> dict[str, str]:
    """The NAME=VALUE lines of a dev.env file as the shell sees them after ``set -a; . FILE``.

    Values are either bare words or wrapped in single quotes (which the shell strips and inside
    which nothing is special); anything else a shell would read differently is refused.
    """
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, equals, value = line.partition("=")
        if not equals or not name.isidentifier() or name != name.strip():
            raise ValueError(f"{path}:{number}: expected NAME=VALUE")
        if len(value) >= 2 and value[0] == value[-1] == "'" and "'" not in value[1:-1]:
            value = value[1:-1]
        elif any(c in value for c in " \t'\"\\$`{}()[]<>|&;*?~#!"):
            raise ValueError(f"{path}:{number}: quote the value of {name} in single quotes")
        values[name] = value
    return values


PORT_VARIABLES = {"firestore": "AGENTPACK_FIRESTORE_EMULATOR_PORT", "auth": "AGENTPACK_AUTH_EMULATOR_PORT"}


def configured_address(emulator: str = "firestore") -> tuple[str, int]:
    """The host and port firebase.json names for ``firestore`` or ``auth``; the port can be moved
    with AGENTPACK_FIRESTORE_EMULATOR_PORT / AGENTPACK_AUTH_EMULATOR_PORT (when the usual one is taken)."""
    emulators = json.loads((ROOT / "firebase.json").read_text())["emulators"][emulator]
    moved = os.environ.get(PORT_VARIABLES[emulator], "").strip()
    if moved and not (moved.isdigit() and 0 < int(moved) < 65536):
        sys.exit(f"error: {PORT_VARIABLES[emulator]} must be a port number")
    return emulators["host"], int(moved or emulators["port"])


def emulator_binary() -> Path:
    candidates: list[Path] = []
    if shutil.which("gcloud"):
        root = subprocess.run(
            ["gcloud", "info", "--format=value(installation.sdk_root)"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if root:
            candidates.append(Path(root))
    candidates += [Path("/usr/lib/google-cloud-sdk"), Path("/usr/share/google-cloud-sdk")]
    for sdk in candidates:
        binary = sdk / "platform/cloud-firestore-emulator/cloud_firestore_emulator"
        if binary.exists():
            return binary
    sys.exit(
        "error: the Firestore emulator is not installed. Install the Debian package "
        "google-cloud-cli-firestore-emulator (Google Cloud SDK) and try again."
    )


def _get(url: str) -> tuple[int, bytes] | None:
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:
            return answer.status, answer.read(4096)
    except OSError:
        return None


def is_up(host: str) -> bool:
    """Whether the Firestore emulator answers at ``host:port``."""
    answer = _get(f"http://{host}/")
    return answer is not None and answer[0] == 200


def auth_is_up(host: str) -> bool:
    """Whether the Firebase Auth emulator answers at ``host:port``."""
    answer = _get(f"http://{host}/")
    return answer is not None and answer[0] == 200 and b'"authEmulator"' in answer[1]


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((host, port)) != 0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wipe(host: str) -> None:
    request = urllib.request.Request(
        f"http://{host}/emulator/v1/projects/{PROJECT}/databases/(default)/documents", method="DELETE"
    )
    urllib.request.urlopen(request, timeout=30).close()


class Started:
    """An emulator process just started: ``wait()`` until it answers, ``stop()`` it and its children."""

    def __init__(
        self,
        name: str,
        address: str,
        process: subprocess.Popen[bytes],
        ready: Callable[[str], bool],
        output: IO[bytes],
        hint: str,
        scratch: tempfile.TemporaryDirectory[str] | None = None,
    ) -> None:
        self.name, self.address, self.process, self.ready = name, address, process, ready
        self.output, self.hint, self.scratch = output, hint, scratch

    def wait(self, timeout: float = START_TIMEOUT_SECONDS) -> str:
        deadline = time.monotonic() + timeout
        while not self.ready(self.address):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                sys.exit(f"error: the {self.name} did not start on {self.address} ({self.hint}){self._tail()}")
            time.sleep(0.2)
        return self.address

    def stop(self) -> None:
        try:
            stop_group(self.process)
        finally:
            self.output.close()
            if self.scratch is not None:
                self.scratch.cleanup()

    def _tail(self) -> str:
        if self.scratch is None:
            return ""
        with contextlib.suppress(OSError):
            lines = (Path(self.scratch.name) / "output.log").read_text(errors="replace").splitlines()
            return "".join(f"\n  {line}" for line in lines[-15:] if line.strip())
        return ""


def _refuse_busy(name: str, variable: str, host: str, port: int) -> None:
    if not port_is_free(host, port):
        sys.exit(
            f"error: port {port} (the {name}) is in use; free it, set {variable} to a running {name}, "
            f"or move it with {PORT_VARIABLES['auth' if 'Auth' in name else 'firestore']}="
        )


def start_firestore(port: int | None = None) -> Started:
    """Start the Cloud SDK's Firestore emulator with the real rules, on ``port`` or firebase.json's."""
    host, default_port = configured_address("firestore")
    port = port or default_port
    _refuse_busy("Firestore emulator", "FIRESTORE_EMULATOR_HOST", host, port)
    command = [
        str(emulator_binary()),
        f"--host={host}",
        f"--port={port}",
        f"--rules={ROOT / 'firestore.rules'}",
        f"--project_id={PROJECT}",
        "--single_project_mode",
    ]
    log = open(os.environ.get("AGENTPACK_EMULATOR_LOG", os.devnull), "ab")  # noqa: SIM115
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return Started("Firestore emulator", f"{host}:{port}", process, is_up, log, "is Java installed?")


def firebase_environment(scratch: Path) -> dict[str, str]:
    """The Firebase CLI's environment: nothing it does may need the network or touch the user's files.

    ``CI`` skips its message-of-the-day fetch and, with ``NO_UPDATE_NOTIFIER``, its update check; a
    private ``XDG_CONFIG_HOME`` means no login and no usage-collection opt-in from the user's own
    configstore (so no analytics); a private ``TMPDIR`` keeps its hub locator file apart from any other
    emulator suite of the same project; ``FIREBASE_DEBUG_PATH`` keeps firebase-debug.log out of the tree.
    """
    env = {name: value for name, value in os.environ.items() if not name.startswith(("FIREBASE_", "FIRESTORE_"))}
    env.update(
        CI="1",
        NO_UPDATE_NOTIFIER="1",
        XDG_CONFIG_HOME=str(scratch / "config"),
        TMPDIR=str(scratch),
        FIREBASE_DEBUG_PATH=str(scratch / "firebase-debug.log"),
    )
    return env


def start_auth(port: int | None = None) -> Started:
    """Start the Firebase Auth emulator (firebase-tools, offline) on ``port`` or firebase.json's."""
    if not FIREBASE.exists():
        sys.exit("error: firebase-tools is not installed in node_modules; run scripts/setup")
    host, default_port = configured_address("auth")
    port = port or default_port
    _refuse_busy("Auth emulator", "FIREBASE_AUTH_EMULATOR_HOST", host, port)
    scratch = tempfile.TemporaryDirectory(prefix="agentpack-auth-emulator-")
    folder = Path(scratch.name)
    # Its own config: the auth port asked for, and free ports for the CLI's hub and logging
    # emulator, so several suites (tests, scripts/serve) can run side by side.
    config = {
        "emulators": {
            "auth": {"host": host, "port": port},
            "hub": {"host": host, "port": free_port(host)},
            "logging": {"host": host, "port": free_port(host)},
            "ui": {"enabled": False},
            "singleProjectMode": True,
        }
    }
    (folder / "firebase.json").write_text(json.dumps(config))
    command = [
        str(FIREBASE),
        "emulators:start",
        "--only=auth",
        f"--project={PROJECT}",
        f"--config={folder / 'firebase.json'}",
        "--non-interactive",
    ]
    output = open(os.environ.get("AGENTPACK_AUTH_EMULATOR_LOG", folder / "output.log"), "ab")  # noqa: SIM115
    process = subprocess.Popen(
        command,
        cwd=folder,
        env=firebase_environment(folder),
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return Started("Auth emulator", f"{host}:{port}", process, auth_is_up, output, "is Node installed?", scratch)


@contextlib.contextmanager
def running(port: int | None = None) -> Iterator[str]:
    """Yield ``host:port`` of a fresh Firestore emulator with the real rules; stop it afterwards."""
    started = start_firestore(port)
    try:
        yield started.wait()
    finally:
        started.stop()


@contextlib.contextmanager
def auth_running(port: int | None = None) -> Iterator[str]:
    """Yield ``host:port`` of a fresh Firebase Auth emulator; stop it afterwards."""
    started = start_auth(port)
    try:
        yield started.wait()
    finally:
        started.stop()


def stop_group(process: subprocess.Popen[Any]) -> None:
    """Stop a process started with ``start_new_session`` and everything it started: TERM, then KILL
    (the whole group, also when its leader exits first and leaves children behind)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)
    deadline = time.monotonic() + 5
    while _group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
