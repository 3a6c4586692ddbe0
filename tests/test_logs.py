"""Structured request logs: one JSON line per request, in Cloud Logging's shape, never a secret.

The lines are read where the service writes them (file descriptor 2, through ``capfd``); the
session-wide scan of every line (tests/log_scan.py) is checked here against planted lines.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest

from shared import keys, logs
from tests import log_scan
from tests.conftest import BRIDGE_KEY, Api, function_client
from tests.oauth_support import ISSUER, TOKEN_URL, KeyPair, basic, dpop_proof, new_client, secret_key, token
from tests.people import People
from tests.test_delegations import token_for

CANARY = "canary-secret-value-7f3c9a1e5b"  # never in a log line: the session scan checks it too
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
LATENCY = re.compile(r"[0-9]+\.[0-9]{6}s")


def lines_of(capfd: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """Every line the service wrote on standard error, each one JSON object."""
    written = capfd.readouterr().err.splitlines()
    return [json.loads(line) for line in written if line.strip()]


def request_lines(lines: list[dict[str, Any]], request_id: str) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("request_id") == request_id and "httpRequest" in line]


# ---------------------------------------------------------------- the request line


def test_each_request_logs_one_json_line_with_its_outcome_and_caller_and_no_credential(
    api: Api, capfd: pytest.CaptureFixture[str]
) -> None:
    log_scan.SESSION.canary(CANARY)
    agent = new_client(api, scopes=["agents/get"])
    device_key, _ = secret_key(api, agent)
    holder = KeyPair.new()
    answer = token(
        {"grant_type": "client_credentials"}, {**basic(agent, device_key), "DPoP": dpop_proof(holder, TOKEN_URL)}
    )
    assert answer.status_code == 200, answer.get_json()
    access = answer.get_json()["access_token"]
    capability = token_for(agent, ["secrets/get"])
    capfd.readouterr()  # only what follows
    agent_ua = f"agentpack-test/1.0 {device_key}"  # a careless client: its key in its user agent
    put = function_client("secrets_put").post(
        "/?token=in-the-query",
        json={"name": "db", "value": CANARY},
        headers={
            "x-agentpack-device-key": device_key,
            "x-request-id": "rid-put-1",
            "X-Cloud-Trace-Context": f"{TRACE_ID}/123;o=1",
            "User-Agent": agent_ua,
        },
    )
    assert put.status_code == 200, put.get_json()
    get = api.call("secrets/get", {"name": "db"}, {"authorization": f"Bearer {capability}", "x-request-id": "rid-get"})
    assert get.get_json()["value"] == CANARY
    proof = dpop_proof(holder, f"{ISSUER}/agents/get", access_token=access)
    bound = api.call("agents/get", {}, {"authorization": f"DPoP {access}", "DPoP": proof, "x-request-id": "rid-dpop"})
    assert bound.status_code == 200, bound.get_json()
    every = {  # all at once: refused, and still none of them written
        "x-agentpack-device-key": device_key,
        "authorization": f"Bearer {capability}",
        "DPoP": proof,
        "x-request-id": "rid-all",
        "traceparent": "not-a-traceparent " + device_key,
    }
    refused = api.call("secrets/put", {"name": "db", "value": CANARY}, every)
    assert refused.status_code == 400, refused.get_json()
    written = capfd.readouterr().err
    lines = [json.loads(line) for line in written.splitlines() if line.strip()]

    (line,) = request_lines(lines, "rid-put-1")
    assert line["severity"] == "INFO" and line["logger"] == "agentpack"
    assert line["message"] == "POST /secrets/put 200"
    assert line["route"] == "secrets/put" and line["status"] == 200
    http = line["httpRequest"]
    assert http["requestMethod"] == "POST" and http["requestUrl"] == "/secrets/put" and http["status"] == 200
    assert LATENCY.fullmatch(http["latency"]), http["latency"]
    assert http["remoteIp"] == "127.0.0.1"
    assert http["userAgent"] == "agentpack-test/1.0 [redacted]"
    assert line["logging.googleapis.com/trace"] == f"projects/demo-agentpack/traces/{TRACE_ID}"
    assert line["logging.googleapis.com/spanId"] == f"{123:016x}"
    assert line["logging.googleapis.com/trace_sampled"] is True
    assert line["caller"] == {"kind": "agent", "via": "device_key", "agent_id": agent}
    (line,) = request_lines(lines, "rid-get")
    assert line["caller"] == {"kind": "agent", "via": "capability", "agent_id": agent}
    assert "logging.googleapis.com/trace" not in line
    (line,) = request_lines(lines, "rid-dpop")
    assert line["caller"] == {"kind": "agent", "via": "access_token", "agent_id": agent}
    (line,) = request_lines(lines, "rid-all")
    assert line["status"] == 400 and line["error"] == "ambiguous_credentials" and "caller" not in line
    assert "logging.googleapis.com/trace" not in line  # a malformed trace header is ignored, never echoed
    for secret in (device_key, keys.hash_key(device_key), access, proof, capability, CANARY, "in-the-query"):
        assert secret not in written, secret[:8]
    assert log_scan.Scanner(lines=[log_scan.Line("capfd", written)]).findings() == []


def test_an_oauth_client_is_logged_by_its_id_once_authenticated(api: Api, capfd: pytest.CaptureFixture[str]) -> None:
    agent = new_client(api)
    secret, _ = secret_key(api, agent)
    capfd.readouterr()
    assert (
        token({"grant_type": "client_credentials"}, {**basic(agent, secret), "x-request-id": "rid-t"}).status_code
        == 200
    )
    refused = token({"grant_type": "client_credentials"}, {**basic(agent, secret + "x"), "x-request-id": "rid-u"})
    assert refused.status_code == 401
    lines = lines_of(capfd)
    assert request_lines(lines, "rid-t")[0]["caller"] == {"kind": "client", "client_id": agent}
    (unauthenticated,) = request_lines(lines, "rid-u")
    assert "caller" not in unauthenticated and unauthenticated["error"] == "invalid_client"


def test_the_bridge_a_delegation_and_a_refusal(api: Api, capfd: pytest.CaptureFixture[str]) -> None:
    grantor = api.new_agent("grantor")
    grantor_key = api.new_key(grantor)["device_key"]
    grantee = api.new_agent("grantee")
    grantee_key = api.new_key(grantee)["device_key"]
    delegation = api.device(
        grantor_key, "delegate", {"to_agent": grantee, "scope": ["secrets/list"], "ttl_seconds": 600}
    ).get_json()["delegation_id"]
    capfd.readouterr()
    api.call("settings/list", {}, {"x-agentpack-key": BRIDGE_KEY, "x-request-id": "rid-b"})
    headers = {"x-agentpack-device-key": grantee_key, "x-agentpack-delegation": delegation, "x-request-id": "rid-d"}
    assert api.call("secrets/list", {}, headers).status_code == 200
    assert (
        api.call("agents/list", {}, {"x-agentpack-device-key": grantee_key, "x-request-id": "rid-f"}).status_code == 403
    )
    assert api.call("agents/get", {}, {"x-request-id": "rid-n"}).status_code == 401
    assert function_client("agents_get").get("/", headers={"x-request-id": "rid-m"}).status_code == 405
    lines = lines_of(capfd)
    assert request_lines(lines, "rid-b")[0]["caller"] == {"kind": "bridge"}
    assert request_lines(lines, "rid-d")[0]["caller"] == {
        "kind": "agent",
        "via": "device_key",
        "agent_id": grantor,
        "actor_id": grantee,
        "delegation_id": delegation,
    }
    forbidden = request_lines(lines, "rid-f")[0]
    assert (forbidden["severity"], forbidden["status"], forbidden["error"]) == ("INFO", 403, "forbidden")
    assert forbidden["caller"]["agent_id"] == grantee  # verified, then refused
    assert "caller" not in request_lines(lines, "rid-n")[0]
    assert request_lines(lines, "rid-m")[0]["httpRequest"]["requestMethod"] == "GET"
    for request_id in ("rid-b", "rid-d", "rid-f", "rid-n", "rid-m"):
        assert len(request_lines(lines, request_id)) == 1


def test_a_signed_in_user_is_logged_by_id_and_never_by_token(
    api: Api, auth_emulator: str, capfd: pytest.CaptureFixture[str]
) -> None:
    user = People(api, auth_emulator).user()
    capfd.readouterr()
    answer = api.call("users/get", {}, {**user.headers, "x-request-id": "rid-user"})
    assert answer.status_code == 200, answer.get_json()
    written = capfd.readouterr().err
    (line,) = request_lines([json.loads(x) for x in written.splitlines() if x.strip()], "rid-user")
    assert line["caller"] == {"kind": "user", "user_id": user.user_id}
    assert user.token not in written and user.uid not in written


def test_a_request_id_shaped_like_a_credential_is_replaced_and_never_logged(
    api: Api, capfd: pytest.CaptureFixture[str]
) -> None:
    key = api.new_key(api.new_agent())["device_key"]
    capfd.readouterr()
    for sent in (key, "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln"):
        answer = api.call("agents/get", {}, {"x-agentpack-device-key": key, "x-request-id": sent})
        assert answer.status_code == 200 and answer.headers["x-request-id"].startswith("req_")
    kept = api.call("agents/get", {}, {"x-agentpack-device-key": key, "x-request-id": "apk-but-not-a-key"})
    assert kept.headers["x-request-id"] == "apk-but-not-a-key"  # the control
    written = capfd.readouterr().err
    assert key not in written and "eyJ" not in written and "apk-but-not-a-key" in written


# ---------------------------------------------------------------- severities, traces, other lines


@pytest.mark.parametrize(
    ("status", "severity"),
    [(200, "INFO"), (201, "INFO"), (302, "INFO"), (400, "INFO"), (404, "INFO"), (429, "WARNING"), (503, "WARNING"),
     (500, "ERROR"), (502, "ERROR")],
)  # fmt: skip
def test_severity_follows_the_status(status: int, severity: str) -> None:
    assert logs.severity_of_status(status) == severity


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-cloud-trace-context": [f"{TRACE_ID}/1;o=1"]}, logs.Trace(TRACE_ID, f"{1:016x}", True)),
        ({"x-cloud-trace-context": [f"{TRACE_ID.upper()}"]}, logs.Trace(TRACE_ID, None, False)),
        ({"x-cloud-trace-context": [f"{TRACE_ID}/18446744073709551615;o=0"]}, logs.Trace(TRACE_ID, "f" * 16, False)),
        ({"traceparent": [f"00-{TRACE_ID}-00f067aa0ba902b7-01"]}, logs.Trace(TRACE_ID, "00f067aa0ba902b7", True)),
        (
            {"traceparent": [f"00-{TRACE_ID}-00f067aa0ba902b7-00"], "x-cloud-trace-context": ["1" * 32]},
            logs.Trace(TRACE_ID, "00f067aa0ba902b7", False),
        ),
        ({"traceparent": ["garbage"], "x-cloud-trace-context": [TRACE_ID]}, logs.Trace(TRACE_ID, None, False)),
    ],
)
def test_well_formed_trace_headers_are_read(headers: dict[str, list[str]], expected: logs.Trace) -> None:
    assert logs.trace_of(headers) == expected


@pytest.mark.parametrize(
    "sent",
    [
        {"x-cloud-trace-context": [f"{TRACE_ID}/18446744073709551616"]},  # a span over 64 bits
        {"x-cloud-trace-context": ["0" * 32 + "/1;o=1"]},
        {"x-cloud-trace-context": [f"{TRACE_ID}/1;o=1\nforged: yes"]},
        {"x-cloud-trace-context": [f"{TRACE_ID}/1;o=2"]},
        {"x-cloud-trace-context": [f"{TRACE_ID}x"]},
        {"x-cloud-trace-context": [TRACE_ID, TRACE_ID]},  # sent twice
        {"traceparent": [f"00-{TRACE_ID.upper()}-00f067aa0ba902b7-01"]},
        {"traceparent": [f"01-{TRACE_ID}-00f067aa0ba902b7-01"]},
        {"traceparent": [f"00-{'0' * 32}-00f067aa0ba902b7-01"]},
        {"traceparent": [f"00-{TRACE_ID}-{'0' * 16}-01"]},
        {"traceparent": [f"00-{TRACE_ID}-00f067aa0ba902b7-01-extra"]},
    ],
)
def test_malformed_trace_headers_are_ignored(sent: dict[str, list[str]]) -> None:
    assert logs.trace_of(sent) is None


def test_a_trace_names_the_configured_project(
    api: Api, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "prod-project")
    capfd.readouterr()
    headers = {
        "x-agentpack-key": BRIDGE_KEY,
        "x-request-id": "rid-p",
        "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01",
    }
    api.call("settings/list", {}, headers)
    (line,) = request_lines(lines_of(capfd), "rid-p")
    assert line["logging.googleapis.com/trace"] == f"projects/prod-project/traces/{TRACE_ID}"


def test_a_line_logged_while_answering_carries_the_request_and_never_a_traceback(
    capfd: pytest.CaptureFixture[str],
) -> None:
    logs.install()
    capfd.readouterr()
    service = logging.getLogger(logs.SERVICE_LOGGER)
    headers = {"x-cloud-trace-context": [f"{TRACE_ID}/7;o=1"]}
    with logs.request("secrets/get", "rid-inner", headers):
        try:
            raise ValueError("a value that must not be logged: " + CANARY)
        except ValueError:
            service.exception("something failed")
    service.warning("outside any request")
    inner, outside = lines_of(capfd)
    assert inner == {
        "severity": "ERROR",
        "message": "something failed",
        "logger": "agentpack",
        "request_id": "rid-inner",
        "route": "secrets/get",
        "logging.googleapis.com/trace": f"projects/demo-agentpack/traces/{TRACE_ID}",
        "logging.googleapis.com/spanId": f"{7:016x}",
        "logging.googleapis.com/trace_sampled": True,
        "exception": "ValueError",
    }
    assert outside == {"severity": "WARNING", "message": "outside any request", "logger": "agentpack"}


def test_an_internal_error_logs_its_class_and_request_id_only(
    api: Api, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared import settings

    def broken(*_: Any, **__: Any) -> Any:
        raise KeyError(CANARY)

    monkeypatch.setattr(settings, "current", broken)
    capfd.readouterr()
    answer = api.call("settings/list", {}, {"x-agentpack-key": BRIDGE_KEY, "x-request-id": "rid-500"})
    assert answer.status_code == 500
    lines = [line for line in lines_of(capfd) if line.get("request_id") == "rid-500"]
    assert [line["severity"] for line in lines] == ["ERROR", "ERROR"]
    assert lines[0]["message"].startswith("internal error KeyError at ")
    assert lines[1]["message"] == "POST /settings/list 500 internal"
    assert CANARY not in json.dumps(lines)


def test_a_user_agent_keeps_its_words_and_loses_anything_shaped_like_a_secret() -> None:
    token_shaped = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln"
    assert logs.user_agent("agentpack/0.1.0 python/3.11") == "agentpack/0.1.0 python/3.11"
    assert logs.user_agent(f"x {token_shaped} y") == "x [redacted] y"
    assert logs.user_agent("x " + "A" * 40) == "x [redacted]"
    assert len(logs.user_agent("a" * 10_000)) <= logs.USER_AGENT_MAX


# ---------------------------------------------------------------- the session-wide scan


PLANTED = {
    "agentpack key or refresh token": "device key apkd_" + "A" * 60,
    "JWS or JWT": "token eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.sig",
    "SHA-256 hex digest": "hash " + keys.hash_key(BRIDGE_KEY),
    "PEM block": "-----BEGIN PRIVATE KEY-----",
    "Python traceback": "Traceback (most recent call last):",
}


@pytest.mark.parametrize("pattern", list(PLANTED))
def test_the_scan_catches_each_pattern_in_a_planted_line(pattern: str) -> None:
    scanner = log_scan.Scanner()
    scanner.keep("planted", json.dumps({"severity": "INFO", "message": PLANTED[pattern]}))
    assert scanner.findings() == [log_scan.Finding("planted", pattern)]


def test_the_scan_catches_dev_secrets_and_canaries_and_reports_no_secret() -> None:
    dev = sorted(log_scan.dev_secrets())
    assert len(dev) == 2  # the secrets key and the token signing seed of dev.env
    scanner = log_scan.Scanner()
    scanner.canary(CANARY)
    scanner.keep("a.logger", f"seed {dev[0]}", f"the value {CANARY}")
    findings = scanner.findings(dev)
    assert findings == [
        log_scan.Finding("a.logger", log_scan.DEV_SECRET),
        log_scan.Finding("a.logger", log_scan.CANARY),
    ]
    text = "\n".join(log_scan.report(findings))
    assert "'a.logger'" in text and log_scan.CANARY in text
    assert dev[0] not in text and CANARY not in text


def test_the_scan_passes_clean_lines_and_reads_a_served_process() -> None:
    scanner = log_scan.Scanner()
    clean = {
        "severity": "INFO",
        "message": "POST /agents/get 200",
        "request_id": "req_abc",
        "logging.googleapis.com/trace": f"projects/p/traces/{TRACE_ID}",
        "caller": {"kind": "agent", "agent_id": "agt_" + "a" * 22},
    }
    scanner.feed("served", json.dumps(clean) + "\nagentpack identity: serving\n")
    assert scanner.findings(log_scan.dev_secrets()) == []
    assert [line.logger for line in scanner.lines] == ["served: ?"]
    scanner.feed("served", "Traceback (most recent call last):\nnot json apkd_" + "A" * 60 + "\n")
    assert scanner.findings() == [log_scan.Finding("served", "Python traceback")]  # other plain lines: not ours


def test_the_session_scan_is_installed_and_sees_the_service() -> None:
    assert any(isinstance(handler, log_scan.Capture) for handler in logging.getLogger().handlers)
    before = len(log_scan.SESSION.lines)
    logging.getLogger(logs.SERVICE_LOGGER).warning("seen by the scan")
    assert len(log_scan.SESSION.lines) > before
