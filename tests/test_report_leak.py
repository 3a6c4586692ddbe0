"""POST /keys/report-leak: anyone revokes a leaked key, learns nothing of which keys were real, and is
rate-limited per client address by counters in Firestore that every instance shares."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from functions_framework import create_app

from shared import answers, clock, credentials, errors, ids, keys, leaks, ratelimit, records, store
from shared.principal import PUBLIC
from tests.conftest import BRIDGE_KEY, ROOT, Api, forged_device_key, function_client
from tests.oauth_support import (
    JWT_BEARER,
    assertion,
    audit_actions,
    key_pair,
    login,
    new_client,
    token,
    use,
)
from tests.reads import watch_reads, watch_transaction_reads
from tests.test_http import bad_checksum, unknown_device_key

ROUTE = "keys/report-leak"
ADDRESS = "203.0.113.7"


def report(found: list[Any] | Any, address: str = ADDRESS, client: Any = None) -> Any:
    body = found if not isinstance(found, list) else {"keys": found}
    return (client or function_client("keys_report_leak")).post("/", json=body, headers={"X-Forwarded-For": address})


def snapshot() -> dict[str, dict[str, Any]]:
    """Every document a report could write, by path."""
    db = store.client()
    found: dict[str, dict[str, Any]] = {}
    for name in (records.AGENTS, records.REFRESH_FAMILIES, records.AUDIT_EVENTS, records.RATE_COUNTERS):
        found.update({snap.reference.path: snap.to_dict() for snap in db.collection(name).stream()})
    found.update({snap.reference.path: snap.to_dict() for snap in db.collection_group(records.DEVICE_KEYS).stream()})
    return found


def refreshes(pair: Any, key_id: str, agent_id: str, refresh_token: str) -> Any:
    return token(
        {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion(pair, key_id, agent_id),
        }
    )


@pytest.fixture
def leaked(api: Api) -> dict[str, Any]:
    """An agent with a device key, and a login of a second agent (its refresh token and access token)."""
    agent = api.new_agent("leaky")
    issued = api.new_key(agent)
    client = new_client(api)
    pair, pair_key = key_pair(api, client)
    tokens = login(pair, pair_key, client)
    return {
        "agent": agent,
        "device_key": issued["device_key"],
        "key_id": issued["key_id"],
        "client": client,
        "pair": pair,
        "pair_key": pair_key,
        "refresh_token": tokens["refresh_token"],
        "access_token": tokens["access_token"],
    }


# --- what a report does ---------------------------------------------------------------------


def test_each_kind_is_revoked_and_its_next_use_refused(api: Api, leaked: dict[str, Any]) -> None:
    assert api.device(leaked["device_key"], "agents/get", {}).status_code == 200
    assert use(leaked["access_token"]).status_code == 200

    answer = report([leaked["device_key"], leaked["refresh_token"], BRIDGE_KEY])
    assert answer.status_code == 200 and answer.get_json() == {"received": 3}

    assert api.device(leaked["device_key"], "agents/get", {}).status_code == 401
    listed = api.bridge("device/list", {"agent_id": leaked["agent"]}).get_json()["keys"]
    assert listed[0]["revoked_at"] is not None
    assert leaked["key_id"] not in store.get_many([records.agent_path(leaked["agent"])])[0]["active_keys"]
    # The refresh token's whole family: the token itself, and the access token it came with.
    refused = refreshes(leaked["pair"], leaked["pair_key"], leaked["client"], leaked["refresh_token"])
    assert refused.status_code == 400 and refused.get_json()["error"] == "invalid_grant"
    assert use(leaked["access_token"]).status_code == 401
    # A bridge key is configuration: reported, not revoked.
    assert api.bridge("agents/get", {"agent_id": leaked["agent"]}).status_code == 200
    kinds = sorted(event["target"]["kind"] for event in audit_actions("key.leak_reported"))
    assert kinds == ["bridge_key", "device_key", "refresh_family"]
    listed_events = api.bridge("audit/list", {"action": "key.leak_reported"})
    answers.AuditPage.model_validate_json(listed_events.get_data(), strict=True)  # the documented shapes
    bridge_event = next(e for e in listed_events.get_json()["events"] if e["target"]["kind"] == "bridge_key")
    assert bridge_event["target"] == {"kind": "bridge_key", "slot": 1}


def test_the_answer_is_the_same_whatever_the_keys_were(api: Api, leaked: dict[str, Any]) -> None:
    revoked = api.new_key(leaked["agent"])
    assert api.bridge("device/revoke", {"key_id": revoked["key_id"]}).status_code == 200
    expired = api.new_key(leaked["agent"], ttl_seconds=60)
    spent = leaked["refresh_token"]
    assert refreshes(leaked["pair"], leaked["pair_key"], leaked["client"], spent).status_code == 200
    cases = {
        "real device key": leaked["device_key"],
        "fake device key": unknown_device_key(),
        "revoked device key": revoked["device_key"],
        "spent refresh token": spent,
        "fake refresh token": keys.new_refresh_token(ids.new_family_id(ids.new_agent_id(), None)),
        "unknown bridge key": keys.new_bridge_key(),
        "bad checksum": bad_checksum(leaked["device_key"]),
        "malformed": "apkd_not-a-key",
        "empty": "",
    }
    clock.set_source(lambda: datetime.now(UTC) + timedelta(seconds=120))  # the ttl key has expired
    answers = {}
    for case, key in cases.items():
        answer = report([key, expired["device_key"]])
        headers = {name: value for name, value in answer.headers.items() if name.lower() != "x-request-id"}
        answers[case] = (answer.status_code, answer.get_data(), headers)
    assert len(set(json.dumps([a[0], a[1].decode(), a[2]]) for a in answers.values())) == 1, answers
    assert answers["real device key"][:2] == (200, b'{"received":2}')
    assert [e["target"]["kind"] for e in audit_actions("key.leak_reported")] == ["device_key"]  # the real one


def test_one_event_per_real_key_by_the_public_with_no_key_material(api: Api, leaked: dict[str, Any]) -> None:
    second = api.new_key(leaked["agent"])
    presented = [
        leaked["device_key"],
        leaked["device_key"],  # twice in one report: one key, one event
        "  " + second["device_key"] + "\n",  # as copied from a file
        leaked["refresh_token"],
        unknown_device_key(),
        bad_checksum(leaked["refresh_token"]),
    ]
    answer = report(presented, address="2001:db8::1")
    assert answer.get_json() == {"received": 6}
    events = audit_actions("key.leak_reported")
    targets = sorted((e["target"]["kind"], e["target"].get("key_id") or e["target"]["family_id"]) for e in events)
    family_id = keys.family_of_refresh_token(leaked["refresh_token"])
    assert targets == sorted(
        [("device_key", leaked["key_id"]), ("device_key", second["key_id"]), ("refresh_family", family_id)]
    )
    assert all(event["actor"] == {"kind": "public"} for event in events)
    assert len({event["request_id"] for event in events}) == 1
    stored = json.dumps([doc for path, doc in snapshot().items() if path.startswith("audit_events/")], default=str)
    for key in (leaked["device_key"], second["device_key"], leaked["refresh_token"]):
        assert key not in stored and keys.hash_key(key) not in stored and key[5:-6] not in stored
    # The agent's own audit trail shows the report.
    mine = api.bridge("audit/list", {"agent_id": leaked["agent"], "action": "key.leak_reported"}).get_json()
    assert len(mine["events"]) == 2
    # Reported again: already revoked, nothing to do, no event.
    assert report(presented, address="2001:db8::1").get_json() == {"received": 6}
    assert len(audit_actions("key.leak_reported")) == 3


def test_other_agents_and_other_keys_are_unaffected(api: Api, leaked: dict[str, Any]) -> None:
    sibling = api.new_key(leaked["agent"])["device_key"]
    other = api.new_agent("bystander")
    other_key = api.new_key(other)["device_key"]
    other_login = login(leaked["pair"], leaked["pair_key"], leaked["client"])  # another family of the same client
    before = api.bridge("agents/get", {"agent_id": other}).get_json()

    assert report([leaked["device_key"], leaked["refresh_token"]]).status_code == 200

    assert api.device(sibling, "agents/get", {}).status_code == 200
    assert api.device(other_key, "agents/get", {}).status_code == 200
    assert api.bridge("agents/get", {"agent_id": other}).get_json() == before
    assert use(other_login["access_token"]).status_code == 200
    again = refreshes(leaked["pair"], leaked["pair_key"], leaked["client"], other_login["refresh_token"])
    assert again.status_code == 200, again.get_json()


def test_a_key_pair_record_is_no_leakable_key(api: Api, leaked: dict[str, Any]) -> None:
    """A key pair's record holds no hash: a made-up secret for its key ID revokes nothing."""
    forged = forged_device_key(leaked["pair_key"])
    assert report([forged]).status_code == 200
    assert audit_actions("key.leak_reported") == []
    assert token({"grant_type": JWT_BEARER, "assertion": assertion(*_pair(leaked))}).status_code == 200


def _pair(leaked: dict[str, Any]) -> tuple[Any, str, str]:
    return leaked["pair"], leaked["pair_key"], leaked["client"]


def test_credentials_sent_along_are_ignored(api: Api, leaked: dict[str, Any]) -> None:
    """No credential is needed, and none changes anything: not a bad one, not two, not the agent's own."""
    for headers in (
        {"x-agentpack-key": "apkb_wrong", "authorization": "Bearer nonsense"},
        {"x-agentpack-device-key": leaked["device_key"]},
    ):
        answer = function_client("keys_report_leak").post("/", json={"keys": ["x"]}, headers=headers)
        assert answer.status_code == 200 and answer.get_json() == {"received": 1}
    assert audit_actions("key.leak_reported") == []


# --- refused bodies -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"keys": ["k"] * 101},
        {"keys": []},
        {"keys": "apkd_x"},
        {"keys": [1]},
        {"keys": [None]},
        {"keys": [["k"]]},
        {"keys": ["k" * 257]},
        {},
        {"keys": ["k"], "more": 1},
        [],
    ],
    ids=["101", "none", "a-string", "a-number", "null", "a-list", "too-long", "missing", "extra-field", "not-object"],
)
def test_a_bad_body_is_refused_and_nothing_is_written(api: Api, leaked: dict[str, Any], body: Any) -> None:
    if isinstance(body, dict) and body.get("keys") == ["k"] * 101:
        body = {"keys": [leaked["device_key"]] * 101}
    before = snapshot()
    answer = report(body)
    assert answer.status_code == 400 and answer.get_json()["error"] == "invalid_request"
    assert snapshot() == before  # not even a rate counter
    assert api.device(leaked["device_key"], "agents/get", {}).status_code == 200


def test_a_wrong_checksum_is_skipped_before_any_read(
    api: Api, leaked: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    reads, transactions = watch_reads(monkeypatch), watch_transaction_reads(monkeypatch)
    mistyped = [bad_checksum(leaked["device_key"]), bad_checksum(leaked["refresh_token"])]
    before = {p: d for p, d in snapshot().items() if not p.startswith(records.RATE_COUNTERS)}

    assert report(mistyped).get_json() == {"received": 2}

    assert transactions == []  # no change was even started
    read = reads.documents()
    assert read and all(path.startswith(records.RATE_COUNTERS + "/") for path in read)  # the rate limit's only
    assert {p: d for p, d in snapshot().items() if not p.startswith(records.RATE_COUNTERS)} == before
    assert api.device(leaked["device_key"], "agents/get", {}).status_code == 200


# --- concurrency ----------------------------------------------------------------------------


@pytest.mark.usefixtures("patient_datastore")
def test_concurrent_reports_of_one_key_revoke_once_with_one_event(api: Api, leaked: dict[str, Any]) -> None:
    racers = 4
    start = threading.Barrier(racers)
    statuses: list[int] = []

    def race(number: int) -> None:
        start.wait()
        answer = report([leaked["device_key"], leaked["refresh_token"]], address=f"198.51.100.{number}")
        statuses.append(answer.status_code)

    threads = [threading.Thread(target=race, args=(n,)) for n in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # A loser that keeps losing the contention until the datastore deadline answers 503, having written
    # nothing (the emulator aborts contended transactions eagerly); the rest answer as always.
    assert 200 in statuses and set(statuses) <= {200, 503}, statuses
    kinds = sorted(event["target"]["kind"] for event in audit_actions("key.leak_reported"))
    assert kinds == ["device_key", "refresh_family"]
    assert api.device(leaked["device_key"], "agents/get", {}).status_code == 401


# --- the rate limit -------------------------------------------------------------------------


def test_the_limit_holds_across_instances_and_counts_per_address() -> None:
    """Two separate apps, a new datastore client for each request: the count lives in Firestore only."""
    second = create_app(  # type: ignore[no-untyped-call]
        target="keys_report_leak", source=str(ROOT / "functions/keys_report_leak/main.py")
    ).test_client()
    for n in range(leaks.LIMIT.most):
        store.reset()
        answer = report(["x"], client=second if n % 2 else None)
        assert answer.status_code == 200, (n, answer.get_json())
    store.reset()
    refused = report(["x"], client=second)
    assert refused.status_code == 429 and refused.get_json()["error"] == "rate_limited"
    assert 0 < int(refused.headers["Retry-After"]) <= 3600
    assert report(["x"]).status_code == 429
    assert report(["x"], address="203.0.113.8").status_code == 200  # another client
    # The first X-Forwarded-For address is the client's (as Cloud Functions sets it); without one, the peer's.
    assert report(["x"], address=f"{ADDRESS}, 10.0.0.1").status_code == 429
    plain = function_client("keys_report_leak").post("/", json={"keys": ["x"]})
    assert plain.status_code == 200


def test_the_window_slides(frozen_clock: Any) -> None:
    start = datetime(2030, 1, 1, 12, 0, 10, tzinfo=UTC)
    frozen_clock(start)
    for _ in range(40):
        assert report(["x"]).status_code == 200
    frozen_clock(start + timedelta(minutes=30))
    for _ in range(20):
        assert report(["x"]).status_code == 200
    frozen_clock(start + timedelta(minutes=59))
    refused = report(["x"])
    assert refused.status_code == 429
    # The first 40 were counted in the 12:00 bucket, which leaves the window at 13:00.
    assert int(refused.headers["Retry-After"]) == 50
    frozen_clock(datetime(2030, 1, 1, 13, 0, 0, tzinfo=UTC))
    for _ in range(40):  # the 20 of 12:30 still count: 40 more fit, not 41
        assert report(["x"]).status_code == 200
    refused = report(["x"])
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) == 30 * 60
    frozen_clock(datetime(2030, 1, 1, 13, 30, 0, tzinfo=UTC))
    assert report(["x"]).status_code == 200


def test_a_refused_request_writes_nothing_and_revokes_nothing(
    api: Api, leaked: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(leaks, "LIMIT", ratelimit.Limit("test", most=2, window_seconds=60, bucket_seconds=10, shards=3))
    assert report(["x"]).status_code == 200 and report(["y"]).status_code == 200
    before = snapshot()
    refused = report([leaked["device_key"], leaked["refresh_token"], BRIDGE_KEY])
    assert refused.status_code == 429
    assert snapshot() == before
    assert api.device(leaked["device_key"], "agents/get", {}).status_code == 200
    assert use(leaked["access_token"]).status_code == 200


def test_counters_spread_over_shards_and_key_ranges(frozen_clock: Any) -> None:
    frozen_clock(datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC))
    for _ in range(30):
        assert report(["x"]).status_code == 200
    counters = {p: d for p, d in snapshot().items() if p.startswith(records.RATE_COUNTERS + "/")}
    assert sum(d["count"] for d in counters.values()) == 30
    assert len(counters) > 1  # a burst lands on several shards, not one hot document
    assert all(d["expire_at"] == datetime(2030, 1, 1, 13, 5, tzinfo=UTC) for d in counters.values())
    window = leaks.LIMIT.paths(ratelimit.address_key(ADDRESS), clock.now())
    assert len(window) == 12 * 4 and set(counters) <= set(window)  # an hour of 5-minute buckets, 4 shards each
    digest = window[0].split("/")[1].split("_")[0]
    assert all(re.fullmatch(rf"{records.RATE_COUNTERS}/{digest}_\d+_[0-3]", p) for p in window)
    other = leaks.LIMIT.paths("203.0.113.8", clock.now())[0].split("/")[1]
    assert other[:8] != digest[:8]  # the hash leads: another client's counters sit elsewhere in the key range


def test_the_client_is_counted_by_address_or_ipv6_block() -> None:
    assert ratelimit.address_key("203.0.113.7") == "203.0.113.7"
    assert ratelimit.address_key("2001:db8:1:2:aaaa::1") == ratelimit.address_key("2001:db8:1:2:bbbb::9")
    assert ratelimit.address_key("2001:db8:1:2::1") != ratelimit.address_key("2001:db8:1:3::1")
    assert ratelimit.address_key("::ffff:203.0.113.7") == "203.0.113.7"
    assert ratelimit.address_key("not an address") == "not an address"


# --- the public principal -------------------------------------------------------------------


def test_the_public_principal_passes_no_credential_check() -> None:
    for check in (
        PUBLIC.require_bridge,
        PUBLIC.require_user,
        PUBLIC.require_user_or_bridge,
        PUBLIC.require_agent,
        PUBLIC.require_full_credential,
    ):
        with pytest.raises(errors.Forbidden):
            check()
    with pytest.raises(errors.Forbidden):
        PUBLIC.subject("agt_" + "0" * 22)  # only the bridge key may name the agent it acts on
    assert not PUBLIC.is_bridge and PUBLIC.agent_id is None and PUBLIC.user_id is None
    assert PUBLIC.audit_actor() == {"kind": "public"}


def _credentialed_routes() -> Iterator[str]:
    from shared import openapi

    for route in openapi.ROUTES:
        if route.method == "POST" and route.security and not route.is_oauth:
            yield route.path


@pytest.mark.parametrize("route", list(_credentialed_routes()))
def test_no_credential_is_never_public_on_another_route(api: Api, route: str) -> None:
    """Resolution never yields the public principal: without a credential, every other route is 401."""
    answer = api.call(route, {}, {"X-Forwarded-For": ADDRESS})
    assert answer.status_code == 401, answer.get_json()


def test_credential_resolution_refuses_a_request_without_credential() -> None:
    from shared import http

    with pytest.raises(errors.Unauthenticated):
        credentials.resolve(http.Call("agents/get", "r", {}, b"{}"))


# --- the docs -------------------------------------------------------------------------------


def test_the_documented_patterns_find_every_kind_and_the_worked_example_checks_it() -> None:
    text = (ROOT / "docs/security.md").read_text()
    section = text[text.index("## Reporting a leaked key") :]
    patterns = dict(re.findall(r"^(device key|refresh token|bridge key):\s+(\S+)$", section, re.MULTILINE))
    snippet = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert set(patterns) == {"device key", "refresh token", "bridge key"} and snippet is not None
    namespace: dict[str, Any] = {}
    exec(snippet.group(1), namespace)  # noqa: S102 - the documented code, run as a reader would
    made = {
        "device key": forged_device_key(ids.new_device_key_id(ids.new_agent_id())),
        "refresh token": keys.new_refresh_token(ids.new_family_id(ids.new_agent_id(), None)),
        "bridge key": keys.new_bridge_key(),
    }
    for label, key in made.items():
        line = f'token = "{key}"  # oops'
        assert [m.group(0) for m in re.finditer(patterns[label], line)] == [key], label
        assert [label for other, pattern in patterns.items() if re.search(pattern, key)] == [label]
        assert namespace["checksum"](key[:-6]) == key[-6:]
        assert namespace["has_valid_check"](key) and not namespace["has_valid_check"](bad_checksum(key))
    example = re.search(r'^key += "(apkb_\w+)"$', section, re.MULTILINE)
    assert example is not None and keys.is_bridge_key(example.group(1))
    assert f'"{namespace["checksum"](example.group(1)[:-6])}"' in section


# --- the other 429: wrong activation codes --------------------------------------------------


def test_the_activation_limit_says_when_to_retry_too(api: Api, auth_emulator: str, frozen_clock: Any) -> None:
    from tests.people import People

    person = People(api, auth_emulator).user()
    start = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
    for second in range(5):
        frozen_clock(start + timedelta(seconds=second * 5))
        wrong = api.call("activate/lookup", {"user_code": "BBBB-BBBB"}, person.headers)
        assert wrong.status_code == 404 and "Retry-After" not in wrong.headers
    frozen_clock(start + timedelta(seconds=40))
    refused = api.call("activate/lookup", {"user_code": "BBBB-BBBB"}, person.headers)
    assert refused.status_code == 429 and refused.get_json()["error"] == "rate_limited"
    assert refused.headers["Retry-After"] == "20"  # the first wrong code leaves the last minute at 12:01:00
    frozen_clock(start + timedelta(seconds=60))
    assert api.call("activate/lookup", {"user_code": "BBBB-BBBB"}, person.headers).status_code == 404
