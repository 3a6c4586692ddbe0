"""``agentpack login --device`` and ``agentpack whoami`` against a real served agentpack.

The command runs as a subprocess with its own HOME; the person's side is played through the API
(``/activate/lookup`` and ``/activate/decide`` with the person's Firebase ID token), as the page would.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from agentpack import device_login
from tests.conftest import ROOT
from tests.device_flow_service import Service
from tests.device_flow_service import service as service  # the fixture: this module's own server

CODE = re.compile(r"^  ([B-Z]{4}-[B-Z]{4})$", re.MULTILINE)


def agentpack(home: Path, base: str, *args: str) -> subprocess.Popen[str]:
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "AGENTPACK_URL": base}
    return subprocess.Popen(
        [str(ROOT / ".venv/bin/agentpack"), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def printed_code(login: subprocess.Popen[str], timeout: float = 30) -> tuple[str, str]:
    """The user code the command prints, and everything it printed up to it (bounded wait)."""
    assert login.stdout is not None
    os.set_blocking(login.stdout.fileno(), False)
    text, deadline = "", time.monotonic() + timeout
    while (found := CODE.search(text)) is None or "Waiting for your approval" not in text:
        chunk = login.stdout.readline()
        if chunk:
            text += chunk
        elif login.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"no user code printed: {text!r}")
        else:
            time.sleep(0.05)
    return found.group(1), text


def finish(login: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    try:
        out, err = login.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        login.kill()
        login.communicate()
        raise
    return login.returncode, out, err


def test_login_waits_for_the_approval_then_keeps_the_session_and_whoami_shows_it(
    service: Service, tmp_path: Path
) -> None:
    agent = service.public_agent("CLI on a laptop")
    person = service.person()
    login = agentpack(tmp_path, service.base, "login", "--device", "--client-id", agent, "--scope", "read")
    try:
        code, shown = printed_code(login)
        assert f"{service.base}/activate\n" in shown and f"{service.base}/activate?user_code={code}" in shown
        status, request = service.as_person(person, "activate/lookup", {"user_code": code})
        assert (status, request["agent_display_name"], request["actions"]) == (200, "CLI on a laptop", ["read"])
        assert login.poll() is None  # still waiting for the decision
        assert service.as_person(person, "activate/decide", {"user_code": code, "approve": True})[0] == 200
        code_, out, err = finish(login)
    finally:
        if login.poll() is None:
            login.kill()
    assert code_ == 0, err
    session_file = tmp_path / ".agentpack" / "session.json"
    assert session_file.stat().st_mode & 0o777 == 0o600
    assert f"Session saved to {session_file}" in out
    session = json.loads(session_file.read_text())
    claims = device_login.claims(session["access_token"])
    assert claims["sub"] == person.user_id and claims["act"]["sub"] == agent
    assert session["refresh_token"] and session["client_id"] == agent
    assert session["access_token"] not in out + err and session["refresh_token"] not in out + err

    code_, out, err = finish(agentpack(tmp_path, service.base, "whoami"))
    assert code_ == 0, err
    assert re.search(rf"^user\s+{person.user_id}$", out, re.MULTILINE), out
    assert re.search(rf"^agent\s+{agent}$", out, re.MULTILINE), out
    assert re.search(r"^scope\s+read$", out, re.MULTILINE), out
    assert "not verified" in err
    code_, out, _ = finish(agentpack(tmp_path, service.base, "--json", "whoami", "--session", str(session_file)))
    assert code_ == 0 and json.loads(out)["user"] == person.user_id


def test_a_denial_and_an_expiry_end_the_login_with_exit_3_and_save_nothing(service: Service, tmp_path: Path) -> None:
    agent = service.public_agent("Denied CLI")
    person = service.person()
    out_file = tmp_path / "denied.json"
    login = agentpack(tmp_path, service.base, "login", "--device", "--client-id", agent, "--out", str(out_file))
    try:
        code, _ = printed_code(login)
        assert service.as_person(person, "activate/decide", {"user_code": code, "approve": False})[0] == 200
        status, _, err = finish(login)
    finally:
        if login.poll() is None:
            login.kill()
    assert status == 3 and "error: access_denied" in err, err
    assert not out_file.exists()

    login = agentpack(tmp_path, service.base, "login", "--device", "--client-id", agent, "--out", str(out_file))
    try:
        code, _ = printed_code(login)
        service.expire_by_user_code(code)  # the device code is never printed; the user code names it too
        status, _, err = finish(login)
    finally:
        if login.poll() is None:
            login.kill()
    assert status == 3 and "error: expired_token" in err, err
    assert not out_file.exists()
    assert not (tmp_path / ".agentpack" / "session.json").exists()


def test_polling_follows_the_interval_and_slows_down_when_told(service: Service) -> None:
    """A client that starts too fast (1 s, the service asks 5) is told slow_down and waits 5 s more."""
    agent = service.public_agent("Eager CLI")
    person = service.person()
    started = device_login.start(service.base, agent)
    assert started.interval == 5 and started.expires_in == 600
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:  # approved while the program waits for its third poll
            answer = service.as_person(person, "activate/decide", {"user_code": started.user_code, "approve": True})
            assert answer[0] == 200
        time.sleep(seconds)

    tokens: dict[str, Any] = device_login.poll(service.base, agent, started, interval=1, sleep=sleep)
    assert waits == [1, 1, 6], waits  # pending (the first poll), then slow_down: 1 + 5
    assert device_login.claims(tokens["access_token"])["act"]["sub"] == agent


def test_login_refuses_plain_http_to_another_host_and_an_unknown_client(service: Service, tmp_path: Path) -> None:
    status, _, err = finish(
        agentpack(tmp_path, "http://example.com", "login", "--device", "--client-id", "agt_x"), timeout=30
    )
    assert status == 2 and "plain http" in err
    status, _, err = finish(agentpack(tmp_path, service.base, "login", "--device", "--client-id", "agt_nope"))
    assert status == 3 and "error: invalid_client" in err, err
    status, _, err = finish(agentpack(tmp_path, service.base, "whoami"))
    assert status == 2 and "no session" in err
