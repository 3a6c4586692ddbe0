"""Tamper-evident audit chains, attacked in the emulator, and the migration of events written before them.

Real changes go through the real functions-framework apps; then documents are altered, removed or
swapped directly in the emulator (as someone with database access would), and the verifier must name
the first event that is wrong. The migration is run on events written in the old format.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import subprocess
import sys
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared import audit_chain, audit_migration, change, clock, ids, records, store
from shared.principal import BRIDGE
from tests.conftest import DEV_ENV, ROOT, Api
from tests.reads import watch_transaction_reads

T0 = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)


def events() -> list[dict[str, Any]]:
    return [doc.to_dict() or {} for doc in store.client().collection(records.AUDIT_EVENTS).stream()]


def chain(name: str) -> list[dict[str, Any]]:
    return sorted((e for e in events() if e.get("chain") == name), key=lambda e: e["seq"])


def head(name: str) -> dict[str, Any] | None:
    snap = store.client().document(records.audit_chain_path(name)).get()
    return snap.to_dict() if snap.exists else None


def update(event: dict[str, Any], **fields: Any) -> None:
    store.client().document(records.audit_event_path(event["event_id"])).update(fields)


def delete(event: dict[str, Any]) -> None:
    store.client().document(records.audit_event_path(event["event_id"])).delete()


def verify(now: datetime | None = None) -> audit_chain.Report:
    return audit_chain.verify(now or datetime.now(UTC))


def only_finding(report: audit_chain.Report) -> audit_chain.Finding:
    (finding,) = report.findings
    return finding


def history(api: Api) -> str:
    """An agent with a little history: created, a key issued and rotated, renamed, a secret put."""
    agent = api.new_agent("chained")
    issued = api.new_key(agent)
    rotated = api.device(issued["device_key"], "device/issue", {"replaces_key_id": issued["key_id"]})
    assert rotated.status_code == 201
    assert api.bridge("agents/update", {"agent_id": agent, "display_name": "renamed"}).status_code == 200
    put = api.device(rotated.get_json()["device_key"], "secrets/put", {"name": "db", "value": "x"})
    assert put.status_code in (200, 201), put.get_json()
    return agent


# ================================================================ chains as written


def test_an_agents_changes_form_one_chain_and_its_head_names_the_last(api: Api) -> None:
    agent = history(api)
    linked = chain(agent)
    assert [e["action"] for e in linked] == [
        "agent.create",
        "device.issue",
        "device.rotate",
        "agent.update",
        "secret.put",
    ]
    assert [e["seq"] for e in linked] == [1, 2, 3, 4, 5]
    assert linked[0]["prev_hash"] == audit_chain.GENESIS and linked[0]["prev_at"] is None
    for before, after in itertools.pairwise(linked):
        assert after["prev_hash"] == before["hash"] and after["prev_at"] == before["at"]
    for event in linked:
        assert event["hash"] == audit_chain.digest(event) and len(event["hash"]) == 64
        assert ids.EVENT_ID.fullmatch(event["event_id"]) and event["shard"] == audit_chain.shard_of(event["event_id"])
    last = linked[-1]
    assert head(agent) == {
        "chain": agent,
        "seq": 5,
        "hash": last["hash"],
        "event_id": last["event_id"],
        "at": last["at"],
    }
    report = verify()
    assert report.whole and (report.chains, report.events, report.expired) == (1, 5, 0)


def test_different_agents_land_on_different_chains_and_settings_on_their_own(api: Api) -> None:
    one, two = api.new_agent("one"), api.new_agent("two")
    api.new_key(two)
    assert api.bridge("settings/set", {"key": "device_key_max_active", "value": 5}).status_code == 200
    assert Counter(e["chain"] for e in events()) == {one: 1, two: 2, "settings": 1}
    assert {e["seq"] for e in chain(one)} == {1}
    assert verify().whole


def test_the_chain_rule() -> None:
    agent, other, user = "agt_" + "a" * 22, "agt_" + "b" * 22, "usr_" + "c" * 22
    bridge, acting = {"kind": "bridge"}, {"kind": "agent", "agent_id": other}

    event_id = "evt_" + "d" * 22
    project = f"project.{int.from_bytes(hashlib.sha256(event_id.encode()).digest()[8:16], 'big') % 128}"

    def chain_of(action: str, actor: dict[str, Any], target: dict[str, Any]) -> str:
        return audit_chain.chain_of(action, actor, target, event_id)

    assert chain_of("agent.update", bridge, {"agent_id": agent}) == agent
    assert chain_of("secret.put", {**acting, "on_behalf_of": agent}, {"agent_id": agent}) == agent
    assert chain_of("delegation.grant", acting, {"from_agent": other}) == other
    assert chain_of("user.update", bridge, {"user_id": user}) == user
    assert chain_of("relation.write", {"kind": "user", "user_id": user}, {}) == user
    assert chain_of("setting.set", acting, {"agent_id": agent}) == "settings"
    assert chain_of("relation.write", bridge, {"tenant_id": "t"}) == project
    # A value that is no agent or user ID never names a chain (nor a document path).
    assert chain_of("capability.record", bridge, {"agent_id": "x/../y"}) == project
    # Events naming no one spread over every project chain, apart from their listing shard.
    spread = [audit_chain.chain_of("relation.write", bridge, {}, ids.new_event_id()) for _ in range(4000)]
    assert len(set(spread)) == audit_chain.PROJECT_CHAINS


def test_several_events_of_one_change_on_one_chain_follow_each_other(api: Api) -> None:
    agent = api.new_agent()
    target = {"kind": "agent", "agent_id": agent, "changes": ["display_name"]}

    def twice(c: change.Change) -> None:
        c.record("agent.update", target)
        c.record("agent.update", target)

    change.apply(BRIDGE.for_request("two-events"), [records.agent_path(agent)], twice)
    assert [e["seq"] for e in chain(agent)] == [1, 2, 3]
    assert head(agent)["seq"] == 3  # type: ignore[index]
    assert verify().whole


def test_writes_wait_for_the_chain_but_land_as_they_stood_when_made() -> None:
    agent = ids.new_agent_id()
    stored = {"names": ["first"]}

    def work(c: change.Change) -> None:
        c.create("probe/one", stored)
        stored["names"].append("changed after the write")  # a later change of the caller's dict
        c.record("agent.update", {"kind": "agent", "agent_id": agent})

    change.apply(BRIDGE, [], work)
    assert store.client().document("probe/one").get().to_dict() == {"names": ["first"]}
    assert head(agent)["seq"] == 1  # type: ignore[index]


def test_a_head_named_up_front_costs_no_second_read(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    agent = api.new_agent()
    reads = watch_transaction_reads(monkeypatch)
    assert api.bridge("agents/update", {"agent_id": agent, "display_name": "x"}).status_code == 200
    (first,) = reads  # the agent's head came with the change's one read
    assert records.audit_chain_path(agent) in first
    reads.clear()
    created = api.new_agent()  # a new agent's chain cannot be named before the work: one more read
    assert reads[1:] == [[records.audit_chain_path(created)]] and len(reads) == 2


@pytest.mark.usefixtures("patient_datastore")
def test_concurrent_changes_of_one_agent_leave_an_unbroken_chain(api: Api) -> None:
    agent = api.new_agent()
    done: list[int] = []

    def rename(worker: int) -> None:
        for round_ in range(3):
            answer = Api().bridge("agents/update", {"agent_id": agent, "display_name": f"w{worker}-{round_}"})
            done.append(answer.status_code)

    threads = [threading.Thread(target=rename, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    changed = done.count(200)
    assert changed >= 1 and set(done) <= {200, 503}
    linked = chain(agent)
    assert [e["seq"] for e in linked] == list(range(1, changed + 2))  # agent.create, then every rename
    assert verify().whole


# ================================================================ tampering, caught


def test_an_altered_field_is_caught_at_that_event(api: Api) -> None:
    agent = history(api)
    third = chain(agent)[2]
    update(third, request_id="forged")
    finding = only_finding(verify())
    assert (finding.kind, finding.event_id, finding.seq) == ("altered", third["event_id"], 3)


def test_an_altered_event_with_its_hash_recomputed_breaks_the_next_link(api: Api) -> None:
    agent = history(api)
    linked = chain(agent)
    forged = {**linked[1], "target": {**linked[1]["target"], "label": "forged"}}
    update(linked[1], target=forged["target"], hash=audit_chain.digest(forged))
    finding = only_finding(verify())
    assert (finding.kind, finding.event_id, finding.seq) == ("reordered", linked[2]["event_id"], 3)
    assert linked[1]["event_id"] in finding.detail


def test_a_removed_event_is_caught_by_its_place(api: Api) -> None:
    agent = history(api)
    linked = chain(agent)
    delete(linked[2])
    finding = only_finding(verify())
    assert (finding.kind, finding.seq) == ("removed", 3)
    assert linked[3]["event_id"] in finding.detail


def test_removing_the_last_event_is_caught_by_the_head(api: Api) -> None:
    agent = history(api)
    last = chain(agent)[-1]
    delete(last)
    finding = only_finding(verify())
    assert (finding.kind, finding.event_id, finding.seq) == ("removed", last["event_id"], 5)


def test_removing_the_last_event_and_rewinding_the_head_is_what_a_checkpoint_is_for(api: Api) -> None:
    # docs/audit.md: someone who can write the database can cut a chain's tail and its head together.
    agent = history(api)
    linked = chain(agent)
    delete(linked[-1])
    before = linked[-2]
    rewound = {"chain": agent, "seq": 4, "hash": before["hash"], "event_id": before["event_id"]}
    store.client().document(records.audit_chain_path(agent)).set({**rewound, "at": before["at"]})
    assert verify().whole


def test_a_replaced_last_event_is_caught_by_the_head(api: Api) -> None:
    agent = history(api)
    last = chain(agent)[-1]
    forged = {**last, "request_id": "forged"}
    update(last, request_id="forged", hash=audit_chain.digest(forged))
    finding = only_finding(verify())
    assert (finding.kind, finding.event_id) == ("altered", last["event_id"])


def test_two_events_swapped_are_caught_as_reordered(api: Api) -> None:
    agent = history(api)
    linked = chain(agent)
    second, third = linked[1], linked[2]
    update(second, seq=third["seq"], prev_hash=third["prev_hash"], prev_at=third["prev_at"])
    update(third, seq=second["seq"], prev_hash=second["prev_hash"], prev_at=second["prev_at"])
    finding = only_finding(verify())
    assert (finding.kind, finding.event_id, finding.seq) == ("reordered", third["event_id"], 2)
    assert "written at seq 3" in finding.detail


def test_two_events_swapped_and_rehashed_are_caught_as_reordered(api: Api) -> None:
    agent = history(api)
    linked = chain(agent)
    second, third = linked[1], linked[2]
    moved_third = {**third, "seq": 2, "prev_hash": second["prev_hash"], "prev_at": second["prev_at"]}
    moved_third["hash"] = audit_chain.digest(moved_third)
    moved_second = {**second, "seq": 3, "prev_hash": moved_third["hash"], "prev_at": third["at"]}
    moved_second["hash"] = audit_chain.digest(moved_second)
    for event in (moved_third, moved_second):
        update(event, **{k: event[k] for k in ("seq", "prev_hash", "prev_at", "hash")})
    finding = only_finding(verify())  # the next event still points at the second event's old hash
    assert (finding.kind, finding.event_id, finding.seq) == ("reordered", linked[3]["event_id"], 4)


def test_a_removed_head_and_an_event_moved_to_another_chain_are_caught(api: Api) -> None:
    agent = history(api)
    store.client().document(records.audit_chain_path(agent)).delete()
    finding = only_finding(verify())
    assert (finding.kind, finding.chain) == ("removed", agent)
    assert "head is missing" in finding.detail


def test_an_event_moved_to_another_chain_is_caught(api: Api) -> None:
    agent, other = history(api), api.new_agent("other")
    moved = chain(agent)[1]
    update(moved, chain=other)
    chains = {f.chain: f for f in verify().findings}
    assert chains[agent].kind == "removed" and chains[agent].seq == 2
    assert (chains[other].kind, chains[other].event_id) == ("altered", moved["event_id"])


# ================================================================ retention


def test_events_old_enough_to_have_expired_are_counted_not_flagged(api: Api, frozen_clock: Any) -> None:
    frozen_clock(T0)
    agent = history(api)
    linked = chain(agent)
    for event in linked[:2]:  # the oldest events, as the TTL policy removes them
        delete(event)
    delete(linked[3])  # one in the middle
    soon = verify(T0 + timedelta(days=29))
    assert (only_finding(soon).kind, only_finding(soon).seq) == ("removed", 1)  # younger than any retention
    late = verify(T0 + audit_chain.MIN_RETENTION + timedelta(seconds=1))
    assert late.whole and (late.events, late.expired) == (2, 3)
    for event in linked[2:]:
        delete(event)  # the whole chain expired: the head alone is left
    assert verify(T0 + timedelta(days=400)).whole
    assert only_finding(verify(T0 + timedelta(days=1))).kind == "removed"


# ================================================================ the command


def cli(*args: str, emulator_host: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTPACK_", "FIRESTORE_"))}
    env = {**base, "FIRESTORE_EMULATOR_HOST": emulator_host, "GOOGLE_CLOUD_PROJECT": DEV_ENV["GOOGLE_CLOUD_PROJECT"]}
    return subprocess.run(
        [sys.executable, "-m", "agentpack.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_agentpack_audit_verify_exits_0_with_counts_and_1_naming_the_event(api: Api, emulator_host: str) -> None:
    agent = history(api)
    whole = cli("audit", "verify", emulator_host=emulator_host)
    assert whole.returncode == 0, whole.stderr
    assert whole.stdout.strip() == "whole: 1 chains, 5 events, 0 expired"
    third = chain(agent)[2]
    update(third, action="agent.create")
    broken = cli("audit", "verify", emulator_host=emulator_host)
    assert broken.returncode == 1
    assert f"chain {agent}: altered: event {third['event_id']} (seq 3)" in broken.stdout
    report = json.loads(cli("--json", "audit", "verify", emulator_host=emulator_host).stdout)
    assert report["whole"] is False and report["findings"][0]["event_id"] == third["event_id"]


# ================================================================ migration


def old_event(at: datetime, millis: int, action: str, actor: dict[str, Any], target: dict[str, Any]) -> str:
    """An event as the service wrote it before chains: a time-ordered ID, no chain fields."""
    event_id = f"evt_{millis:013d}{ids.random_base62(10)}"
    named = (actor.get("agent_id"), actor.get("on_behalf_of"), target.get("agent_id"), target.get("from_agent"))
    store.client().document(records.audit_event_path(event_id)).set(
        {
            "event_id": event_id,
            "at": at,
            "category": "auth",
            "action": action,
            "actor": actor,
            "target": target,
            "request_id": f"old-{millis}",
            "subjects": sorted({a for a in named if a}),
            "expire_at": at + timedelta(days=400),
        }
    )
    return event_id


def old_history() -> tuple[str, list[str]]:
    agent, other = ids.new_agent_id(), ids.new_agent_id()
    base = int(T0.timestamp() * 1000)
    bridge = {"kind": "bridge"}
    written = []
    for n, action in enumerate(["agent.create", "device.issue", "agent.update", "device.revoke", "agent.update"]):
        # Written out of ID order, and two in one second: the migration goes by the old IDs' milliseconds.
        millis = base + [0, 400, 1700, 2100, 2600][n]
        written.append(
            old_event(
                T0 + timedelta(seconds=millis // 1000 - base // 1000), millis, action, bridge, {"agent_id": agent}
            )
        )
    old_event(T0, base + 50, "agent.create", bridge, {"agent_id": other})
    old_event(T0, base + 60, "setting.set", bridge, {"kind": "setting", "key": "secret_max_bytes", "value": 9})
    return agent, written


def test_the_migration_moves_old_events_into_chains_in_the_order_of_their_old_ids(api: Api) -> None:
    agent, written = old_history()
    assert only_finding(verify()).kind == "unchained"
    done = audit_migration.migrate(lambda progress: None)
    assert (done.seen, done.moved) == (7, 7)
    assert not any(ids.OLD_EVENT_ID.fullmatch(e["event_id"]) for e in events())
    linked = chain(agent)
    assert [e["request_id"] for e in linked] == [f"old-{int(written_id[4:17])}" for written_id in written]
    assert [e["seq"] for e in linked] == [1, 2, 3, 4, 5]
    assert all(
        e["logged_at"] == datetime.fromtimestamp(int(w[4:17]) / 1000, UTC) for e, w in zip(linked, written, strict=True)
    )
    assert Counter(e["chain"] for e in events())["settings"] == 1
    report = verify()
    assert report.whole and (report.chains, report.events) == (3, 7)
    # The moved events are listed, newest first, like any other.
    listed = api.bridge("audit/list", {"agent_id": agent}).get_json()["events"]
    assert [e["request_id"] for e in listed] == [e["request_id"] for e in reversed(linked)]
    # A second run changes nothing.
    before = sorted(events(), key=lambda e: e["event_id"])
    again = audit_migration.migrate(lambda progress: None)
    assert again.moved == 0 and sorted(events(), key=lambda e: e["event_id"]) == before


def test_an_interrupted_migration_carries_on_where_it_stopped(api: Api) -> None:
    agent, written = old_history()

    class Interrupted(Exception):
        pass

    def stop_after_one_page(progress: audit_migration.Progress) -> None:
        raise Interrupted

    with pytest.raises(Interrupted):
        audit_migration.migrate(stop_after_one_page, page_size=3)
    left = [e for e in events() if "chain" not in e]
    assert 0 < len(left) < 7
    assert verify().findings[-1].kind == "unchained"  # half done: the rest is reported, not hidden
    api.new_agent("meanwhile")  # the service keeps writing chained events in between
    audit_migration.migrate(lambda progress: None, page_size=3)
    linked = chain(agent)
    assert [e["request_id"] for e in linked] == [f"old-{int(w[4:17])}" for w in written]
    report = verify()
    assert report.whole and report.events == 8


def test_agentpack_audit_migrate_twice(api: Api, emulator_host: str) -> None:
    old_history()
    first = cli("audit", "migrate", emulator_host=emulator_host)
    assert first.returncode == 0, first.stderr
    assert "done: 7 events seen, 7 moved to their chains" in first.stdout
    second = cli("audit", "migrate", emulator_host=emulator_host)
    assert "done: 7 events seen, 0 moved to their chains" in second.stdout
    assert cli("audit", "verify", emulator_host=emulator_host).returncode == 0


def test_the_clock_is_the_service_clock_for_at_but_listing_follows_writing_order(api: Api, frozen_clock: Any) -> None:
    frozen_clock(T0 + timedelta(days=1))
    first = api.new_agent("first")
    frozen_clock(T0)  # the service clock goes back; the listing still shows the newest write first
    second = api.new_agent("second")
    listed = api.bridge("audit/list", {}).get_json()["events"]
    assert [e["target"]["agent_id"] for e in listed] == [second, first]
    assert clock.rfc3339(T0) == listed[0]["at"]
