"""Start and stop the real Firestore emulator (the Cloud SDK's), with firestore.rules loaded.

Used by ``scripts/serve`` and by the tests. Host and port come from
firebase.json, so the CLI and these scripts agree.
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
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "demo-agentpack"


def configured_address() -> tuple[str, int]:
    emulators = json.loads((ROOT / "firebase.json").read_text())["emulators"]["firestore"]
    return emulators["host"], int(emulators["port"])


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


def is_up(host: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}/", timeout=1) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((host, port)) != 0


def wipe(host: str) -> None:
    request = urllib.request.Request(
        f"http://{host}/emulator/v1/projects/{PROJECT}/databases/(default)/documents", method="DELETE"
    )
    urllib.request.urlopen(request, timeout=30).close()


@contextlib.contextmanager
def running(port: int | None = None) -> Iterator[str]:
    """Yield ``host:port`` of a fresh emulator with the real rules; stop it afterwards."""
    host, default_port = configured_address()
    port = port or default_port
    if not port_is_free(host, port):
        sys.exit(f"error: port {port} is in use; free it, or set FIRESTORE_EMULATOR_HOST to a running emulator")
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
    address = f"{host}:{port}"
    try:
        deadline = time.monotonic() + 60
        while not is_up(address):
            if process.poll() is not None or time.monotonic() > deadline:
                sys.exit("error: the Firestore emulator did not start (is Java installed?)")
            time.sleep(0.2)
        yield address
    finally:
        stop_group(process)
        log.close()


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop a process started with ``start_new_session`` and everything it started: TERM, then KILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
