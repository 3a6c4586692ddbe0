"""Races: revoke-then-use of OAuth credentials.

Threads call the real functions-framework apps against the real emulator. A use
that *started* after a revoke had answered must never succeed. (One refresh token
presented by several requests at once: tests/test_race_drills.py.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from tests.conftest import Api
from tests.oauth_support import (
    access_token_for,
    basic,
    key_pair,
    login,
    new_client,
    post_form,
    revoke_key,
    secret_key,
    update_agent,
    use,
)

pytestmark = pytest.mark.usefixtures("patient_datastore")  # races: see conftest

USERS = 3
MAX_USES_EACH = 80  # a bound: a race is at most 240 uses, a few seconds
USES_AFTER = 4  # each user goes on this many times once the revoke has answered


def _race(use_once: Callable[[], int], revoke: Callable[[], None]) -> list[tuple[float, float, int]]:
    """Run ``USERS`` threads using a credential while the main thread revokes it.

    Returns every use as ``(started, revoke_answered, status)``, times from ``time.monotonic``.
    """
    assert use_once() == 200  # it works before the race (and the apps are loaded before the threads)
    uses: list[tuple[float, int]] = []
    lock = threading.Lock()
    start = threading.Barrier(USERS + 1)
    answered: list[float] = []
    errors: list[BaseException] = []

    def user() -> None:
        try:
            start.wait(timeout=30)
            after = 0
            for _ in range(MAX_USES_EACH):
                started = time.monotonic()
                status = use_once()
                with lock:
                    uses.append((started, status))
                    if answered and started > answered[0]:
                        after += 1
                if after >= USES_AFTER:
                    return
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=user) for _ in range(USERS)]
    for thread in threads:
        thread.start()
    start.wait(timeout=30)
    deadline = time.monotonic() + 5
    while len(uses) < USERS and time.monotonic() < deadline:  # let some uses land first
        time.sleep(0.005)
    revoke()
    with lock:
        answered.append(time.monotonic())
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return [(started, answered[0], status) for started, status in uses]


def _check(uses: list[tuple[float, float, int]]) -> None:
    assert {status for _, _, status in uses} <= {200, 401}, uses  # never a 500 or a 503
    late = [status for started, answered, status in uses if started > answered]
    assert late, "no use started after the revoke answered: the race proved nothing"
    assert set(late) == {401}, late


Setup = Callable[[Api], tuple[Callable[[], int], Callable[[], None]]]


def _revoke_token(api: Api) -> tuple[Callable[[], int], Callable[[], None]]:
    agent = new_client(api)
    secret, _ = secret_key(api, agent)
    access = access_token_for(agent, secret)

    def revoke() -> None:
        answer = post_form("oauth_revoke", {"token": access}, basic(agent, secret))
        assert answer.status_code == 200, answer.get_json()

    return lambda: int(use(access).status_code), revoke


def _revoke_key(api: Api) -> tuple[Callable[[], int], Callable[[], None]]:
    agent = new_client(api)
    secret, kid = secret_key(api, agent)
    access = access_token_for(agent, secret)
    return lambda: int(use(access).status_code), lambda: revoke_key(api, kid)


def _revoke_family(api: Api) -> tuple[Callable[[], int], Callable[[], None]]:
    agent = new_client(api)
    secret, _ = secret_key(api, agent)
    pair, kid = key_pair(api, agent)
    logged_in = login(pair, kid, agent)

    def revoke() -> None:
        answer = post_form("oauth_revoke", {"token": logged_in["refresh_token"]}, basic(agent, secret))
        assert answer.status_code == 200, answer.get_json()

    return lambda: int(use(logged_in["access_token"]).status_code), revoke


def _disable_agent(api: Api) -> tuple[Callable[[], int], Callable[[], None]]:
    agent = new_client(api)
    secret, _ = secret_key(api, agent)
    access = access_token_for(agent, secret)
    return lambda: int(use(access).status_code), lambda: update_agent(api, agent, disabled=True)


SETUPS: dict[str, Setup] = {
    "token revoked": _revoke_token,
    "key revoked": _revoke_key,
    "family revoked": _revoke_family,
    "agent disabled": _disable_agent,
}


@pytest.mark.parametrize("what", list(SETUPS))
def test_no_use_that_started_after_the_revoke_answered_succeeds(api: Api, what: str) -> None:
    use_once, revoke = SETUPS[what](api)
    _check(_race(use_once, revoke))
