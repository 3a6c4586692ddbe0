"""The Firebase Auth emulator (firebase-tools from node_modules): it starts offline and signs users up."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import jwt
import pytest

from scripts import emulator
from tests.conftest import ROOT

SIGN_UP = "/identitytoolkit.googleapis.com/v1/accounts:signUp?key=any"


def sign_up(host: str, email: str, password: str) -> dict[str, str]:
    request = urllib.request.Request(
        f"http://{host}{SIGN_UP}",
        data=json.dumps({"email": email, "password": password, "returnSecureToken": True}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200
        return dict(json.loads(answer.read()))


def test_a_user_signs_up_through_the_emulator_and_gets_an_id_token(auth_emulator: str) -> None:
    answer = sign_up(auth_emulator, "ada@example.com", "correct-horse")
    claims = jwt.decode(answer["idToken"], options={"verify_signature": False})  # the emulator does not sign
    assert claims["email"] == "ada@example.com"
    assert claims["sub"] == answer["localId"]
    assert claims["aud"] == emulator.PROJECT
    assert claims["iss"] == f"https://securetoken.google.com/{emulator.PROJECT}"
    assert answer["refreshToken"]


def test_the_emulator_answers_only_as_an_auth_emulator(auth_emulator: str, emulator_host: str) -> None:
    assert emulator.auth_is_up(auth_emulator)
    assert not emulator.auth_is_up(emulator_host)  # the Firestore emulator is not mistaken for it
    assert not emulator.auth_is_up(f"127.0.0.1:{emulator.free_port()}")


PROBE = """
import json, sys, urllib.request
from pathlib import Path
from scripts import emulator
started = emulator.start_auth(emulator.free_port())
try:
    host = started.wait()
    request = urllib.request.Request(
        f"http://{host}/identitytoolkit.googleapis.com/v1/accounts:signUp?key=any",
        data=json.dumps({"email": "offline@example.com", "password": "secret-1", "returnSecureToken": True}).encode(),
        headers={"Content-Type": "application/json"},
    )
    print("signed up:", "idToken" in json.load(urllib.request.urlopen(request, timeout=10)))
    print((Path(started.scratch.name) / "firebase-debug.log").read_text())
finally:
    started.stop()
"""


def test_the_auth_emulator_starts_with_no_network_and_tries_none(tmp_path: Path) -> None:
    """In a network namespace with only loopback, the CLI starts, serves, and neither fetches its
    message of the day nor checks for updates (both would log a warning offline)."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs unshare and ip (util-linux, iproute2) to cut the network")
    if subprocess.run(["unshare", "-rn", "true"], capture_output=True, timeout=10).returncode != 0:
        pytest.skip("this machine does not allow network namespaces (unshare -rn)")
    output = tmp_path / "output.log"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),  # no configstore of the user's: a first run, as on a fresh machine
        "PYTHONPATH": str(ROOT),
        "AGENTPACK_AUTH_EMULATOR_LOG": str(output),
    }
    script = f'ip link set lo up && exec "{sys.executable}" -c "$0"'
    result = subprocess.run(
        ["unshare", "-rn", "bash", "-c", script, PROBE],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "signed up: True" in result.stdout
    printed = output.read_text() + result.stdout
    assert "All emulators ready" in printed
    assert "MOTD" not in printed and "Update available" not in printed
    assert not list(ROOT.glob("firebase-debug*.log"))
