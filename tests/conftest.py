"""Test fixtures: the real Firestore and Auth emulators and the real functions-framework apps.

If ``FIRESTORE_EMULATOR_HOST`` names a running emulator the tests use it
(it must have been started with firestore.rules); otherwise they start one
on a free port and stop it at the end. The same holds for the Firebase Auth
emulator and ``FIREBASE_AUTH_EMULATOR_HOST`` (started only when a test asks for
``auth_emulator``). Every test starts with an empty datastore and the system clock.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from functions_framework import create_app  # noqa: E402

from scripts import emulator  # noqa: E402
from shared import clock, config, ids, keys, store  # noqa: E402
from tests import log_scan  # noqa: E402

DEV_ENV = emulator.read_dev_env()
BRIDGE_KEY = DEV_ENV["AGENTPACK_BRIDGE_KEY"]


# ---------------------------------------------------------------- every log line of the session, scanned


def pytest_sessionstart(session: pytest.Session) -> None:
    import logging

    logging.getLogger().addHandler(log_scan.Capture(log_scan.SESSION))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A log line holding a key, token, digest, traceback or secret fails the run, naming its logger."""
    found = log_scan.report(log_scan.SESSION.findings(log_scan.dev_secrets()))
    if not found:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    for line in ["the log scan failed the run:", *found]:
        if reporter is not None:
            reporter.write_line(line, red=True)
        else:
            print(line, file=sys.stderr)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def forged_delegation_id(grantor_id: str) -> str:
    """A delegation ID of the right shape naming ``grantor_id``, untagged: what anyone can write."""
    return "dlg_" + ids.agent_part(grantor_id) + ids.random_base62(ids.PART_LENGTH)


def forged_device_key(key_id: str) -> str:
    """A well-formed device key of ``key_id`` with right check digits and a random, untagged secret:
    what anyone can write."""
    return keys.new_device_key(key_id, keys.random_secret())


def _free_port() -> int:
    return emulator.free_port()


@pytest.fixture(scope="session")
def emulator_host() -> Iterator[str]:
    if os.environ.get("FIRESTORE_EMULATOR_HOST"):
        yield os.environ["FIRESTORE_EMULATOR_HOST"]
        return
    with emulator.running(_free_port()) as address:
        os.environ["FIRESTORE_EMULATOR_HOST"] = address
        yield address
        del os.environ["FIRESTORE_EMULATOR_HOST"]


@pytest.fixture(scope="session")
def auth_emulator() -> Iterator[str]:
    """``host:port`` of a Firebase Auth emulator: FIREBASE_AUTH_EMULATOR_HOST's, else one started here."""
    if os.environ.get("FIREBASE_AUTH_EMULATOR_HOST"):
        yield os.environ["FIREBASE_AUTH_EMULATOR_HOST"]
        return
    with emulator.auth_running(_free_port()) as address:
        os.environ["FIREBASE_AUTH_EMULATOR_HOST"] = address
        yield address
        del os.environ["FIREBASE_AUTH_EMULATOR_HOST"]


@pytest.fixture(autouse=True)
def fresh_datastore(emulator_host: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in DEV_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AGENTPACK_BRIDGE_KEY_HASHES", raising=False)
    config.reset()
    store.reset()
    emulator.wipe(emulator_host)
    yield
    clock.set_source(None)
    config.reset()
    store.reset()


_apps: dict[str, Any] = {}


def function_client(name: str) -> Any:
    """A test client of the real functions-framework app of one function."""
    if name not in _apps:
        source = str(ROOT / "functions" / name / "main.py")
        _apps[name] = create_app(target=name, source=source)  # type: ignore[no-untyped-call]
    return _apps[name].test_client()


class Api:
    """Calls routes the way a client would: POST JSON to the function serving the route."""

    def call(self, route: str, body: Any = None, headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
        client = function_client(route.replace("/", "_").replace("-", "_"))  # keys/report-leak: keys_report_leak
        if body is not None and "data" not in kwargs:
            kwargs["json"] = body
        return client.post("/", headers=headers or {}, **kwargs)

    def bridge(self, route: str, body: Any = None, **kwargs: Any) -> Any:
        return self.call(route, body, {"x-agentpack-key": BRIDGE_KEY}, **kwargs)

    def device(self, key: str, route: str, body: Any = None, **kwargs: Any) -> Any:
        return self.call(route, body, {"x-agentpack-device-key": key}, **kwargs)

    def new_agent(self, display_name: str = "agent", tenant_id: str | None = None) -> str:
        body: dict[str, Any] = {"display_name": display_name}
        if tenant_id is not None:
            body["tenant_id"] = tenant_id
        answer = self.bridge("agents/create", body)
        assert answer.status_code == 201, answer.get_json()
        return str(answer.get_json()["agent_id"])

    def new_key(self, agent_id: str, **extra: Any) -> dict[str, Any]:
        answer = self.bridge("device/issue", {"agent_id": agent_id, **extra})
        assert answer.status_code == 201, answer.get_json()
        return dict(answer.get_json())


@pytest.fixture
def api() -> Api:
    return Api()


# The emulator settles two transactions on one document by making the loser wait on a lock (about 2 s a
# time); on a loaded two-core CI machine two such waits can outlast the 5 s default deadline, and the loser
# answers 503 (nothing changed) instead of reaching its outcome. Tests of a race's outcome give the
# datastore more time; production Firestore settles contention far sooner.
PATIENT_DEADLINE_SECONDS = "30"


@pytest.fixture
def patient_datastore(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTPACK_DATASTORE_DEADLINE_SECONDS", PATIENT_DEADLINE_SECONDS)
    config.reset()


@pytest.fixture
def frozen_clock() -> Callable[[Any], None]:
    """Move the service's clock: ``frozen_clock(datetime)``."""

    def move(moment: Any) -> None:
        clock.set_source(lambda: moment)

    return move
