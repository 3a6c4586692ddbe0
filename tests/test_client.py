"""The Python client against the real local server (scripts.serve over the emulator), and its
retry, timeout and error handling against small stand-ins of our own service.

The stand-ins (``Stub``) answer scripted statuses and record every request, so a test can
count attempts; a black-hole socket accepts connections and never answers.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import agentpack
from agentpack import Client, config, errors, rotation
from agentpack.client import READ_ROUTES, route_path
from tests import log_scan
from tests.conftest import BRIDGE_KEY, DEV_ENV, forged_device_key

ROOT = Path(__file__).resolve().parent.parent
FAKE_AGENT = "agt_" + "0" * 22


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def local_server(emulator_host: str, log: Path, **extra_env: str) -> Iterator[str]:
    """``python -m scripts.serve`` on a free port, as tests/test_scripts.py starts it; yields its URL once warm."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTPACK_")}
    env.update(DEV_ENV)
    env.update(PORT=str(port), FIRESTORE_EMULATOR_HOST=emulator_host, PYTHONPATH=str(ROOT), **extra_env)
    with open(log, "ab") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "scripts.serve"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=sink, text=True
        )
    try:
        assert server.stdout is not None
        assert f":{port}" in server.stdout.readline()
        url = f"http://127.0.0.1:{port}"
        _warm_up(url, extra_env.get("AGENTPACK_BRIDGE_KEY", BRIDGE_KEY))
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)
        log_scan.SESSION.feed("scripts/serve", log.read_text(errors="replace"))  # its log lines, scanned


def _warm_up(url: str, bridge_key: str) -> None:
    # The first datastore call of a fresh process opens its channel; wait until a read answers 200.
    deadline = time.monotonic() + 60
    while True:
        request = urllib.request.Request(
            f"{url}/settings/list", data=b"{}", method="POST",
            headers={"Content-Type": "application/json", "x-agentpack-key": bridge_key},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                if answer.status == 200:
                    return
        except (OSError, urllib.error.HTTPError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the local server did not come up")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def server(emulator_host: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with local_server(emulator_host, tmp_path_factory.mktemp("server") / "serve.log") as url:
        yield url


def bridge(url: str, **options: Any) -> Client:
    return Client(url, bridge_key=BRIDGE_KEY, **options)


def new_agent_with_key(url: str, name: str = "agent", **issue: Any) -> tuple[str, Client]:
    operator = bridge(url)
    agent = operator.create_agent(name)
    key = operator.issue_key(agent.agent_id, **issue)
    return agent.agent_id, Client(url, device_key=key.device_key)


# ---------------------------------------------------------------- against the real server


def test_an_agent_reads_a_secret_through_a_delegation(server: str) -> None:
    operator = bridge(server)
    alice = operator.create_agent("alice", tenant_id="acme")
    bob = operator.create_agent("bob", tenant_id="acme")
    assert isinstance(alice, agentpack.Agent) and alice.tenant_id == "acme" and alice.disabled is False
    assert alice.request_id and alice.request_id.startswith("req_")
    alice_key = operator.issue_key(alice.agent_id, label="laptop", ttl_seconds=3600)
    bob_key = operator.issue_key(bob.agent_id)
    assert isinstance(alice_key, agentpack.IssuedKey) and alice_key.device_key is not None
    assert alice_key.device_key.startswith("apkd_")
    assert alice_key.device_key not in repr(alice_key)
    assert alice_key.expires_at is not None and alice_key.expires_at - alice_key.created_at == timedelta(hours=1)

    as_alice = Client(server, device_key=alice_key.device_key)
    assert as_alice.get_agent() == alice
    stored = as_alice.put_secret("db", "s3cret ünïcode")
    assert (stored.name, stored.version) == ("db", 1)
    assert as_alice.put_secret("db", "s3cret ünïcode").version == 2
    secret = as_alice.get_secret("db")
    assert (secret.value, secret.version) == ("s3cret ünïcode", 2)
    assert "s3cret" not in repr(secret)
    assert [s.name for s in as_alice.list_secrets().secrets] == ["db"]

    granted = as_alice.delegate(bob.agent_id, ["secrets/get"], 600)
    assert (granted.from_agent, granted.to_agent, granted.scope) == (alice.agent_id, bob.agent_id, ("secrets/get",))
    as_bob = Client(server, device_key=bob_key.device_key)
    assert as_bob.list_delegations().received[0].delegation_id == granted.delegation_id
    through = as_bob.with_delegation(granted.delegation_id)
    assert through.get_secret("db").value == "s3cret ünïcode"
    with pytest.raises(agentpack.Forbidden) as refused:
        through.put_secret("db", "overwritten")  # outside the delegation's scope
    assert refused.value.status == 403
    with pytest.raises(agentpack.NotFound):
        as_bob.get_secret("db")  # without the delegation bob reads his own secrets

    revoked = as_alice.revoke_delegation(granted.delegation_id)
    assert revoked.delegation_id == granted.delegation_id
    with pytest.raises(agentpack.Forbidden):
        through.get_secret("db")
    assert as_alice.delete_secret("db").deleted is True

    actions = [event.action for event in operator.iter_audit(agent_id=alice.agent_id)]
    assert actions[0] == "secret.delete" and "delegation.grant" in actions and actions[-1] == "agent.create"


def test_each_refusal_is_its_own_exception_with_code_status_and_request_id(server: str) -> None:
    agent_id, as_agent = new_agent_with_key(server)
    unknown_device_key = Client(server, device_key="apkd_" + "x" * 60)
    unknown_bridge_key = Client(server, bridge_key="apkb_" + "x" * 49)
    cases: list[tuple[Any, type[agentpack.ApiError], str, int]] = [
        (lambda: unknown_device_key.get_agent(), agentpack.Unauthenticated, "unauthenticated", 401),
        (lambda: unknown_bridge_key.list_agents(), agentpack.Unauthenticated, "unauthenticated", 401),
        (lambda: as_agent.list_agents(), agentpack.Forbidden, "forbidden", 403),
        (lambda: bridge(server).get_agent(FAKE_AGENT), agentpack.NotFound, "not_found", 404),
        (lambda: bridge(server).issue_key(agent_id, ttl_seconds=5), agentpack.InvalidRequest, "invalid_request", 400),
        (lambda: bridge(server).set_setting("no_such_setting", 1), agentpack.InvalidRequest, "invalid_request", 400),
    ]
    for call, cls, code, status in cases:
        with pytest.raises(cls) as raised:
            call()
        error = raised.value
        assert (error.code, error.status) == (code, status)
        assert error.request_id and error.request_id.startswith("req_")
        assert error.description and error.request_id in str(error)
    with pytest.raises(agentpack.InvalidRequest) as bad_ttl:
        bridge(server).issue_key(agent_id, ttl_seconds=5)
    assert "ttl_seconds" in bad_ttl.value.description

    claims: dict[str, Any] = {
        "jti": "jti-1",
        "sub": agent_id,
        "scope": "secrets/get",
        "iat": 1_800_000_000,
        "exp": 1_800_000_300,
    }
    assert bridge(server).record_capability(**claims, kid="dev-1").jti == "jti-1"
    with pytest.raises(agentpack.Conflict) as twice:
        bridge(server).record_capability(**claims, kid="dev-1")
    assert twice.value.status == 409


def test_rotation_keeps_the_old_key_alive_for_the_grace_window(server: str) -> None:
    operator = bridge(server)
    agent_id, as_old = new_agent_with_key(server, label="laptop", ttl_seconds=86400)
    (old,) = operator.list_keys(agent_id).keys
    before = datetime.now(UTC)

    done = agentpack.rotate_key(operator, old.key_id, agent_id=agent_id)

    assert done.new_key.label == "laptop"  # kept from the old key
    assert done.new_key.expires_at is not None
    assert done.new_key.expires_at - done.new_key.created_at == timedelta(days=1)  # its lifetime too
    assert done.old_key is not None and done.old_key.key_id == old.key_id
    assert done.old_key.expires_at is not None
    grace_end = done.old_key.expires_at - before
    assert timedelta(minutes=59) < grace_end <= timedelta(hours=1, seconds=5)  # rotation_grace_seconds: 3600
    assert as_old.get_agent().agent_id == agent_id  # the old key still works right after the rotation
    listed = {key.key_id: key for key in operator.list_keys(agent_id).keys}
    assert listed[old.key_id].replaced_by == done.new_key.key_id and listed[old.key_id].status() == "rotated"
    assert listed[done.new_key.key_id].replaced_by is None and listed[done.new_key.key_id].status() == "active"
    assert Client(server, device_key=done.new_key.device_key).get_agent().agent_id == agent_id

    # With no grace window the old key stops at once, and the agent can rotate its own key.
    operator.set_setting("rotation_grace_seconds", 0)
    as_new = Client(server, device_key=done.new_key.device_key)
    again = agentpack.rotate_key(as_new, done.new_key.key_id)
    assert again.old_key is None  # read back with the key it just replaced: refused, but the new key is kept
    with pytest.raises(agentpack.Unauthenticated):
        as_new.get_agent()
    assert Client(server, device_key=again.new_key.device_key).get_agent().agent_id == agent_id

    with pytest.raises(agentpack.Conflict):
        agentpack.rotate_key(operator, done.new_key.key_id, agent_id=agent_id)  # already replaced and expired


def test_expiring_keys_lists_live_keys_expiring_within_the_window(server: str) -> None:
    operator = bridge(server)
    first = operator.create_agent("first").agent_id
    second = operator.create_agent("second").agent_id
    soon = operator.issue_key(first, label="soon", ttl_seconds=600)
    later = operator.issue_key(second, label="later", ttl_seconds=7200)
    operator.issue_key(first, label="never")
    revoked = operator.issue_key(second, label="revoked", ttl_seconds=300)
    operator.revoke_key(revoked.key_id)

    within_hour = agentpack.expiring_keys(operator, 3600)
    assert [(item.agent_id, item.key.key_id) for item in within_hour] == [(first, soon.key_id)]
    within_day = agentpack.expiring_keys(operator, 86400)
    assert [item.key.key_id for item in within_day] == [soon.key_id, later.key_id]
    assert [i.key.key_id for i in agentpack.expiring_keys(operator, 86400, agent_id=second)] == [later.key_id]
    as_first = Client(server, device_key=soon.device_key)
    assert [i.key.key_id for i in agentpack.expiring_keys(as_first, 86400)] == [soon.key_id]


def test_lists_page_and_iterate(server: str) -> None:
    operator = bridge(server)
    made = sorted(operator.create_agent(f"a{i}").agent_id for i in range(3))
    page = operator.list_agents(page_size=2)
    assert isinstance(page, agentpack.Page) and len(page.items) == 2 and page.next_page_token
    rest = operator.list_agents(page_size=2, page_token=page.next_page_token)
    assert rest.next_page_token is None
    assert [a.agent_id for a in page.agents + rest.agents] == made
    assert [a.agent_id for a in operator.iter_agents(page_size=1)] == made
    settings = operator.list_settings()
    assert settings["rotation_grace_seconds"] == 3600
    assert operator.set_setting("rotation_grace_seconds", 120).value == 120
    assert operator.update_agent(made[0], display_name="renamed").display_name == "renamed"
    assert operator.update_agent(made[0], disabled=True).disabled is True


# ---------------------------------------------------------------- stand-ins: retries, timeouts, odd answers


class Stub:
    """A tiny HTTP server of our own that answers from a script: [(status, body, headers), ...], the last repeating."""

    def __init__(self, answers: list[Answer]) -> None:
        self.answers = answers
        self.requests: list[dict[str, Any]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                stub.requests.append({"path": self.path, "headers": self.headers, "body": self.rfile.read(length)})
                status, body, headers = stub.answers[min(len(stub.requests), len(stub.answers)) - 1]
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                headers = {"Content-Type": "application/json", **headers}
                if "x-request-id" not in {k.lower() for k in headers}:
                    headers["x-request-id"] = self.headers.get("x-request-id", "")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> Stub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


Answer = tuple[int, Any, dict[str, str]]
UNAVAILABLE: Answer = (503, {"error": "unavailable", "error_description": "Retry later."}, {})
SETTINGS: Answer = (200, {"settings": {"rotation_grace_seconds": 3600}}, {})


@contextlib.contextmanager
def black_hole() -> Iterator[str]:
    """A port that accepts TCP connections (the kernel's backlog) and never answers a byte."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def fast(url: str, **options: Any) -> Client:
    return Client(url, device_key="apkd_stub", backoff=0.01, max_backoff=0.05, **options)


def test_a_read_is_retried_on_503_with_the_same_request_id() -> None:
    with Stub([UNAVAILABLE, UNAVAILABLE, SETTINGS]) as stub:
        answer = fast(stub.url).list_settings()
    assert answer.settings == {"rotation_grace_seconds": 3600}
    assert len(stub.requests) == 3
    sent = {request["headers"]["x-request-id"] for request in stub.requests}
    assert sent == {answer.request_id}  # one call, one ID, across its attempts


def test_retries_back_off_honour_retry_after_and_give_up() -> None:
    with Stub([(503, UNAVAILABLE[1], {"Retry-After": "3"})]) as stub:
        client = Client(stub.url, device_key="apkd_stub", backoff=0.1, max_backoff=1.0, max_attempts=4)
        slept: list[float] = []
        client._sleep = slept.append
        with pytest.raises(agentpack.Unavailable) as raised:
            client.get_agent()
    assert len(stub.requests) == 4 and raised.value.status == 503
    assert slept == [1.0, 1.0, 1.0]  # Retry-After 3 s, capped at max_backoff

    with Stub([UNAVAILABLE]) as stub:
        client = Client(stub.url, device_key="apkd_stub", backoff=0.1, max_backoff=10.0, max_attempts=4)
        slept = []
        client._sleep = slept.append
        with pytest.raises(agentpack.Unavailable):
            client.list_secrets()
    assert all(b / 2 <= s <= b for s, b in zip(slept, (0.1, 0.2, 0.4), strict=True))  # doubling, with jitter


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.put_secret("db", "v"),
        lambda c: c.create_agent("x"),
        lambda c: c.issue_key("agt_x"),
        lambda c: c.revoke_key("dk_x"),
        lambda c: c.delegate("agt_x", ["secrets/get"], 60),
        lambda c: c.set_setting("rotation_grace_seconds", 1),
    ],
)
def test_a_write_is_never_retried_once_sent(call: Any) -> None:
    with Stub([UNAVAILABLE, SETTINGS]) as stub, pytest.raises(agentpack.Unavailable):
        call(fast(stub.url))
    assert len(stub.requests) == 1


def test_a_refusal_is_never_retried() -> None:
    refused: Answer = (400, {"error": "invalid_request", "error_description": "name: bad"}, {})
    with Stub([refused, SETTINGS]) as stub, pytest.raises(agentpack.InvalidRequest) as raised:
        fast(stub.url).get_secret("db")
    assert len(stub.requests) == 1 and raised.value.description == "name: bad"


def test_a_server_that_never_answers_is_unavailable_within_the_timeout() -> None:
    with black_hole() as url:
        started = time.monotonic()
        with pytest.raises(agentpack.TimedOut) as read:
            fast(url, timeout=0.3).list_settings()  # a read: three attempts
        read_took = time.monotonic() - started
        started = time.monotonic()
        with pytest.raises(agentpack.Unavailable) as write:
            fast(url, timeout=0.3).put_secret("db", "v")  # a write: sent once, never again
        write_took = time.monotonic() - started
    assert isinstance(read.value, agentpack.ConnectionFailed) and read.value.status == 0
    assert "no answer within 0.3 s" in read.value.description
    assert 0.9 <= read_took < 3 and 0.3 <= write_took < 1.5
    assert isinstance(write.value, agentpack.TimedOut)


def test_a_closed_port_is_connection_failed() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(agentpack.ConnectionFailed) as raised:
        fast(url).put_secret("db", "v")  # nothing was sent: safe to retry even a write
    error = raised.value
    assert isinstance(error, agentpack.Unavailable)
    assert (error.code, error.status, error.url) == ("unavailable", 0, url)
    assert "connection refused" in error.description and error.request_id


def test_answers_that_are_not_the_service() -> None:
    html: Answer = (404, b"<html>Not Found</html>", {"Content-Type": "text/html"})
    with Stub([html]) as stub, pytest.raises(agentpack.UnexpectedResponse) as raised:
        fast(stub.url).list_settings()
    assert raised.value.status == 404 and "is not an agentpack answer" in raised.value.description
    assert len(stub.requests) == 1

    gateway: Answer = (502, b"Bad Gateway", {"Content-Type": "text/plain"})
    with Stub([gateway, SETTINGS]) as stub:
        assert fast(stub.url).list_settings().settings  # a gateway error is retried for a read
    assert len(stub.requests) == 2

    malformed: Answer = (200, {"agents": "not a list", "next_page_token": None}, {})
    with Stub([malformed]) as stub, pytest.raises(agentpack.UnexpectedResponse, match="'agents'"):
        fast(stub.url).list_agents()


def test_a_redirect_is_never_followed_so_the_credential_stays_put() -> None:
    with Stub([SETTINGS]) as elsewhere:
        moved: Answer = (307, b"", {"Location": elsewhere.url + "/settings/list"})
        with Stub([moved]) as stub, pytest.raises(agentpack.UnexpectedResponse) as raised:
            fast(stub.url).list_settings()
    assert raised.value.status == 307 and elsewhere.url in raised.value.description
    assert elsewhere.requests == []


def test_what_a_call_sends() -> None:
    with Stub([SETTINGS]) as stub:
        client = fast(stub.url + "/base/").with_delegation("dlg_1")
        client.list_settings()
        client.list_settings()
        Client(stub.url, token="tok.en.x").list_settings()
        with pytest.raises(agentpack.UnexpectedResponse):  # the stand-in answers settings to everything
            Client(stub.url, bridge_key="apkb_x").issue_key("agt_1", label=None, ttl_seconds=60)
        with pytest.raises(agentpack.UnexpectedResponse):
            client.put_secret("n", 'ü"')
    first, second, token, issue, put = stub.requests
    assert first["path"] == "/base/settings/list" and first["body"] == b"{}"
    assert first["headers"]["x-agentpack-device-key"] == "apkd_stub"
    assert first["headers"]["x-agentpack-delegation"] == "dlg_1"
    assert first["headers"]["Content-Type"] == "application/json"
    assert first["headers"]["x-request-id"] != second["headers"]["x-request-id"]  # fresh per call
    assert token["headers"]["Authorization"] == "Bearer tok.en.x"
    assert "x-agentpack-delegation" not in token["headers"]
    assert issue["headers"]["x-agentpack-key"] == "apkb_x"
    assert json.loads(issue["body"]) == {"agent_id": "agt_1", "ttl_seconds": 60}  # None fields left out
    assert put["body"] == '{"name":"n","value":"ü\\""}'.encode()  # UTF-8, not \u escapes: fits 64 KiB
    with pytest.raises(ValueError, match="surrogate"):
        fast("http://127.0.0.1:9").put_secret("n", "\ud800")


def test_reads_and_writes_are_told_apart() -> None:
    assert {"secrets/get", "agents/list", "audit/list", "settings/list"} <= READ_ROUTES
    assert not {"secrets/put", "agents/create", "device/issue", "device/revoke", "delegate"} & READ_ROUTES


def test_routes_map_to_deployed_function_names_on_cloudfunctions_net() -> None:
    assert route_path("", "127.0.0.1", "agents/create") == "/agents/create"
    assert route_path("/api/", "gw.example", "device/issue") == "/api/device/issue"
    assert route_path("", "europe-west1-p.cloudfunctions.net", "delegate/list") == "/delegate-list"


def test_the_client_refuses_what_cannot_be_right() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Client(bridge_key="apkb_x", device_key="apkd_x")
    with pytest.raises(ValueError, match="exactly one"):
        Client()
    with pytest.raises(ValueError, match="https"):
        Client("http://identity.example.com", device_key="apkd_x")
    assert Client("http://identity.example.com", device_key="apkd_x", allow_insecure_http=True)
    with pytest.raises(ValueError, match="device_key") as newline:
        Client(device_key="apkd_x\nx-injected: 1")
    assert "apkd" not in str(newline.value)  # never echoes the key
    with pytest.raises(ValueError, match="delegation"):
        Client(bridge_key="apkb_x", delegation="dlg_x")
    with pytest.raises(TypeError):
        Client(device_key="apkd_x").delegate("agt_x", "secrets/get", 60)
    assert "apkd_secret" not in repr(Client(device_key="apkd_secret"))


def test_credentials_from_the_environment(tmp_path: Path) -> None:
    key_file = tmp_path / "device.key"
    key_file.write_text("apkd_fromfile\n")
    env = {
        "AGENTPACK_BRIDGE_KEY": "apkb_x",
        "AGENTPACK_DEVICE_KEY_FILE": str(key_file),
        "AGENTPACK_URL": "http://localhost:9",
    }
    assert config.choose("bridge", env=env).kind == "bridge_key"
    assert config.choose("any", env=env).kind == "bridge_key"
    agent = config.choose("agent", env=env)
    assert (agent.kind, agent.value) == ("device_key", "apkd_fromfile") and "device.key" in agent.source
    assert config.choose("bridge", "agent", env=env).kind == "device_key"
    only_device = {"AGENTPACK_DEVICE_KEY": "apkd_x"}
    assert config.choose("bridge", env=only_device).kind == "device_key"  # sent, and refused by the service
    with pytest.raises(agentpack.ConfigurationError, match="AGENTPACK_BRIDGE_KEY_FILE"):
        config.choose("any", "bridge", env=only_device)
    with pytest.raises(agentpack.ConfigurationError, match="not both"):
        config.choose("agent", env={"AGENTPACK_DEVICE_KEY": "a", "AGENTPACK_DEVICE_KEY_FILE": str(key_file)})
    with pytest.raises(agentpack.ConfigurationError, match="cannot read"):
        config.choose("agent", env={"AGENTPACK_TOKEN_FILE": str(tmp_path / "missing")})
    client = Client.from_env("agent", env={**env, "AGENTPACK_DELEGATION": "dlg_1"})
    assert (client.base_url, client.credential_kind, client.delegation) == ("http://localhost:9", "device_key", "dlg_1")
    assert Client.from_env("bridge", env=env).delegation is None


def test_from_env_raises_only_what_docs_cli_md_documents(tmp_path: Path) -> None:
    raised: dict[str, type[Exception]] = {}
    cases: dict[str, tuple[dict[str, str], dict[str, Any]]] = {
        "no credential": ({}, {}),
        "variable and file": ({"AGENTPACK_DEVICE_KEY": "apkd_x", "AGENTPACK_DEVICE_KEY_FILE": str(tmp_path)}, {}),
        "unreadable file": ({"AGENTPACK_DEVICE_KEY_FILE": str(tmp_path / "missing")}, {}),
        "plain http elsewhere": ({"AGENTPACK_URL": "http://identity.example.com", "AGENTPACK_DEVICE_KEY": "k"}, {}),
        "not a URL": ({"AGENTPACK_URL": "identity", "AGENTPACK_DEVICE_KEY": "k"}, {}),
        "key with a space": ({"AGENTPACK_DEVICE_KEY": "apkd x"}, {}),
        "bad timeout": ({"AGENTPACK_DEVICE_KEY": "k"}, {"timeout": 0}),
        "unknown option": ({"AGENTPACK_DEVICE_KEY": "k"}, {"colour": "blue"}),
    }
    for case, (env, options) in cases.items():
        with pytest.raises(Exception) as caught:  # which class: compared below
            Client.from_env("agent", env=env, **options)
        raised[case] = type(caught.value)
    assert raised["no credential"] is raised["variable and file"] is raised["unreadable file"]
    assert raised["no credential"] is agentpack.ConfigurationError
    assert {raised[c] for c in ("plain http elsewhere", "not a URL", "key with a space", "bad timeout")} == {ValueError}
    assert raised["unknown option"] is TypeError
    docs = (ROOT / "docs" / "cli.md").read_text()
    section = docs[docs.index("### `Client.from_env`") :].split("\n### ", 1)[0]
    for exception in set(raised.values()):
        assert f"`{exception.__name__}`" in section, exception


def test_answers_are_built_from_their_type_hints() -> None:
    from agentpack import models

    stamp = "2026-11-22T10:00:00Z"
    key = {"key_id": "dk_1", "label": None, "created_at": stamp, "expires_at": None, "revoked_at": None}
    listed = models.parse(models.KeyList, {"keys": [key, {**key, "replaced_by": "dk_2"}], "extra": 1}, "req_1")
    assert listed.request_id == "req_1" and [k.replaced_by for k in listed.keys] == [None, "dk_2"]
    assert listed.keys[0].created_at == datetime(2026, 11, 22, 10, tzinfo=UTC)
    assert models.parse(models.Delegation, {
        "delegation_id": "dlg_1", "from_agent": "a", "to_agent": "b", "scope": ["secrets/get"],
        "created_at": stamp, "expires_at": "2026-11-22T12:00:00+02:00",
    }).scope == ("secrets/get",)  # fmt: skip
    assert models.parse(models.Settings, {"settings": {"a": 1}})["a"] == 1
    for answer, data, named in (
        (models.KeyList, {"keys": [{**key, "created_at": "yesterday"}]}, "'created_at'"),
        (models.KeyList, {"keys": [{**key, "key_id": 7}]}, "'key_id'"),
        (models.KeyList, {"keys": ["dk_1"]}, "'keys[]'"),
        (models.Settings, {"settings": {"a": True}}, "'settings.a'"),  # a bool is no int on the wire
        (models.Secret, {"name": "n", "version": 1, "updated_at": stamp}, "'value'"),
        (models.AuditPage, {"events": [], "next_page_token": 3}, "'next_page_token'"),
    ):
        with pytest.raises(models.MalformedAnswer, match=re.escape(named)):
            models.parse(answer, data)
    for name in agentpack.__all__:
        exported = getattr(agentpack, name)
        if isinstance(exported, type) and exported.__module__ == "agentpack.models" and exported is not agentpack.Page:
            assert not hasattr(exported, "parse"), name  # one mechanism for all


def test_an_unknown_code_still_gets_the_class_of_its_status() -> None:
    assert type(errors.from_answer(503, "datastore_down", "x", None)) is agentpack.Unavailable
    assert type(errors.from_answer(418, "teapot", "x", None)) is agentpack.ApiError
    assert type(errors.from_answer(400, "ambiguous_credentials", "x", None)) is agentpack.AmbiguousCredentials


def test_rotation_module_is_exported() -> None:
    assert agentpack.rotate_key is rotation.rotate_key and agentpack.expiring_keys is rotation.expiring_keys


# ---------------------------------------------------------------- OAuth 2.0, against the real server


def test_oauth_grants_introspection_and_revocation(server: str) -> None:
    from shared import crypto, jws

    operator = bridge(server)
    agent = operator.create_agent("svc", scopes=["secrets/list", "read:reports"])
    assert agent.scopes == ("secrets/list", "read:reports") and agent.public is False
    key = operator.issue_key(agent.agent_id, scopes=["secrets/list"])
    assert key.scopes == ("secrets/list",) and key.device_key is not None
    as_agent = Client(server, device_key=key.device_key)
    for auth in ("basic", "post"):
        issued = as_agent.client_credentials_token(auth=auth)
        assert isinstance(issued, agentpack.TokenAnswer) and issued.token_type == "Bearer"
        assert issued.scopes == ("secrets/list",) and issued.refresh_token is None and issued.expires_in == 900
        assert issued.access_token not in repr(issued)
    with pytest.raises(errors.InvalidScope) as narrowed:  # the key is narrowed: never in silence
        as_agent.client_credentials_token("read:reports")
    assert narrowed.value.status == 400 and isinstance(narrowed.value, errors.InvalidRequest)

    token = as_agent.client_credentials_token(["secrets/list"])
    assert Client(server, token=token.access_token).list_secrets().secrets == ()  # a route, with the token
    looked = as_agent.introspect(token.access_token)
    assert looked.active and looked.client_id == looked.sub == agent.agent_id and looked.scope == "secrets/list"
    assert looked.token_type == "Bearer" and looked.aud == looked.iss == server
    assert operator.introspect(token.access_token).active  # the bridge key may introspect too
    assert as_agent.introspect("not a token") == agentpack.Introspection(active=False)
    as_agent.revoke_token(token.access_token)
    assert not as_agent.introspect(token.access_token).active
    with pytest.raises(errors.Unauthenticated):
        Client(server, token=token.access_token).list_secrets()

    # a key pair: private_key_jwt, the jwt-bearer login, refresh rotation and reuse detection
    seed, public = crypto.new_signing_key()
    pair = operator.issue_key(agent.agent_id, public_key=jws.b64encode(public), label="ci")
    assert pair.device_key is None
    keyless = Client(server, oauth_only=True)
    with pytest.raises(ValueError, match="no credential"):
        keyless.list_secrets()
    login = keyless.jwt_bearer_token(seed, pair.key_id)
    assert login.refresh_token is not None and login.scopes == ("secrets/list", "read:reports")
    renewed = keyless.refresh(login.refresh_token, "read:reports", private_key_seed=seed, key_id=pair.key_id)
    assert renewed.refresh_token is not None and renewed.refresh_token != login.refresh_token
    assert renewed.scopes == ("read:reports",)
    with pytest.raises(errors.InvalidGrant):  # spent, used again: the whole family is revoked
        keyless.refresh(login.refresh_token, private_key_seed=seed, key_id=pair.key_id)
    assert not operator.introspect(renewed.refresh_token).active
    assert not operator.introspect(renewed.access_token).active
    assert [e.action for e in operator.iter_audit(action="token.reuse_detected")] == ["token.reuse_detected"]

    external = keyless.private_key_jwt_token(seed, pair.key_id, "read:reports", resource="https://reports.example.com")
    import jwt

    signing_key = jwt.PyJWKClient(server + "/.well-known/jwks.json").get_signing_key_from_jwt(external.access_token)
    claims = jwt.decode(
        external.access_token, signing_key, algorithms=["EdDSA"], audience="https://reports.example.com", issuer=server
    )
    assert claims["sub"] == agent.agent_id and claims["scope"] == "read:reports" and claims["key_id"] == pair.key_id

    operator.revoke_key(key.key_id)
    with pytest.raises(errors.InvalidClient) as refused:
        as_agent.client_credentials_token()
    assert refused.value.status == 401 and isinstance(refused.value, errors.Unauthenticated)
    with pytest.raises(ValueError, match="device key"):
        operator.client_credentials_token()


def test_the_device_key_names_its_agent() -> None:
    from shared import ids

    agent_id = ids.new_agent_id()
    key = forged_device_key(ids.new_device_key_id(agent_id))
    assert agentpack.client.agent_of_device_key(key) == agent_id
    assert agentpack.client.agent_of_device_key("apkb_" + key[5:]) is None


# ---------------------------------------------------------------- users, their grants, relations


def _uid(name: str) -> str:
    return f"{name}-{os.urandom(6).hex()}"  # the module's server outlives a test: a fresh account each run


def test_users_are_created_read_listed_and_updated_with_the_bridge_key(server: str) -> None:
    operator = bridge(server)
    uid = _uid("ada")
    tenant = "t" + os.urandom(4).hex()
    ada = operator.create_user(uid, tenant_id=tenant, display_name="Ada")
    assert isinstance(ada, agentpack.User) and ada.user_id.startswith("usr_")
    assert (ada.firebase_uid, ada.tenant_id, ada.display_name, ada.disabled) == (uid, tenant, "Ada", False)
    assert ada.request_id and ada.request_id.startswith("req_")
    assert operator.get_user(ada.user_id) == ada
    with pytest.raises(errors.Conflict):
        operator.create_user(uid, tenant_id=tenant)
    bob = operator.create_user(_uid("bob"), tenant_id=tenant)
    assert bob.display_name is None
    page = operator.list_users(tenant_id=tenant, page_size=1)
    assert isinstance(page, agentpack.UserPage) and len(page.users) == 1 and page.next_page_token is not None
    assert {u.user_id for u in operator.iter_users(tenant_id=tenant, page_size=1)} == {ada.user_id, bob.user_id}
    renamed = operator.update_user(ada.user_id, display_name="Ada L.", disabled=True)
    assert (renamed.display_name, renamed.disabled) == ("Ada L.", True)
    assert operator.get_user(ada.user_id).disabled is True
    with pytest.raises(errors.NotFound):
        operator.get_user("usr_" + "0" * 22)
    _, as_agent = new_agent_with_key(server)
    with pytest.raises(errors.Forbidden):
        as_agent.list_users()


def test_a_user_grants_an_agent_and_checks_follow_the_grant(server: str) -> None:
    operator = bridge(server)
    tenant = "t" + os.urandom(4).hex()
    user = operator.create_user(_uid("grace"), tenant_id=tenant)
    agent = operator.create_agent("reader", tenant_id=tenant, scopes=["authz:write", "authz:read", "authz:check"])
    as_agent = Client(server, device_key=str(operator.issue_key(agent.agent_id).device_key))
    doc, me, them = f"doc:{os.urandom(4).hex()}", f"agent:{agent.agent_id}", f"user:{user.user_id}"

    # The bridge key writes in the tenant it names; the agent, with authz:write, in its own.
    written = operator.write_relations([agentpack.RelationTuple(doc, "owner", them)], tenant_id=tenant)
    assert isinstance(written, agentpack.RelationsWritten) and (written.written, written.deleted) == (1, 0)
    assert operator.write_relations([agentpack.RelationTuple(doc, "owner", them)], tenant_id=tenant).written == 0
    assert as_agent.write_relations([agentpack.RelationTuple(doc, "viewer", me)]).written == 1
    expected = {(doc, "owner", them), (doc, "viewer", me)}
    for reader in (as_agent.read_relations(doc), operator.read_relations(doc, tenant_id=tenant)):
        assert {(t.resource, t.relation, t.subject) for t in reader.tuples} == expected
    assert operator.read_relations(doc, tenant_id="elsewhere").tuples == ()

    assert operator.check("share", doc, subject=them, tenant_id=tenant).allowed is True
    assert as_agent.check("read", doc, subject=me).allowed is True
    assert as_agent.check("write", doc, subject=me).allowed is False
    # Acting for the user needs a live grant: none yet.
    assert as_agent.check("write", doc, subject=me, on_behalf_of=them).allowed is False
    grant = operator.grant_user_delegation(agent.agent_id, ["read", "write"], ttl_seconds=600, user_id=user.user_id)
    assert isinstance(grant, agentpack.UserGrant) and grant.grant_id.startswith("ugr_")
    assert (grant.user_id, grant.agent_id, grant.actions) == (user.user_id, agent.agent_id, ("read", "write"))
    assert grant.expires_at - grant.created_at == timedelta(seconds=600)
    assert as_agent.check("write", doc, subject=me, on_behalf_of=them).allowed is True
    assert as_agent.check("delete", doc, subject=me, on_behalf_of=them).allowed is False  # not granted
    held = as_agent.list_user_delegations()
    assert [(g.grant_id, g.revoked_at) for g in held.grants] == [(grant.grant_id, None)]

    revoked = as_agent.revoke_user_delegation(grant.grant_id)  # the agent may end a grant it holds
    assert isinstance(revoked, agentpack.UserGrantRevocation) and revoked.grant_id == grant.grant_id
    assert as_agent.check("write", doc, subject=me, on_behalf_of=them).allowed is False
    assert as_agent.list_user_delegations().grants[0].revoked_at == revoked.revoked_at

    deleted = as_agent.write_relations(deletes=[agentpack.RelationTuple(doc, "viewer", me)])
    assert (deleted.written, deleted.deleted) == (0, 1)
    assert as_agent.check("read", doc, subject=me).allowed is False

    with pytest.raises(errors.InvalidRequest):
        operator.write_relations([agentpack.RelationTuple(doc, "owner", them)])  # the bridge names the tenant
    with pytest.raises(ValueError):
        operator.check("read", doc, tenant_id=tenant)  # neither subject nor token
    _, plain = new_agent_with_key(server, "no-authz")
    with pytest.raises(errors.Forbidden):
        plain.read_relations(doc)
