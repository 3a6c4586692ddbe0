"""scripts/serve: every route on one port, its emulators, and how it refuses to start."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scripts import emulator
from tests.conftest import BRIDGE_KEY, ROOT
from tests.local_server import answers, banner, clean_env, own_emulator_ports, post, serve, stop


def test_serves_every_route_on_one_port_as_soon_as_it_says_so(emulator_host: str, auth_emulator: str) -> None:
    port = emulator.free_port()
    env = clean_env(
        {"PORT": str(port), "FIRESTORE_EMULATOR_HOST": emulator_host, "FIREBASE_AUTH_EMULATOR_HOST": auth_emulator}
    )
    server = serve(env)
    try:
        line = banner(server)
        assert f"serving every route on http://127.0.0.1:{port}" in line, line
        assert emulator_host in line and auth_emulator in line
        base = f"http://127.0.0.1:{port}"
        # No retry: once "serving" is printed, the port is bound and the datastore answers.
        status, created, _ = post(f"{base}/agents/create", {"display_name": "served"}, {"x-agentpack-key": BRIDGE_KEY})
        assert status == 201, created
        issued = post(f"{base}/device/issue", {"agent_id": created["agent_id"]}, {"x-agentpack-key": BRIDGE_KEY})[1]
        status, me, _ = post(f"{base}/agents/get", {}, {"x-agentpack-device-key": str(issued["device_key"])})
        assert (status, me["agent_id"]) == (200, created["agent_id"])

        # An unknown path: 404, with the caller's sane request ID or a new one, never cached.
        status, body, headers = post(f"{base}/no/such/route", {}, {"x-request-id": "trace-1.2:3"})
        assert (status, body["error"]) == (404, "not_found")
        assert headers["x-request-id"] == "trace-1.2:3"
        assert headers["Cache-Control"] == "no-store"
        for insane in ("has space", "x" * 129, "semi;colon"):
            status, _, headers = post(f"{base}/nope", {}, {"x-request-id": insane})
            assert status == 404 and headers["x-request-id"].startswith("req_"), headers["x-request-id"]
        first, second = (post(f"{base}/nope", {})[2]["x-request-id"] for _ in range(2))
        assert first.startswith("req_") and first != second
        # The functions answer the same for the same request IDs.
        kept = post(f"{base}/agents/get", {}, {"x-request-id": "trace-1.2:3"})[2]
        assert kept["x-request-id"] == "trace-1.2:3"
        assert post(f"{base}/agents/get", {}, {"x-request-id": "has space"})[2]["x-request-id"].startswith("req_")
    finally:
        assert stop(server) == 0


def test_a_busy_port_is_a_clear_error_and_never_announced(emulator_host: str, auth_emulator: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        emulators = {"FIRESTORE_EMULATOR_HOST": emulator_host, "FIREBASE_AUTH_EMULATOR_HOST": auth_emulator}
        env = clean_env({"PORT": str(port), **emulators})
        server = serve(env)
        try:
            out, err = server.communicate(timeout=120)
        finally:
            stop(server)
    assert server.returncode == 1
    assert "serving" not in out
    assert f"port {port} on 127.0.0.1 is in use" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AGENTPACK_BRIDGE_KEY", "apkb_not-a-real-key"),
        ("AGENTPACK_CAPABILITY_PUBLIC_KEYS", "{not json"),
        ("AGENTPACK_CAPABILITY_PUBLIC_KEYS", '{"small-order": "' + "A" * 43 + '"}'),
        ("AGENTPACK_SECRETS_KEYS", '{"1": "short"}'),
    ],
)
def test_an_invalid_configuration_stops_it_with_the_reason(variable: str, value: str) -> None:
    # Emulator variables that answer nothing: the configuration is refused before any emulator is touched.
    nowhere = f"127.0.0.1:{emulator.free_port()}"
    env = clean_env(
        {
            "PORT": str(emulator.free_port()),
            "FIRESTORE_EMULATOR_HOST": nowhere,
            "FIREBASE_AUTH_EMULATOR_HOST": nowhere,
            variable: value,
        }
    )
    server = serve(env)
    try:
        out, err = server.communicate(timeout=120)
    finally:
        stop(server)
    assert server.returncode == 1
    assert "invalid configuration" in err and variable in err, err
    assert "slow" not in err and "Traceback" not in err and "does not answer" not in err
    assert "serving" not in out


@pytest.mark.parametrize("bad_port", ["http", "-", "0", "70000"])
def test_refuses_a_bad_port(bad_port: str) -> None:
    env = clean_env({"PORT": bad_port, "PYTHONPATH": str(ROOT)})
    result = subprocess.run([sys.executable, "-m", "scripts.serve"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode != 0 and "PORT" in result.stderr


def test_an_auth_emulator_variable_must_name_a_running_one(emulator_host: str) -> None:
    nowhere = f"127.0.0.1:{emulator.free_port()}"
    env = clean_env({"PORT": str(emulator.free_port()), "FIRESTORE_EMULATOR_HOST": emulator_host})
    env["FIREBASE_AUTH_EMULATOR_HOST"] = nowhere
    server = serve(env)
    try:
        out, err = server.communicate(timeout=120)
    finally:
        stop(server)
    assert server.returncode == 1 and "serving" not in out
    assert f"FIREBASE_AUTH_EMULATOR_HOST={nowhere} does not answer" in err
    env["FIREBASE_AUTH_EMULATOR_HOST"] = emulator_host  # a Firestore emulator is not an Auth emulator
    server = serve(env)
    try:
        out, err = server.communicate(timeout=120)
    finally:
        stop(server)
    assert server.returncode == 1 and "does not answer as an Auth emulator" in err


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_scripts_serve_starts_both_emulators_and_stops_both_on_sigterm(how: signal.Signals) -> None:
    ports = own_emulator_ports()
    firestore = f"127.0.0.1:{ports['AGENTPACK_FIRESTORE_EMULATOR_PORT']}"
    auth = f"127.0.0.1:{ports['AGENTPACK_AUTH_EMULATOR_PORT']}"
    port = emulator.free_port()
    server = serve(clean_env({"PORT": str(port), **ports}), script=True)
    try:
        line = banner(server, timeout=240)
        assert f"Firestore emulator {firestore}, Auth emulator {auth}" in line, (line, server.stderr)
        assert emulator.is_up(firestore) and emulator.auth_is_up(auth)
        status, _, _ = post(
            f"http://127.0.0.1:{port}/agents/create", {"display_name": "a"}, {"x-agentpack-key": BRIDGE_KEY}
        )
        assert status == 201
        # The Auth emulator it started works: a user signs up through it.
        from tests.test_auth_emulator import sign_up

        assert sign_up(auth, "served@example.com", "secret-1")["idToken"]
    finally:
        code = stop(server, how=how)
    assert code == 0
    assert not answers(firestore) and not answers(auth)
    assert not answers(f"127.0.0.1:{port}")


def test_stopped_while_its_emulators_start_it_stops_them_too() -> None:
    ports = own_emulator_ports()
    firestore = f"127.0.0.1:{ports['AGENTPACK_FIRESTORE_EMULATOR_PORT']}"
    auth = f"127.0.0.1:{ports['AGENTPACK_AUTH_EMULATOR_PORT']}"
    server = serve(clean_env({"PORT": str(emulator.free_port()), **ports}))
    try:
        deadline = time.monotonic() + 120
        while not emulator.is_up(firestore):  # the Firestore emulator is up; the Auth one still starting
            assert server.poll() is None and time.monotonic() < deadline, "the Firestore emulator never came up"
            time.sleep(0.1)
    finally:
        code = stop(server)
    assert code == 0
    assert server.stdout is not None and "serving" not in server.stdout.read()
    assert not answers(firestore) and not answers(auth)


def test_the_dev_env_file_reads_the_same_in_bash_and_in_python(tmp_path: Path) -> None:
    printed = subprocess.run(
        ["bash", "-c", 'set -a; . emulator-config/dev.env; set +a; env -0'],
        cwd=ROOT, env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    from_bash = dict(item.split("=", 1) for item in printed.split("\0") if "=" in item)
    from_python = emulator.read_dev_env()
    assert from_python == {name: from_bash[name] for name in from_python}
    assert from_python["AGENTPACK_CAPABILITY_PUBLIC_KEYS"].startswith('{"dev-1":')
    assert set(from_python) >= {"AGENTPACK_BRIDGE_KEY", "AGENTPACK_SECRETS_KEYS", "GOOGLE_CLOUD_PROJECT"}
    # A value the shell would read otherwise is refused, not guessed at.
    for line in ('X={"a": 1}', "X=two words", "X='it''s'", "X=$HOME"):
        bad = tmp_path / "bad.env"
        bad.write_text(line + "\n")
        with pytest.raises(ValueError, match=r"bad\.env:1"):
            emulator.read_dev_env(bad)
