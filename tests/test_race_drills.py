"""Race drills: revoke against use, a thousand times over, and the races that must end in one outcome.

Threads call the real functions-framework apps against the real emulator. Each
revoke-versus-use round gives a fresh credential to ``USERS`` threads that each
use it once, at a random moment, while the main thread revokes it; every use
records when it started and ended (``time.monotonic``). The rule checked: a use
that *started* after the revoke had answered is refused, every time. The rounds
print their figures (uses before, during and after the revoke, refused, and the
successes after it, which must be 0).

Then the races that must settle on one outcome: two rotations of one key at
once, a delegation revoked by both parties at once, and one refresh token
presented by several requests at once (one wins; the others are reuse, which
revokes the family and is audited as ``token.reuse_detected``).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pytest

from shared import keys, records, store
from tests.conftest import Api
from tests.oauth_support import (
    audit_actions,
    basic,
    key_pair,
    login,
    new_client,
    post_form,
    secret_key,
    token,
    use,
)

USERS = 10  # concurrent uses per round
SPREAD = 0.04  # seconds over which a round's uses start; the revoke starts within the first half of it
pytestmark = pytest.mark.usefixtures("patient_datastore")  # the drills are about the outcome: conftest says why


@dataclass
class Figures:
    """What a drill saw, over all its rounds."""

    uses: int = 0
    before: int = 0  # ended before the revoke started
    during: int = 0  # overlapped the revoke
    after: int = 0  # started after the revoke answered
    refused: int = 0
    succeeded_after: int = 0  # must stay 0
    problems: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{self.uses} uses: {self.before} before the revoke, {self.during} during, {self.after} after; "
            f"{self.refused} refused; successes after the revoke answered: {self.succeeded_after}"
        )


Round = tuple[Callable[[], int], Callable[[], None]]  # (use once: its status, revoke)


def drill(prepare: Callable[[], Round], rounds: int, refused: set[int]) -> Figures:
    """``rounds`` rounds of ``USERS`` uses against one revoke each; the figures of all of them.

    The uses of a round start at random over about two and a half revokes' time from the start, the
    revoke within the first half of one: about half the uses start before the revoke answers."""
    figures = Figures()
    pace = 0.05  # how long a revoke takes under the round's load, measured as the rounds go
    with ThreadPoolExecutor(max_workers=USERS) as pool:
        for n in range(rounds):
            use_once, revoke = prepare()
            if n == 0:
                assert use_once() == 200  # the credential works before the race (and the apps are loaded)
            start = threading.Barrier(USERS + 1, timeout=30)
            spread = 2.5 * pace

            def user(
                use_once: Callable[[], int] = use_once, start: threading.Barrier = start, spread: float = spread
            ) -> tuple[float, float, int]:
                start.wait()
                time.sleep(random.uniform(0, spread))
                began = time.monotonic()
                status = use_once()
                return began, time.monotonic(), status

            futures = [pool.submit(user) for _ in range(USERS)]
            start.wait()
            time.sleep(random.uniform(0, pace / 2))
            revoke_started = time.monotonic()
            revoke()
            answered = time.monotonic()
            pace = 0.7 * pace + 0.3 * (answered - revoke_started)
            for future in futures:
                began, ended, status = future.result(timeout=60)
                figures.uses += 1
                if status not in refused | {200}:
                    figures.problems.append(f"status {status}")
                figures.refused += status in refused
                if began > answered:
                    figures.after += 1
                    figures.succeeded_after += status == 200
                elif ended < revoke_started:
                    figures.before += 1
                    if status != 200:
                        figures.problems.append(f"refused before the revoke started: {status}")
                else:
                    figures.during += 1
    return figures


def check(figures: Figures, what: str) -> None:
    print(f"\nrevoke vs use, {what}: {figures}")
    assert figures.problems == [], figures.problems[:10]
    assert figures.after > 0 and figures.before > 0, f"the rounds proved nothing: {figures}"
    assert figures.succeeded_after == 0, figures


# ---------------------------------------------------------------- revoke against use


def test_a_device_key_used_while_revoked_is_refused_from_the_revoke_answer_on(api: Api) -> None:
    """100 rounds x 10 uses: 1,000 uses of device keys, each key revoked during its round."""
    agent = api.new_agent("racer")

    def prepare() -> Round:
        issued = api.new_key(agent)

        def revoke() -> None:
            answer = api.bridge("device/revoke", {"key_id": issued["key_id"]})
            assert answer.status_code == 200, answer.get_json()

        return lambda: int(api.device(issued["device_key"], "agents/get", {}).status_code), revoke

    check(drill(prepare, rounds=100, refused={401}), "device key (agents/get)")


def test_a_refresh_family_used_while_revoked_is_refused_from_the_revoke_answer_on(api: Api) -> None:
    """10 rounds x 10: the family's access token used by nine threads, its refresh token by one."""
    agent = new_client(api)
    secret, _ = secret_key(api, agent)
    pair, kid = key_pair(api, agent)

    def prepare() -> Round:
        logged_in = login(pair, kid, agent)
        calls = iter(range(USERS + 2))
        lock = threading.Lock()

        def use_once() -> int:
            with lock:
                mine = next(calls)
            if mine != 1:  # call 0 is the first round's check before the race; one use in each is the refresh
                return int(use(logged_in["access_token"]).status_code)
            form = {"grant_type": "refresh_token", "refresh_token": logged_in["refresh_token"]}
            answer = token(form, basic(agent, secret))
            if answer.status_code == 400 and answer.get_json()["error"] == "invalid_grant":
                return 401  # refused, as the access token is
            return int(answer.status_code)

        def revoke() -> None:
            answer = post_form("oauth_revoke", {"token": logged_in["refresh_token"]}, basic(agent, secret))
            assert answer.status_code == 200, answer.get_json()

        return use_once, revoke

    check(drill(prepare, rounds=10, refused={401}), "refresh family (access token, and one refresh)")


def test_a_delegation_used_while_revoked_is_refused_from_the_revoke_answer_on(api: Api) -> None:
    """20 rounds x 10: a grantee reads the grantor's secret through a delegation the grantor revokes."""
    grantor, grantee = api.new_agent("grantor"), api.new_agent("grantee")
    grantor_key, grantee_key = api.new_key(grantor)["device_key"], api.new_key(grantee)["device_key"]
    assert api.device(grantor_key, "secrets/put", {"name": "shared", "value": "v"}).status_code == 200
    body = {"to_agent": grantee, "scope": ["secrets/get"], "ttl_seconds": 600}

    def prepare() -> Round:
        made = api.device(grantor_key, "delegate", body)
        assert made.status_code == 201, made.get_json()
        delegation_id = made.get_json()["delegation_id"]
        headers = {"x-agentpack-device-key": grantee_key, "x-agentpack-delegation": delegation_id}

        def revoke() -> None:
            answer = api.device(grantor_key, "delegate/revoke", {"delegation_id": delegation_id})
            assert answer.status_code == 200, answer.get_json()

        return lambda: int(api.call("secrets/get", {"name": "shared"}, headers).status_code), revoke

    check(drill(prepare, rounds=20, refused={401, 403}), "delegation (delegated secrets/get)")


# ---------------------------------------------------------------- races that settle on one outcome


def at_once(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls in threads released together; their answers, in the order given."""
    start = threading.Barrier(len(calls), timeout=30)

    def run(call: Callable[[], Any]) -> Any:
        start.wait()
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return [future.result(timeout=120) for future in [pool.submit(run, call) for call in calls]]


@pytest.mark.parametrize("by", ["bridge", "the key itself"])
def test_two_rotations_of_one_key_at_once_one_wins_the_other_is_refused(api: Api, by: str) -> None:
    """The loser is a conflict (the key is replaced already); rotating by the key itself, the loser's
    own key is the one replaced, and a replaced key may not issue: forbidden."""
    for round_ in range(2):
        agent = api.new_agent(f"rotating {round_}")
        old = api.new_key(agent)
        if by == "bridge":
            body = {"agent_id": agent, "replaces_key_id": old["key_id"]}
            rotate = partial(api.bridge, "device/issue", body)
            refused = (409, "conflict")
        else:
            rotate = partial(api.device, old["device_key"], "device/issue", {"replaces_key_id": old["key_id"]})
            refused = (403, "forbidden")
        answers = at_once(rotate, rotate)
        assert sorted(a.status_code for a in answers) == sorted([201, refused[0]]), [a.get_json() for a in answers]
        won = next(a.get_json() for a in answers if a.status_code == 201)
        lost = next(a.get_json() for a in answers if a.status_code != 201)
        assert lost["error"] == refused[1]
        (stored_old,) = store.get_many([records.device_key_path(agent, old["key_id"])])
        assert stored_old["replaced_by"] == won["key_id"]
        listed = api.bridge("device/list", {"agent_id": agent}).get_json()["keys"]
        assert sorted(k["key_id"] for k in listed) == sorted([old["key_id"], won["key_id"]])  # no orphan key
        rotations = [e for e in audit_actions("device.rotate") if e["target"]["agent_id"] == agent]
        assert [e["target"]["key_id"] for e in rotations] == [won["key_id"]]
        assert api.device(won["device_key"], "agents/get", {}).status_code == 200


def test_a_delegation_revoked_by_grantor_and_grantee_at_once_is_revoked_once(api: Api) -> None:
    grantor, grantee = api.new_agent("grantor"), api.new_agent("grantee")
    grantor_key, grantee_key = api.new_key(grantor)["device_key"], api.new_key(grantee)["device_key"]
    for _ in range(2):
        body = {"to_agent": grantee, "scope": ["secrets/get"], "ttl_seconds": 600}
        delegation_id = api.device(grantor_key, "delegate", body).get_json()["delegation_id"]
        revoke = {"delegation_id": delegation_id}
        answers = at_once(
            partial(api.device, grantor_key, "delegate/revoke", revoke),
            partial(api.device, grantee_key, "delegate/revoke", revoke),
        )
        assert [a.status_code for a in answers] == [200, 200], [a.get_json() for a in answers]
        assert len({a.get_json()["revoked_at"] for a in answers}) == 1  # the one revoke, told to both
        revokes = [e for e in audit_actions("delegation.revoke") if e["target"]["delegation_id"] == delegation_id]
        assert len(revokes) == 1
        headers = {"x-agentpack-device-key": grantee_key, "x-agentpack-delegation": delegation_id}
        assert api.call("secrets/get", {"name": "x"}, headers).status_code in (401, 403)


@pytest.mark.parametrize("round_", range(2))
def test_one_refresh_token_presented_at_once_rotates_once_and_the_rest_is_reuse(api: Api, round_: int) -> None:
    """One wins; the others present a token spent under them: reuse, so the family goes down, audited once."""
    agent = new_client(api)
    secret, _ = secret_key(api, agent)
    pair, kid = key_pair(api, agent)
    refresh = login(pair, kid, agent)["refresh_token"]
    family_id = keys.family_of_refresh_token(refresh)
    assert family_id is not None
    form = {"grant_type": "refresh_token", "refresh_token": refresh}
    racers = 3
    answers = at_once(*[lambda: token(form, basic(agent, secret))] * racers)
    statuses = [a.status_code for a in answers]
    assert statuses.count(200) == 1, [a.get_json() for a in answers]
    lost = [a.get_json() for a in answers if a.status_code != 200]
    assert all(a.status_code in (200, 400) for a in answers), [a.get_json() for a in answers]  # no 503, no 500
    assert all(body["error"] == "invalid_grant" for body in lost)
    (family,) = store.get_many([records.refresh_family_path(family_id)])
    assert family["revoked_at"] is not None  # the reuse took the family down
    assert len(audit_actions("token.refresh")) == 1 and len(audit_actions("token.reuse_detected")) == 1
    winner = next(a.get_json() for a in answers if a.status_code == 200)
    assert use(winner["access_token"]).status_code == 401
    again = token({"grant_type": "refresh_token", "refresh_token": winner["refresh_token"]}, basic(agent, secret))
    assert again.status_code == 400 and again.get_json()["error"] == "invalid_grant"
