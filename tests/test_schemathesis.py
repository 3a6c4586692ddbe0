"""Schemathesis against a real ``scripts/serve``: every JSON route of the generated OpenAPI document.

The test starts the server (``python -m scripts.serve``, as ``scripts/serve`` runs it) on a free
port over the session's Firestore and Auth emulators, loads ``GET /openapi.json`` with
Schemathesis, and for every route that answers JSON sends 20 generated requests (20 times
``AGENTPACK_FUZZ_SCALE``), positive and negative (bodies that break the schema), derandomized so CI
sees the same ones. Each request carries a credential drawn by Hypothesis: none, what Schemathesis
generated for the security schemes, the dev bridge key, an agent's device key, its capability
token or OAuth access token, a delegate's key with a delegation, a Firebase user's ID token, or
client Basic authentication; body fields that name things (``agent_id``, ``key_id``, ``name``…)
are sometimes replaced by real ones, so the success paths are reached too.

Checks: never a 5xx; every answer's status, content type, headers and body conform to the
document (Schemathesis' own checks); and a refused (4xx) request writes nothing: every document
of the datastore, audit events included, is fingerprinted (name and update time, one emulator
query) after each call. The only writes a refusal may make are the documented bookkeeping of
RFC 8628: a wrong user code counted against the signed-in person, and a device-code poll's time.
A summary line per route and a total are printed at the end of the module.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import threading
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.openapi.checks import JsonSchemaError, UndefinedStatusCode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from scripts import emulator
from shared import openapi, store, tokens
from tests import emulator_rest, log_scan
from tests.conftest import BRIDGE_KEY, ROOT
from tests.fuzzing import SCALE
from tests.local_server import banner, clean_env, post, serve, stop
from tests.people import sign_up

EXAMPLES = 20 * SCALE
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Every route whose answer is a JSON document (the activation page and its files are not).
JSON_ROUTES = [route for route in openapi.ROUTES if not isinstance(route.answer, tuple)]
CREDENTIAL_HEADERS = {"x-agentpack-key", "x-agentpack-device-key", "x-agentpack-delegation", "authorization", "dpop"}
CREDENTIALS = ["generated", "none", "bridge", "device", "capability", "access", "delegated", "user", "basic"]
# The credential each security requirement of the document stands for (DPoP-bound tokens are left to
# tests/test_oauth_dpop.py: a proof is good for one request only).
SCHEME_CREDENTIALS = {
    (openapi.BRIDGE,): "bridge",
    (openapi.DEVICE,): "device",
    (openapi.CAPABILITY,): "capability",
    (openapi.ACCESS_TOKEN,): "access",
    (openapi.DEVICE, openapi.DELEGATION): "delegated",
    (openapi.USER,): "user",
    (openapi.CLIENT_BASIC,): "basic",
    (): "none",
}
# Bookkeeping a refused request may write, by design (RFC 8628), and the only such writes:
# a wrong user code is counted against the person (404, then 429), a device-code poll notes its time.
REFUSAL_NOTES: dict[str, tuple[str, ...]] = {
    "activate/lookup": ("activation_failures/",),
    "activate/decide": ("activation_failures/",),
    "oauth/token": ("device_authorizations/",),
}


@dataclass(frozen=True)
class World:
    """What exists before a route is fuzzed: agent A (the caller) and B (a bystander of its tenant),
    their keys, A's secret, capability and access tokens, a delegation from A to B, a registered user."""

    headers: dict[str, dict[str, str]]
    real: dict[str, list[Any]]  # body fields that name things, and real values for them


# ---------------------------------------------------------------- the server and the datastore


@pytest.fixture(scope="module")
def served(emulator_host: str, auth_emulator: str) -> Iterator[str]:
    port = emulator.free_port()
    env = clean_env(
        {"PORT": str(port), "FIRESTORE_EMULATOR_HOST": emulator_host, "FIREBASE_AUTH_EMULATOR_HOST": auth_emulator}
    )
    server = serve(env)
    try:
        line = banner(server)
        assert "serving every route" in line, line
        drain(server)
        yield f"http://127.0.0.1:{port}"
        served_lines = [line.text for line in log_scan.SESSION.lines if line.logger.startswith("scripts/serve")]
        assert not [text for text in served_lines if "internal error" in text], served_lines[-5:]
    finally:
        assert stop(server) == 0


def drain(server: subprocess.Popen[str]) -> None:
    """Keep reading the server's standard output: a pipe nobody reads fills up, and then the server
    blocks. (Its standard error, a JSON log line per request, is read by ``banner``'s thread into the
    session's log scan.)"""
    assert server.stdout is not None
    os.set_blocking(server.stdout.fileno(), True)  # banner() read it without blocking
    stdout = server.stdout
    threading.Thread(target=lambda: [None for _ in iter(stdout.readline, "")], daemon=True).start()


@pytest.fixture(scope="module")
def api_schema(served: str) -> Any:
    return schemathesis.openapi.from_url(f"{served}/openapi.json")


@pytest.fixture(scope="module")
def tally(request: pytest.FixtureRequest) -> Iterator[dict[str, Counter[int]]]:
    """Answers by route and status, printed once the module is done (even under -q)."""
    seen: dict[str, Counter[int]] = {}
    yield seen
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None or not seen:
        return
    with capture.global_and_fixture_disabled():
        reporter.ensure_newline()
        for path, statuses in seen.items():
            counts = " ".join(f"{status}x{count}" for status, count in sorted(statuses.items()))
            reporter.write_line(f"schemathesis {path}: {sum(statuses.values())} examples ({counts})")
        total = sum(sum(statuses.values()) for statuses in seen.values())
        reporter.write_line(
            f"schemathesis: {total} examples over {len(seen)} of {len(JSON_ROUTES)} JSON routes "
            f"({EXAMPLES} per route at most, derandomized)"
        )


def fingerprint(emulator_host: str) -> dict[str, str]:
    """Every document of the datastore by path, with its update time."""
    found = emulator_rest.all_documents(emulator_host, names_only=True)
    return {path: document["updateTime"] for path, document in found.items()}


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {path for path in before.keys() | after.keys() if before.get(path) != after.get(path)}


# ---------------------------------------------------------------- what exists before a route is fuzzed


def _made(base: str, route: str, body: dict[str, Any], headers: dict[str, str], status: int = 201) -> dict[str, Any]:
    answered, result, _ = post(f"{base}/{route}", body, headers)
    assert answered == status, (route, result)
    return result


def _form(base: str, route: str, fields: dict[str, str], headers: dict[str, str]) -> dict[str, Any]:
    data = urllib.parse.urlencode(fields).encode()
    request = urllib.request.Request(
        f"{base}/{route}", data=data, method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded", **headers},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=15) as answer:
        return dict(json.loads(answer.read()))


@pytest.fixture
def world(served: str, auth_emulator: str) -> World:
    bridge = {"x-agentpack-key": BRIDGE_KEY}
    routes = [route.path for route in openapi.ROUTES if route.method == "POST" and not route.is_oauth]
    scopes = [*routes, "authz:read", "authz:write", "authz:check", "read:users"]
    agent = _made(served, "agents/create", {"display_name": "fuzzed", "scopes": scopes}, bridge)["agent_id"]
    other = _made(served, "agents/create", {"display_name": "bystander"}, bridge)["agent_id"]
    key = _made(served, "device/issue", {"agent_id": agent}, bridge)["device_key"]
    other_key = _made(served, "device/issue", {"agent_id": other}, bridge)
    spare_key = _made(served, "device/issue", {"agent_id": other}, bridge)["key_id"]
    device = {"x-agentpack-device-key": key}
    delegation = _made(
        served, "delegate", {"to_agent": other, "scope": ["secrets/get", "secrets/list"], "ttl_seconds": 3600}, device
    )["delegation_id"]
    _made(served, "secrets/put", {"name": "fuzz-secret", "value": "v"}, device, 200)
    basic = "Basic " + base64.b64encode(f"{agent}:{key}".encode()).decode()
    access = _form(served, "oauth/token", {"grant_type": "client_credentials"}, {"Authorization": basic})
    seed = tokens.b64decode((ROOT / "emulator-config/dev-capability-signing.key").read_text().strip())
    capability = tokens.mint(
        seed, "dev-1", agent, [r for r in routes if tokens.ROUTE.fullmatch(r)], 300, datetime.now(UTC)
    )
    uid, id_token = sign_up(auth_emulator)
    user = _made(served, "users/create", {"firebase_uid": uid}, bridge)["user_id"]
    grant = _made(served, "users/delegate", {"user_id": user, "agent_id": other, "actions": ["read"]}, bridge)
    unregistered, _ = sign_up(auth_emulator)
    pending = _form(served, "oauth/device_authorization", {}, {"Authorization": basic})
    return World(
        headers={
            "none": {},
            "bridge": bridge,
            "device": device,
            "capability": {"Authorization": f"Bearer {capability}"},
            "access": {"Authorization": f"Bearer {access['access_token']}"},
            "delegated": {"x-agentpack-device-key": other_key["device_key"], "x-agentpack-delegation": delegation},
            "user": {"Authorization": f"Bearer {id_token}"},
            "basic": {"Authorization": basic},
        },
        real={
            "agent_id": [other],
            "to_agent": [other],
            "key_id": [spare_key],
            "replaces_key_id": [spare_key],
            "delegation_id": [delegation],
            "name": ["fuzz-secret"],
            "user_id": [user],
            "grant_id": [grant["grant_id"]],
            "firebase_uid": [unregistered],
            "sub": [agent],
            "kid": ["dev-1"],
            "tenant_id": ["default"],
            "client_id": [agent],
            "client_secret": [key],
            "token": [access["access_token"]],
            "grant_type": ["client_credentials", "urn:ietf:params:oauth:grant-type:device_code"],
            "device_code": [pending["device_code"]],
            "user_code": [pending["user_code"]],
        },
    )


# ---------------------------------------------------------------- the fuzzing


def _prepare(
    case: Any, credential: str, fields: set[str], world: World, draw: Callable[[st.SearchStrategy[Any]], Any]
) -> None:
    """Put the drawn credential on the case, and real values into some of the body's fields that name
    things (``fields``: those of the route's request model, sent or not)."""
    if credential != "generated":
        kept = {name: value for name, value in (case.headers or {}).items() if name.lower() not in CREDENTIAL_HEADERS}
        case.headers = {**kept, **world.headers[credential]}
    if isinstance(case.body, dict):
        for field, values in world.real.items():
            if (field in case.body or field in fields) and draw(st.booleans()):
                case.body[field] = draw(st.sampled_from(values))


@pytest.mark.parametrize("route", JSON_ROUTES, ids=[route.path for route in JSON_ROUTES])
def test_every_answer_is_documented_and_a_refusal_writes_nothing(
    route: openapi.Route,
    served: str,
    api_schema: Any,
    world: World,
    emulator_host: str,
    tally: dict[str, Counter[int]],
) -> None:
    operation = api_schema[f"/{route.path}"][route.method]
    strategy = operation.as_strategy(GenerationMode.POSITIVE)
    if route.request is not None:
        strategy = strategy | operation.as_strategy(GenerationMode.NEGATIVE)
    # Half the requests carry a credential the route takes, half any credential (or what was generated).
    own = [SCHEME_CREDENTIALS[alternative] for alternative in route.security if alternative in SCHEME_CREDENTIALS]
    credentials = st.sampled_from(own) | st.sampled_from(CREDENTIALS) if own else st.sampled_from(CREDENTIALS)
    fields = set(route.request.model_fields) if route.request is not None else set()
    statuses = tally.setdefault(route.path, Counter())
    before = [fingerprint(emulator_host)]
    allowed = REFUSAL_NOTES.get(route.path, ())

    @FUZZ
    @given(case=strategy, credential=credentials, data=st.data())
    def run(case: Any, credential: str, data: st.DataObject) -> None:
        _prepare(case, credential, fields, world, data.draw)
        answer = case.call(base_url=served, timeout=30)
        statuses[answer.status_code] += 1
        case.validate_response(answer, checks=CHECKS)
        after = fingerprint(emulator_host)
        if 400 <= answer.status_code < 500:
            written = {path for path in changed(before[0], after) if not path.startswith(allowed)}
            assert not written, (answer.status_code, answer.text[:200], sorted(written))
        before[0] = after

    run()
    assert sum(statuses.values()) >= 1


# ---------------------------------------------------------------- the checks themselves can fail


def test_the_checks_refuse_an_undocumented_status_and_an_answer_off_its_schema(served: str, api_schema: Any) -> None:
    case = api_schema["/settings/list"]["POST"].Case(body={}, headers={"x-agentpack-key": BRIDGE_KEY})
    answer = case.call(base_url=served, timeout=30)
    assert answer.status_code == 200
    case.validate_response(answer, checks=CHECKS)  # as served: conforms
    undocumented = case.call(base_url=served, timeout=30)
    undocumented.status_code = 418
    with pytest.raises(FailureGroup) as failed:
        case.validate_response(undocumented, checks=CHECKS)
    assert {type(failure) for failure in failed.value.exceptions} == {UndefinedStatusCode}
    off_schema = case.call(base_url=served, timeout=30)  # a new answer: the checks keep what they decoded
    off_schema.content = b'{"settings": "not a list"}'
    with pytest.raises(FailureGroup) as failed:
        case.validate_response(off_schema, checks=CHECKS)
    assert {type(failure) for failure in failed.value.exceptions} == {JsonSchemaError}


def test_the_fingerprint_sees_every_write(emulator_host: str) -> None:
    db = store.client()
    before = fingerprint(emulator_host)
    db.document("agents/agt_x/device_keys/dk_y").set({"label": "a"})
    created = fingerprint(emulator_host)
    assert changed(before, created) == {"agents/agt_x/device_keys/dk_y"}
    db.document("agents/agt_x/device_keys/dk_y").set({"label": "b"})
    updated = fingerprint(emulator_host)
    assert changed(created, updated) == {"agents/agt_x/device_keys/dk_y"}
    db.document("agents/agt_x/device_keys/dk_y").delete()
    assert changed(updated, fingerprint(emulator_host)) == {"agents/agt_x/device_keys/dk_y"}
