"""Fault drills: the datastore failing at each RPC step of every write, and Secret Manager down at cold start.

A gRPC client interceptor around the emulator channel that ``store`` builds
(``store.wrap_channel``) counts every RPC of a request and fails the chosen ones
with ``UNAVAILABLE``, the way a broken connection does. For every route whose
pipeline writes through ``change.apply``, a twin of the request first runs clean
(the control: its RPCs and what it wrote), then the datastore goes down at each
step of the twin's transaction:

- ``first``: the request's first RPC (the credential read, or BeginTransaction when
  the credential needs no read), so nothing at all reaches the datastore;
- ``begin`` and ``read``: BeginTransaction, then the transaction's first read;
- ``commit``: the Commit, failing before it reaches the server;
- ``after-commit``: the Commit applied by the server, its answer lost.

Each answers ``503 unavailable``; a snapshot of every document shows nothing of
the change after the first four and all of it, once, with its audit event after
the last (the same documents, fields and events as the control wrote). A single
transient failure is retried (``store.RETRY``) where that is safe: a read or a
BeginTransaction once lost still succeeds, with one change and one event; a
Commit is never sent twice (its answer lost, it may have landed), so a Commit
failure is a ``503`` with exactly one copy of the change or none.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import grpc
import pytest

from shared import config, keys, openapi, store
from tests import emulator_rest
from tests.conftest import BRIDGE_KEY, Api, forged_device_key
from tests.oauth_support import basic, key_pair, login, new_client, new_public_client, post_form, secret_key, token
from tests.people import People
from tests.test_faults import assert_unavailable

DEADLINE = "0.3"  # the datastore deadline while a fault is on: an outage costs this, not 5 s
PROJECT = "demo-agentpack"


# ---------------------------------------------------------------- the fault injector


class InjectedFault(grpc.RpcError, grpc.Call, grpc.Future):  # type: ignore[misc]
    """What a call on a broken connection raises: an RPC error with status UNAVAILABLE (or ``status``)."""

    def __init__(self, status: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> None:
        self.status = status

    def code(self) -> grpc.StatusCode:
        return self.status

    def details(self) -> str:
        return "injected fault"

    def initial_metadata(self) -> tuple[()]:
        return ()

    def trailing_metadata(self) -> tuple[()]:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> None:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Any) -> bool:
        return False

    # A Future too: an outer interceptor (the library's logging one) is handed the error as the call's outcome.
    def result(self, timeout: float | None = None) -> Any:
        raise self

    def exception(self, timeout: float | None = None) -> InjectedFault:
        return self

    def traceback(self, timeout: float | None = None) -> None:
        return None

    def done(self) -> bool:
        return True

    def running(self) -> bool:
        return False

    def cancelled(self) -> bool:
        return False

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        fn(self)


@dataclass
class Plan:
    """Fail RPC number ``at`` of the request (counting from 0) and, for an outage, every RPC after it.

    ``applied``: RPC ``at`` reaches the server and is applied; only its answer is lost."""

    at: int
    outage: bool = True
    applied: bool = False
    status: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE


@dataclass
class Faults(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[misc]
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc]
):
    """Counts the RPCs (method names, in order) and fails them as ``plan`` says."""

    calls: list[str] = field(default_factory=list)
    plan: Plan | None = None
    begun: list[bytes] = field(default_factory=list)  # transaction IDs, to release those a fault stranded
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, plan: Plan | None) -> None:
        with self.lock:
            self.calls.clear()
            self.plan = plan

    def _fault(self, method: str) -> str | None:
        with self.lock:
            step = len(self.calls)
            self.calls.append(method.rsplit("/", 1)[1])
            plan = self.plan
        if plan is None or step < plan.at or (step > plan.at and not plan.outage):
            return None
        return "applied" if plan.applied and step == plan.at else "lost"

    def _error(self) -> InjectedFault:
        plan = self.plan
        return InjectedFault(plan.status if plan is not None else grpc.StatusCode.UNAVAILABLE)

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        fault = self._fault(details.method)
        if fault == "lost":
            raise self._error()
        outcome = continuation(details, request)
        if details.method.endswith("/BeginTransaction") and not isinstance(outcome, grpc.RpcError):
            with self.lock:
                self.begun.append(outcome.result().transaction)
        if fault == "applied":
            assert not isinstance(outcome, grpc.RpcError), outcome.code()  # it reached the server and landed
            raise self._error()
        return outcome

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        if self._fault(details.method):  # a stream is failed before it reaches the server
            raise self._error()
        return continuation(details, request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        if self._fault(details.method):
            raise self._error()
        return continuation(details, requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        if self._fault(details.method):
            raise self._error()
        return continuation(details, requests)


def release_stranded(host: str, faults: Faults) -> None:
    """Roll back the transactions a fault left open (their Rollback was lost too), as the datastore's own
    idle timeout would, later: a stranded transaction keeps its locks and stalls the next write meanwhile."""
    with faults.lock:
        begun, faults.begun = faults.begun, []
    for transaction in begun:
        emulator_rest.roll_back(host, transaction)


@pytest.fixture
def faults() -> Iterator[Faults]:
    injector = Faults()
    store.wrap_channel(lambda channel: grpc.intercept_channel(channel, injector))
    yield injector
    store.wrap_channel(None)


# ---------------------------------------------------------------- every document, and what changed


def snapshot(host: str) -> dict[str, Any]:
    """Every document of the datastore (any depth) by path, with its fields."""
    found = {path: document.get("fields", {}) for path, document in emulator_rest.all_documents(host).items()}
    # A rate counter counts the attempt, made or not: it is written before the change, on purpose.
    return {path: fields for path, fields in found.items() if not path.startswith("rate_counters/")}


def _pattern(path: str) -> str:
    """``agents/agt_x/device_keys/dk_y`` → ``agents/*/device_keys/*``: the kind of document, not which."""
    parts = path.split("/")
    return "/".join(part if n % 2 == 0 else "*" for n, part in enumerate(parts))


def changes(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, ...]]:
    """What a change wrote, ID-free: (kind of document, created/updated/deleted, a new one's fields, event action)."""
    found: list[tuple[str, ...]] = []
    for path in sorted(set(before) | set(after)):
        old, new = before.get(path), after.get(path)
        if old == new:
            continue
        how = "created" if old is None else "deleted" if new is None else "updated"
        # which fields an update touched is left out: a time may or may not move within one clock tick
        fields = ",".join(sorted(new or {})) if how == "created" else ""
        action = new["action"]["stringValue"] if path.startswith("audit_events/") and new is not None else ""
        found.append((_pattern(path), how, fields, action))
    return sorted(found)


def events_in(rows: list[tuple[str, ...]]) -> list[str]:
    return [row[3] for row in rows if row[3]]


# ---------------------------------------------------------------- the writes, each with a twin


Request = Callable[[int], Any]  # the request numbered n (0: the control, 1: the one the faults hit, 2…: more twins)
Setup = Callable[[Api, Callable[[], People]], Request]


def _agents_create(api: Api, people: Callable[[], People]) -> Request:
    return lambda n: api.bridge("agents/create", {"display_name": f"made {n}"})


def _agents_update(api: Api, people: Callable[[], People]) -> Request:
    agents = [api.new_agent(f"a{n}") for n in range(2)]
    return lambda n: api.bridge("agents/update", {"agent_id": agents[n], "display_name": "renamed", "disabled": True})


def _device_issue(api: Api, people: Callable[[], People]) -> Request:
    agent = api.new_agent()
    return lambda n: api.bridge("device/issue", {"agent_id": agent, "label": f"key {n}"})


def _device_rotate(api: Api, people: Callable[[], People]) -> Request:
    agent = api.new_agent()
    issued = [api.new_key(agent) for _ in range(2)]
    return lambda n: api.device(issued[n]["device_key"], "device/issue", {"replaces_key_id": issued[n]["key_id"]})


def _device_revoke(api: Api, people: Callable[[], People]) -> Request:
    agent = api.new_agent()
    holder = api.new_key(agent)["device_key"]
    spare = [api.new_key(agent)["key_id"] for _ in range(2)]
    return lambda n: api.device(holder, "device/revoke", {"key_id": spare[n]})


def _delegate(api: Api, people: Callable[[], People]) -> Request:
    grantor = api.new_agent("grantor")
    grantor_key = api.new_key(grantor)["device_key"]
    grantees = [api.new_agent(f"grantee {n}") for n in range(2)]
    body: Callable[[int], dict[str, Any]] = lambda n: {  # noqa: E731
        "to_agent": grantees[n],
        "scope": ["secrets/get"],
        "ttl_seconds": 600,
    }
    return lambda n: api.device(grantor_key, "delegate", body(n))


def _delegate_revoke(api: Api, people: Callable[[], People]) -> Request:
    grantor, grantee = api.new_agent("grantor"), api.new_agent("grantee")
    grantor_key = api.new_key(grantor)["device_key"]
    body = {"to_agent": grantee, "scope": ["secrets/get"], "ttl_seconds": 600}
    made = [api.device(grantor_key, "delegate", body).get_json()["delegation_id"] for _ in range(2)]
    return lambda n: api.device(grantor_key, "delegate/revoke", {"delegation_id": made[n]})


def _secrets_put(api: Api, people: Callable[[], People]) -> Request:
    key = api.new_key(api.new_agent())["device_key"]
    return lambda n: api.device(key, "secrets/put", {"name": f"s{n}", "value": "v"})


def _secrets_delete(api: Api, people: Callable[[], People]) -> Request:
    key = api.new_key(api.new_agent())["device_key"]
    for n in range(2):
        assert api.device(key, "secrets/put", {"name": f"s{n}", "value": "v"}).status_code == 200
    return lambda n: api.device(key, "secrets/delete", {"name": f"s{n}"})


def _settings_set(api: Api, people: Callable[[], People]) -> Request:
    assert api.bridge("settings/set", {"key": "rotation_grace_seconds", "value": 90}).status_code == 200
    return lambda n: api.bridge("settings/set", {"key": "rotation_grace_seconds", "value": 100 + n})


def _capability_record(api: Api, people: Callable[[], People]) -> Request:
    agent = api.new_agent()
    claims: Callable[[int], dict[str, Any]] = lambda n: {  # noqa: E731
        "jti": f"j-{n}",
        "sub": agent,
        "scope": "secrets/get",
        "iat": int(time.time()),
        "exp": int(time.time()) + 300,
        "kid": "dev-1",
    }
    return lambda n: api.bridge("capability/record", claims(n))


def _client_credentials(api: Api, people: Callable[[], People]) -> Request:
    agent = new_client(api)
    secret, _ = secret_key(api, agent)
    return lambda n: token({"grant_type": "client_credentials"}, basic(agent, secret))


def _jwt_bearer(api: Api, people: Callable[[], People]) -> Request:
    agent = new_client(api)
    pair, kid = key_pair(api, agent)
    from tests.oauth_support import JWT_BEARER, assertion

    return lambda n: token({"grant_type": JWT_BEARER, "assertion": assertion(pair, kid, agent)})


def _refresh(api: Api, people: Callable[[], People]) -> Request:
    agent = new_client(api)
    secret, _ = secret_key(api, agent)
    pair, kid = key_pair(api, agent)
    families = [login(pair, kid, agent)["refresh_token"] for _ in range(2)]
    return lambda n: token({"grant_type": "refresh_token", "refresh_token": families[n]}, basic(agent, secret))


def _oauth_revoke(api: Api, people: Callable[[], People]) -> Request:
    agent = new_client(api)
    secret, _ = secret_key(api, agent)
    pair, kid = key_pair(api, agent)
    families = [login(pair, kid, agent)["refresh_token"] for _ in range(2)]
    return lambda n: post_form("oauth_revoke", {"token": families[n]}, basic(agent, secret))


def _device_authorization(api: Api, people: Callable[[], People]) -> Request:
    cli = new_public_client(api)
    return lambda n: post_form("oauth_device_authorization", {"client_id": cli})


def _users_create(api: Api, people: Callable[[], People]) -> Request:
    from tests.people import sign_up

    host = people().auth_host
    uids = [sign_up(host)[0] for _ in range(2)]
    return lambda n: api.bridge("users/create", {"firebase_uid": uids[n], "display_name": f"user {n}"})


def _users_update(api: Api, people: Callable[[], People]) -> Request:
    made = [people().user() for _ in range(2)]
    return lambda n: api.bridge("users/update", {"user_id": made[n].user_id, "display_name": "renamed"})


def _users_delegate(api: Api, people: Callable[[], People]) -> Request:
    them = people()
    user, agents = them.user(), [them.agent(name=f"agent {n}") for n in range(2)]
    return lambda n: them.as_user(user, "users/delegate", {"agent_id": agents[n].agent_id, "actions": ["read"]})


def _users_delegate_revoke(api: Api, people: Callable[[], People]) -> Request:
    them = people()
    user = them.user()
    grants = [them.grant(user, them.agent(name=f"agent {n}"), ["read"])["grant_id"] for n in range(2)]
    return lambda n: them.as_user(user, "users/delegate/revoke", {"grant_id": grants[n]})


def _token_exchange(api: Api, people: Callable[[], People]) -> Request:
    them = people()
    user, agent = them.user(), them.agent()
    them.grant(user, agent, ["read"])
    return lambda n: them.exchange(agent, user.token)


def _authz_write(api: Api, people: Callable[[], People]) -> Request:
    subject = "agent:" + api.new_agent("reader")

    def write(n: int) -> Any:
        tuple_ = {"resource": f"doc:{n}", "relation": "owner", "subject": subject}
        return api.bridge("authz/write", {"tenant_id": "default", "writes": [tuple_]})

    return write


def _activate_decide(api: Api, people: Callable[[], People]) -> Request:
    them = people()
    user = them.user()
    clis = [new_public_client(api) for _ in range(2)]  # two agents: two grants, not one granted twice
    codes = [post_form("oauth_device_authorization", {"client_id": cli}).get_json()["user_code"] for cli in clis]
    return lambda n: them.as_user(user, "activate/decide", {"user_code": codes[n], "approve": True})


def _device_code(api: Api, people: Callable[[], People]) -> Request:
    them = people()
    user = them.user()
    cli = api.bridge("agents/create", {"display_name": "cli", "scopes": ["read"], "public": True}).get_json()
    device_codes = []
    for _ in range(2):
        started = post_form("oauth_device_authorization", {"client_id": cli["agent_id"]}).get_json()
        decided = them.as_user(user, "activate/decide", {"user_code": started["user_code"], "approve": True})
        assert decided.status_code == 200, decided.get_json()
        device_codes.append(started["device_code"])
    grant = "urn:ietf:params:oauth:grant-type:device_code"
    return lambda n: token({"grant_type": grant, "client_id": cli["agent_id"], "device_code": device_codes[n]})


def _report_leak(api: Api, people: Callable[[], People]) -> Request:
    agent = api.new_agent("leaky")
    leaked = [api.new_key(agent)["device_key"] for _ in range(2)]
    return lambda n: api.call("keys/report-leak", {"keys": [leaked[n]]}, {"X-Forwarded-For": f"203.0.113.{n + 1}"})


# route (as the OpenAPI table names it) and how to make its twins
WRITES: dict[str, tuple[str, Setup]] = {
    "agents/create": ("agents/create", _agents_create),
    "agents/update": ("agents/update", _agents_update),
    "device/issue": ("device/issue", _device_issue),
    "device/issue rotation by its key": ("device/issue", _device_rotate),
    "device/revoke": ("device/revoke", _device_revoke),
    "delegate": ("delegate", _delegate),
    "delegate/revoke": ("delegate/revoke", _delegate_revoke),
    "secrets/put": ("secrets/put", _secrets_put),
    "secrets/delete": ("secrets/delete", _secrets_delete),
    "settings/set": ("settings/set", _settings_set),
    "capability/record": ("capability/record", _capability_record),
    "oauth/token client_credentials": ("oauth/token", _client_credentials),
    "oauth/token jwt-bearer": ("oauth/token", _jwt_bearer),
    "oauth/token refresh_token": ("oauth/token", _refresh),
    "oauth/token token-exchange": ("oauth/token", _token_exchange),
    "oauth/token device_code": ("oauth/token", _device_code),
    "oauth/revoke": ("oauth/revoke", _oauth_revoke),
    "oauth/device_authorization": ("oauth/device_authorization", _device_authorization),
    "users/create": ("users/create", _users_create),
    "users/update": ("users/update", _users_update),
    "users/delegate": ("users/delegate", _users_delegate),
    "users/delegate/revoke": ("users/delegate/revoke", _users_delegate_revoke),
    "authz/write": ("authz/write", _authz_write),
    "activate/decide": ("activate/decide", _activate_decide),
    "keys/report-leak": ("keys/report-leak", _report_leak),
}

# Routes that change nothing a person asked for (a wrong code's count, an integrity event, a DPoP jti
# aside); each new route must land in one set or the other.
READ_ONLY = {
    ".well-known/jwks.json",
    ".well-known/oauth-authorization-server",
    "activate",
    "activate/assets",
    "activate/lookup",
    "agents/get",
    "agents/list",
    "audit/list",
    "authz/check",
    "authz/read",
    "delegate/list",
    "device/list",
    "oauth/introspect",
    "openapi.json",
    "secrets/get",
    "secrets/list",
    "settings/list",
    "users/delegate/list",
    "users/get",
    "users/list",
}


def test_every_route_that_writes_is_drilled() -> None:
    from scripts.functions_index import all_functions

    served = {function.route for function in all_functions()}
    drilled = {route for route, _ in WRITES.values()}
    assert served == drilled | READ_ONLY and not drilled & READ_ONLY


@dataclass
class Drill:
    api: Api
    faults: Faults
    host: str
    monkeypatch: pytest.MonkeyPatch

    def control(self, request: Request, status: int) -> tuple[list[str], list[tuple[str, ...]]]:
        before = snapshot(self.host)
        self.faults.start(None)
        answer = request(0)
        assert answer.status_code == status, answer.get_json()
        return list(self.faults.calls), changes(before, snapshot(self.host))

    def faulted(self, request: Request, plan: Plan) -> tuple[Any, list[str]]:
        self.faults.start(plan)
        started = time.monotonic()
        try:
            answer = request(1)
            seen = list(self.faults.calls)
        finally:
            self.faults.start(None)
            release_stranded(self.host, self.faults)
        assert time.monotonic() - started < 5, "a datastore that is down is a 503 within seconds"
        return answer, seen

    @contextlib.contextmanager
    def short_deadline(self) -> Iterator[None]:
        """The datastore deadline at ``DEADLINE``: an outage then costs that, not 5 s, per request."""
        self.monkeypatch.setenv("AGENTPACK_DATASTORE_DEADLINE_SECONDS", DEADLINE)
        config.reset()
        store.reset()
        store.get_many(["drill/warm"])  # connect the new client's channel before the clock matters
        try:
            yield
        finally:
            self.monkeypatch.delenv("AGENTPACK_DATASTORE_DEADLINE_SECONDS", raising=False)
            config.reset()
            store.reset()


def steps(calls: list[str]) -> dict[str, int]:
    """Where each step of the control's transaction is in its RPCs: first, begin, read, commit."""
    begin = len(calls) - 1 - calls[::-1].index("BeginTransaction")  # the change's (a rate limit's comes first)
    commit = calls.index("Commit", begin)
    assert calls[begin + 1] == "BatchGetDocuments", calls
    return {"first": 0, "begin": begin, "read": begin + 1, "commit": commit}


@pytest.fixture
def drill(api: Api, faults: Faults, emulator_host: str, monkeypatch: pytest.MonkeyPatch) -> Drill:
    return Drill(api, faults, emulator_host, monkeypatch)


@pytest.mark.parametrize("name", list(WRITES))
def test_a_datastore_failing_at_each_step_of_a_write_is_503_with_all_of_the_change_or_none(
    drill: Drill, request: pytest.FixtureRequest, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    route, setup = WRITES[name]
    people: Callable[[], People] = lambda: People(drill.api, request.getfixturevalue("auth_emulator"))  # noqa: E731
    twin = setup(drill.api, people)
    calls, wrote = drill.control(twin, openapi.route(route).status)
    assert wrote and len(events_in(wrote)) >= 1, wrote  # the control changed something, with its event
    where = steps(calls)
    caplog.set_level(logging.INFO)

    before = snapshot(drill.host)
    with drill.short_deadline():
        for step, at in where.items():
            if step == "begin" and at == where["first"]:
                continue  # the credential needs no read: the first RPC is BeginTransaction itself
            answer, seen = drill.faulted(twin, Plan(at))
            assert_unavailable(answer)
            assert seen[: at + 1] == calls[: at + 1], (step, seen, calls)  # the fault hit the step it meant to
            assert snapshot(drill.host) == before, f"{step}: something of the change landed"
        answer, seen = drill.faulted(twin, Plan(where["commit"], applied=True))
    assert_unavailable(answer)
    assert seen[where["begin"] :].count("Commit") == 1, seen  # never sent twice
    assert changes(before, snapshot(drill.host)) == wrote  # all of it, once, with its event
    text = caplog.text
    assert "Traceback" not in text and BRIDGE_KEY not in text and keys.hash_key(BRIDGE_KEY) not in text
    assert "internal error" not in text


TRANSIENT: dict[str, Setup] = {
    "agents/create": _agents_create,
    "secrets/put": _secrets_put,
    "settings/set": _settings_set,
}


@pytest.mark.parametrize("name", list(TRANSIENT))
def test_one_lost_rpc_is_retried_where_safe_and_never_applies_a_change_twice(drill: Drill, name: str) -> None:
    twin = TRANSIENT[name](drill.api, lambda: People(drill.api, ""))
    status = openapi.route(name).status
    calls, wrote = drill.control(twin, status)
    where = steps(calls)
    n = 1
    for step in ("first", "begin", "read"):  # a read or a BeginTransaction lost once: retried, one change
        before = snapshot(drill.host)
        answer = _once(drill, twin, n, Plan(where[step], outage=False))
        n += 1
        assert answer.status_code == status, (step, answer.get_json())
        assert changes(before, snapshot(drill.host)) == wrote, step
    before = snapshot(drill.host)
    answer = _once(drill, twin, n, Plan(where["commit"], outage=False))  # lost before the server: none
    n += 1
    assert_unavailable(answer)
    assert snapshot(drill.host) == before
    answer = _once(drill, twin, n, Plan(where["commit"], outage=False, applied=True))  # landed: once
    assert_unavailable(answer)
    assert changes(before, snapshot(drill.host)) == wrote


@pytest.mark.parametrize("step", ["read", "commit"])
def test_a_transaction_that_loses_contention_once_is_run_again_whole_and_lands_once(drill: Drill, step: str) -> None:
    """ABORTED at a read (it waited on another transaction's lock) or at the Commit: nothing landed, so
    the whole transaction runs again, reads afresh, and its change lands once."""
    twin = _agents_create(drill.api, lambda: People(drill.api, ""))
    calls, wrote = drill.control(twin, 201)
    before = snapshot(drill.host)
    answer = _once(drill, twin, 1, Plan(steps(calls)[step], outage=False, status=grpc.StatusCode.ABORTED))
    assert answer.status_code == 201, answer.get_json()
    assert changes(before, snapshot(drill.host)) == wrote


def _once(drill: Drill, twin: Request, n: int, plan: Plan) -> Any:
    drill.faults.start(plan)
    try:
        return twin(n)
    finally:
        drill.faults.start(None)
        release_stranded(drill.host, drill.faults)


# ---------------------------------------------------------------- Secret Manager down at a cold start

PRODUCTION_BRIDGE_KEY = keys.new_bridge_key()
# Routes that hold no key and check no credential: a Secret Manager outage changes nothing they answer.
NEEDS_NO_KEY = {"openapi.json", "activate/assets", ".well-known/oauth-authorization-server"}


def _production_secrets() -> dict[str, str]:
    from shared import crypto, jws, secret_manager

    seed, _ = crypto.new_signing_key()
    return {
        secret_manager.BRIDGE_KEY_HASHES: keys.hash_key(PRODUCTION_BRIDGE_KEY),
        secret_manager.SECRETS_KEYS: json.dumps({"3": jws.b64encode(os.urandom(32))}),
        secret_manager.TOKEN_SIGNING_KEYS: json.dumps({"prod-at-1": jws.b64encode(seed)}),
    }


def _every_route() -> dict[str, Callable[[], Any]]:
    """One request to every served route, as a client with the production bridge key would make it."""
    from scripts.functions_index import all_functions
    from shared import ids
    from tests.conftest import function_client

    bridge = {"x-agentpack-key": PRODUCTION_BRIDGE_KEY}
    agent_id = ids.new_agent_id()
    # well formed: checking it needs the keys
    secret = forged_device_key(ids.new_device_key_id(agent_id))
    form = {"client_id": agent_id, "client_secret": secret, "grant_type": "client_credentials"}
    calls: dict[str, Callable[[], Any]] = {}
    for function in all_functions():
        client = function_client(function.name)
        if function.method == "GET":
            query = "?file=app.js" if function.route == "activate/assets" else ""
            calls[function.route] = partial(client.get, "/" + query)
        elif function.route.startswith("oauth/"):
            calls[function.route] = partial(client.post, "/", data={**form, "token": "t"})
        elif function.route == "keys/report-leak":
            calls[function.route] = partial(client.post, "/", json={"keys": [secret]})
        else:
            calls[function.route] = partial(client.post, "/", json={}, headers=bridge)
    return calls


@pytest.mark.parametrize("outage", ["answering UNAVAILABLE", "stopped"])
def test_secret_manager_down_at_a_cold_start_refuses_every_route_until_it_is_back(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, outage: str
) -> None:
    from shared import secret_manager
    from tests.fake_secret_manager import FakeSecretManager

    caplog.set_level(logging.INFO)
    monkeypatch.setattr(secret_manager, "RETRY_SECONDS", 0.2)  # the outage costs this per request
    routes = _every_route()
    served = {route: routes[route]() for route in NEEDS_NO_KEY}  # what they answer with the dev config
    with FakeSecretManager() as fake:
        for name, value in _production_secrets().items():
            fake.secrets[(PROJECT, name)] = value
        monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)
        monkeypatch.setenv("AGENTPACK_SECRET_SOURCE", "secret-manager")
        for variable in ("AGENTPACK_BRIDGE_KEY", "AGENTPACK_SECRETS_KEYS", "AGENTPACK_CAPABILITY_PUBLIC_KEYS"):
            monkeypatch.delenv(variable, raising=False)
        monkeypatch.delenv("AGENTPACK_TOKEN_SIGNING_KEYS", raising=False)
        if outage == "stopped":
            with socket.socket() as closed:
                closed.bind(("127.0.0.1", 0))
                port = closed.getsockname()[1]
            monkeypatch.setenv("AGENTPACK_SECRET_MANAGER_ENDPOINT", f"http://127.0.0.1:{port}")
        else:
            monkeypatch.setenv("AGENTPACK_SECRET_MANAGER_ENDPOINT", fake.endpoint)
            fake.down = True
        config.reset()  # a cold start
        store.reset()
        for route, call in routes.items():
            started = time.monotonic()
            answer = call()
            assert time.monotonic() - started < 5, route  # refused within seconds, never a hang
            if route in NEEDS_NO_KEY:
                assert (answer.status_code, answer.data) == (served[route].status_code, served[route].data), route
            else:
                assert answer.status_code == 503, (route, answer.get_json())
                assert_unavailable(answer)
        assert "secret manager: could not read agentpack-bridge-key-hashes" in caplog.text  # says why
        assert fake.reads == []

        monkeypatch.setenv("AGENTPACK_SECRET_MANAGER_ENDPOINT", fake.endpoint)
        fake.down = False
        config.reset()  # a new cold start, Secret Manager back
        store.reset()
        api = Api()
        agent = api.call("agents/create", {"display_name": "after"}, {"x-agentpack-key": PRODUCTION_BRIDGE_KEY})
        assert agent.status_code == 201, agent.get_json()
        agent_id = agent.get_json()["agent_id"]
        issued = api.call("device/issue", {"agent_id": agent_id}, {"x-agentpack-key": PRODUCTION_BRIDGE_KEY})
        device_key = issued.get_json()["device_key"]
        assert api.device(device_key, "secrets/put", {"name": "n", "value": "v"}).status_code == 200
        assert token({"grant_type": "client_credentials"}, basic(agent_id, device_key)).status_code == 200
        jwks = routes[".well-known/jwks.json"]()
        assert [k["kid"] for k in jwks.get_json()["keys"]] == ["prod-at-1"]  # the deployment's key, not the dev one
        assert api.bridge("agents/list", {}).status_code == 401  # the dev bridge key means nothing here
        assert sorted(set(fake.reads)) == sorted(_production_secrets())
