"""Races: revoke-then-use, and one refresh token presented by several requests at once.

Threads call the real functions-framework apps against the real emulator. A use
that *started* after a revoke had answered must never succeed; a refresh token
presented concurrently rotates exactly once, and the family ends in one
consistent state.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from shared import keys, records, store
from tests.conftest import Api
from tests.oauth_support import (
    access_token_for,
    audit_actions,
    basic,
    key_pair,
    login,
    new_client,
    post_form,
    revoke_key,
    secret_key,
    token,
    update_agent,
    use,
)

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


@pytest.mark.parametrize("round_", range(2))
def test_one_refresh_token_presented_at_once_rotates_exactly_once(api: Api, round_: int) -> None:
    agent = new_client(api)
    secret, _ = secret_key(api, agent)
    pair, kid = key_pair(api, agent)
    refresh = login(pair, kid, agent)["refresh_token"]
    family_id = keys.family_of_refresh_token(refresh)
    assert family_id is not None
    racers = 3
    start = threading.Barrier(racers)
    answers: list[Any] = []
    lock = threading.Lock()

    def present() -> None:
        start.wait(timeout=30)
        answer = token({"grant_type": "refresh_token", "refresh_token": refresh}, basic(agent, secret))
        with lock:
            answers.append((answer.status_code, answer.get_json()))

    token({"grant_type": "refresh_token", "refresh_token": "apkr_warm"}, basic(agent, secret))  # load the app
    threads = [threading.Thread(target=present) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(answers) == racers
    won = [body for status, body in answers if status == 200]
    lost = [(status, body) for status, body in answers if status != 200]
    assert len(won) == 1, answers
    # A loser is refused: invalid_grant once it reads the spent token (and then revokes the family), or
    # 503 when it keeps losing the contention until the datastore deadline (nothing of it was written).
    assert all((status, body["error"]) in {(400, "invalid_grant"), (503, "unavailable")} for status, body in lost)
    replays_seen = sum(1 for status, _ in lost if status == 400)

    (family,) = store.get_many([records.refresh_family_path(family_id)])
    assert len(audit_actions("token.refresh")) == 1  # before the winner's own token is used below
    winner = won[0]
    again = token({"grant_type": "refresh_token", "refresh_token": winner["refresh_token"]}, basic(agent, secret))
    reuse = audit_actions("token.reuse_detected")
    if family["revoked_at"] is not None:  # a loser saw the spent token: the family is down, and all of it
        assert replays_seen >= 1 and len(reuse) == 1
        assert again.status_code == 400
        assert use(winner["access_token"]).status_code == 401
    else:  # the losers were refused before the rotation landed: the one new token is the family's
        assert reuse == []
        assert replays_seen == 0  # a loser refused as a replay would have taken the family down
        assert family["current_hash"] == keys.hash_key(winner["refresh_token"])
        assert again.status_code == 200, again.get_json()
