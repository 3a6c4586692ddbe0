"""Relations and checks (issue 10): authz/write, authz/read and the one-read authz/check.

The matrix test builds one world per test (the datastore is wiped before each) and loops over its
cases, collecting every wrong answer, so one run names each failing case.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from shared import clock
from tests.conftest import BRIDGE_KEY, Api, function_client
from tests.people import Agent, People, User
from tests.reads import watch_reads

RELATIONS = ("owner", "editor", "viewer")
ACTIONS = ("read", "write", "delete", "share")
ALLOWS = {"owner": {"read", "write", "delete", "share"}, "editor": {"read", "write"}, "viewer": {"read"}}
T1, T2 = "t1", "t2"


@pytest.fixture
def people(api: Api, auth_emulator: str) -> People:
    return People(api, auth_emulator)


def tup(resource: str, relation: str, subject: str) -> dict[str, str]:
    return {"resource": resource, "relation": relation, "subject": subject}


@dataclass
class Case:
    name: str
    question: dict[str, Any]
    expected: bool
    tenant_id: str = T1


def run_cases(people: People, cases: list[Case], ask: Callable[[Case], bool] | None = None) -> None:
    wrong = []
    for case in cases:
        got = ask(case) if ask else people.check(case.tenant_id, **case.question)
        if got is not case.expected:
            wrong.append(f"{case.name}: expected {case.expected}, got {got}")
    assert not wrong, f"{len(wrong)} of {len(cases)} cases wrong:\n" + "\n".join(wrong)


class MatrixWorld:
    """Tenant t1: users U (the one acted for), V (another), D (disabled); agents acting for U with various
    grants; agents holding relations directly. Tenant t2: user W and agent X. For each relation R,
    ``doc:R_u`` is U's, ``doc:R_v`` V's, ``doc:R_d`` D's, ``doc:R_b`` held by agent B directly."""

    def __init__(self, people: People, frozen_clock: Callable[[Any], None]) -> None:
        p = people
        self.u, self.v, self.d = p.user(T1), p.user(T1), p.user(T1)
        self.w = p.user(T2)
        self.full = p.agent(T1, name="full")  # delegate of U for every action
        self.reader = p.agent(T1, name="reader")  # delegate of U for read only
        self.expired = p.agent(T1, name="expired")
        self.revoked = p.agent(T1, name="revoked")
        self.disabled = p.agent(T1, name="disabled")
        self.for_d = p.agent(T1, name="for-d")  # delegate of the disabled user D
        self.b = p.agent(T1, name="direct")  # holds relations itself
        self.b_off = p.agent(T1, name="direct-disabled")
        self.x = p.agent(T2, name="outsider")
        everything = list(ACTIONS)
        p.grant(self.u, self.full, everything)
        p.grant(self.u, self.reader, ["read"])
        p.grant(self.u, self.disabled, everything)
        p.grant(self.d, self.for_d, everything)
        revoked = p.grant(self.u, self.revoked, everything)
        assert p.as_user(self.u, "users/delegate/revoke", {"grant_id": revoked["grant_id"]}).status_code == 200
        frozen_clock(clock.now() - timedelta(days=1))  # a grant made yesterday for an hour
        p.grant(self.u, self.expired, everything, ttl_seconds=3600)
        clock.set_source(None)
        for relation in RELATIONS:
            p.write(
                T1,
                (f"doc:{relation}_u", relation, self.u.subject),
                (f"doc:{relation}_v", relation, self.v.subject),
                (f"doc:{relation}_d", relation, self.d.subject),
                (f"doc:{relation}_b", relation, self.b.subject),
                (f"doc:{relation}_b", relation, self.b_off.subject),
                (f"doc:{relation}_b", relation, self.disabled.subject),
            )
            p.write(
                T2, (f"doc:{relation}_u", relation, self.w.subject), (f"doc:{relation}_x", relation, self.x.subject)
            )
        p.disable_user(self.d)
        p.disable_agent(self.disabled)
        p.disable_agent(self.b_off)

    def cases(self) -> list[Case]:
        u, v, d, w, x = self.u, self.v, self.d, self.w, self.x
        found: list[Case] = []
        for relation in RELATIONS:
            for action in ACTIONS:
                may = action in ALLOWS[relation]
                mine, theirs = f"doc:{relation}_u", f"doc:{relation}_v"

                def case(
                    name: str,
                    expected: bool,
                    tenant_id: str = T1,
                    pair: tuple[str, str] = (relation, action),
                    **question: Any,
                ) -> None:
                    label = f"{pair[0]}/{pair[1]}/{name}"
                    found.append(Case(label, {"action": pair[1], **question}, expected, tenant_id))

                case("the user itself", may, subject=u.subject, resource=mine)
                case("an agent directly", may, subject=self.b.subject, resource=f"doc:{relation}_b")
                case("on behalf, full grant", may, subject=self.full.subject, on_behalf_of=u.subject, resource=mine)
                case(
                    "on behalf, read-only grant",
                    may and action == "read",
                    subject=self.reader.subject,
                    on_behalf_of=u.subject,
                    resource=mine,
                )
                # The agent holds the relation itself, but acting for U it may only what U may.
                case(
                    "on behalf, only the agent holds it",
                    False,
                    subject=self.disabled.subject,
                    on_behalf_of=u.subject,
                    resource=f"doc:{relation}_b",
                )
                case(
                    "on behalf of U, on what only the agent holds",
                    False,
                    subject=self.full.subject,
                    on_behalf_of=u.subject,
                    resource=f"doc:{relation}_b",
                )
                case("another user, on U's", False, subject=v.subject, resource=mine)
                case("that user, on its own", may, subject=v.subject, resource=theirs)
                case(
                    "on behalf of U, on V's", False, subject=self.full.subject, on_behalf_of=u.subject, resource=theirs
                )
                case(
                    "on behalf of V (no grant)",
                    False,
                    subject=self.full.subject,
                    on_behalf_of=v.subject,
                    resource=theirs,
                )
                case("a user of another tenant", False, subject=w.subject, resource=mine)
                case("an agent of another tenant", False, subject=x.subject, resource=f"doc:{relation}_x")
                case(
                    "an agent of another tenant for U", False, subject=x.subject, on_behalf_of=u.subject, resource=mine
                )
                case("t2's user in t2", may, tenant_id=T2, subject=w.subject, resource=mine)
                case("t1's user asked in t2", False, tenant_id=T2, subject=u.subject, resource=mine)
                case(
                    "t1's agent for U asked in t2",
                    False,
                    tenant_id=T2,
                    subject=self.full.subject,
                    on_behalf_of=u.subject,
                    resource=mine,
                )
                case("expired grant", False, subject=self.expired.subject, on_behalf_of=u.subject, resource=mine)
                case("revoked grant", False, subject=self.revoked.subject, on_behalf_of=u.subject, resource=mine)
                case("disabled user itself", False, subject=d.subject, resource=f"doc:{relation}_d")
                case(
                    "agent for a disabled user",
                    False,
                    subject=self.for_d.subject,
                    on_behalf_of=d.subject,
                    resource=f"doc:{relation}_d",
                )
                case(
                    "disabled agent for U", False, subject=self.disabled.subject, on_behalf_of=u.subject, resource=mine
                )
                case("disabled agent directly", False, subject=self.b_off.subject, resource=f"doc:{relation}_b")
                case("a user acting for a user", False, subject=v.subject, on_behalf_of=u.subject, resource=mine)
        return found


def test_the_check_matrix(people: People, frozen_clock: Callable[[Any], None]) -> None:
    world = MatrixWorld(people, frozen_clock)
    cases = world.cases()
    assert len(cases) == 3 * 4 * 23
    assert sum(c.expected for c in cases) == 5 * 7 + 3  # 5 allowing cases x 7 allowed pairs, + read for the reader
    run_cases(people, cases)


def test_the_matrix_asked_by_an_agent_with_authz_check(people: People, api: Api, frozen_clock: Any) -> None:
    """An agent asks in its own tenant, with the same answers as the bridge in that tenant."""
    world = MatrixWorld(people, frozen_clock)
    asker = people.agent(T1, scopes=["authz:check", "read", "write", "delete", "share"])

    def ask(case: Case) -> bool:
        answer = api.device(asker.key, "authz/check", case.question)
        assert answer.status_code == 200, (case.name, answer.get_json())
        return bool(answer.get_json()["allowed"])

    run_cases(people, [c for c in world.cases() if c.tenant_id == T1], ask)


def test_a_grant_ends_exactly_at_its_expiry(people: People, frozen_clock: Any) -> None:
    u, agent = people.user(T1), people.agent(T1)
    people.write(T1, ("doc:1", "viewer", u.subject))
    start = clock.now()
    frozen_clock(start)
    people.grant(u, agent, ["read"], ttl_seconds=60)
    question = {"subject": agent.subject, "on_behalf_of": u.subject, "action": "read", "resource": "doc:1"}
    frozen_clock(start + timedelta(seconds=59))
    assert people.check(T1, **question)
    frozen_clock(start + timedelta(seconds=60))
    assert not people.check(T1, **question)


def test_unknown_subjects_and_resources_are_simply_false(people: People) -> None:
    u = people.user(T1)
    people.write(T1, ("doc:1", "owner", u.subject))
    nobody = "usr_" + "0" * 22
    assert people.check(T1, subject=u.subject, action="read", resource="doc:1")
    assert not people.check(T1, subject=u.subject, action="read", resource="doc:2")
    assert not people.check(T1, subject=u.subject, action="read", resource="folder:1")
    assert not people.check(T1, subject=f"user:{nobody}", action="read", resource="doc:1")
    assert not people.check(T1, subject="agent:agt_" + "0" * 22, action="read", resource="doc:1")
    assert not people.check(
        T1, subject="agent:agt_" + "0" * 22, on_behalf_of=u.subject, action="read", resource="doc:1"
    )
    assert not people.check("nowhere", subject=u.subject, action="read", resource="doc:1")


@pytest.mark.parametrize(
    "body",
    [
        {"subject": "user:nope", "action": "read", "resource": "doc:1"},
        {"subject": "group:x", "action": "read", "resource": "doc:1"},
        {"action": "read", "resource": "doc:1"},
        {"subject": "agent:agt_" + "0" * 22, "action": "admin", "resource": "doc:1"},
        {"subject": "agent:agt_" + "0" * 22, "action": "read", "resource": "doc"},
        {"subject": "agent:agt_" + "0" * 22, "action": "read", "resource": "Doc:1"},
        {"subject": "agent:agt_" + "0" * 22, "action": "read", "resource": "doc:1", "on_behalf_of": "agent:x"},
        {"subject": "agent:agt_" + "0" * 22, "action": "read", "resource": "doc:1", "token": "x"},
        {"subject": "agent:agt_" + "0" * 22, "action": "read", "resource": "doc:1", "extra": 1},
    ],
)
def test_check_bodies_are_strict(api: Api, body: dict[str, Any]) -> None:
    answer = api.bridge("authz/check", {"tenant_id": T1, **body})
    assert answer.status_code == 400 and answer.get_json()["error"] == "invalid_request", answer.get_json()


def test_the_bridge_names_a_tenant_and_agents_need_the_scopes(people: People, api: Api) -> None:
    u = people.user(T1)
    tuple_body = {"writes": [tup("doc:1", "owner", u.subject)]}
    check_body = {"subject": u.subject, "action": "read", "resource": "doc:1"}
    for route, body in (
        ("authz/write", tuple_body),
        ("authz/read", {"resource": "doc:1"}),
        ("authz/check", check_body),
    ):
        answer = api.bridge(route, body)
        assert answer.status_code == 400 and "tenant_id" in answer.get_json()["error_description"], route
    plain = people.agent(T1, scopes=["secrets/get"])
    checker = people.agent(T1, scopes=["authz:check"])
    for agent, route, body in (
        (plain, "authz/write", tuple_body),
        (plain, "authz/read", {"resource": "doc:1"}),
        (plain, "authz/check", check_body),
        (checker, "authz/write", tuple_body),
        (checker, "authz/read", {"resource": "doc:1"}),
    ):
        answer = api.device(agent.key, route, body)
        assert answer.status_code == 403 and answer.get_json()["error"] == "forbidden", (route, answer.get_json())
    assert api.bridge("authz/read", {"tenant_id": T1, "resource": "doc:1"}).get_json()["tuples"] == []


def test_an_agent_writes_reads_and_checks_in_its_own_tenant(people: People, api: Api) -> None:
    u, w = people.user(T1), people.user(T2)
    agent = people.agent(T1, scopes=["authz:write", "authz:read", "authz:check"])
    written = api.device(agent.key, "authz/write", {"writes": [tup("doc:1", "editor", u.subject)], "tenant_id": T2})
    assert written.status_code == 200 and written.get_json() == {"written": 1, "deleted": 0}
    # tenant_id in an agent's body does not move it out of its tenant: the tuple is t1's.
    assert api.bridge("authz/read", {"tenant_id": T1, "resource": "doc:1"}).get_json()["tuples"] == [
        tup("doc:1", "editor", u.subject)
    ]
    assert api.bridge("authz/read", {"tenant_id": T2, "resource": "doc:1"}).get_json()["tuples"] == []
    refused = api.device(agent.key, "authz/write", {"writes": [tup("doc:1", "owner", w.subject)]})
    assert refused.status_code == 404  # a subject of another tenant does not exist here
    read = api.device(agent.key, "authz/read", {"resource": "doc:1"})
    assert read.status_code == 200 and read.get_json()["tuples"] == [tup("doc:1", "editor", u.subject)]
    check = {"subject": u.subject, "resource": "doc:1"}
    assert api.device(agent.key, "authz/check", {**check, "action": "write"}).get_json() == {"allowed": True}
    assert api.device(agent.key, "authz/check", {**check, "action": "delete"}).get_json() == {"allowed": False}
    [event] = people.events("relation.write")
    assert event["actor"] == {"kind": "agent", "agent_id": agent.agent_id}
    assert event["target"] == {"kind": "relations", "tenant_id": T1, "written": 1, "deleted": 0}


def test_write_counts_and_one_event_per_call(people: People, api: Api) -> None:
    u, v = people.user(T1), people.user(T1)
    first = api.bridge(
        "authz/write",
        {"tenant_id": T1, "writes": [tup("doc:1", "owner", u.subject), tup("doc:1", "viewer", v.subject)]},
    )
    assert first.get_json() == {"written": 2, "deleted": 0}
    again = api.bridge("authz/write", {"tenant_id": T1, "writes": [tup("doc:1", "owner", u.subject)]})
    assert again.get_json() == {"written": 0, "deleted": 0}  # already there
    swap = api.bridge(
        "authz/write",
        {
            "tenant_id": T1,
            "writes": [tup("doc:1", "editor", v.subject)],
            "deletes": [tup("doc:1", "viewer", v.subject), tup("doc:9", "viewer", v.subject)],
        },
    )
    assert swap.get_json() == {"written": 1, "deleted": 1}  # deleting what is not there counts nothing
    assert api.bridge("authz/read", {"tenant_id": T1, "resource": "doc:1"}).get_json()["tuples"] == [
        tup("doc:1", "editor", v.subject),
        tup("doc:1", "owner", u.subject),
    ]
    events = people.events("relation.write")
    assert [(e["target"]["written"], e["target"]["deleted"]) for e in events] == [(1, 1), (2, 0)]  # no-op: no event


def test_a_tuple_named_twice_counts_once(people: People, api: Api) -> None:
    u = people.user(T1)
    twice = [tup("doc:1", "owner", u.subject)] * 2
    assert api.bridge("authz/write", {"tenant_id": T1, "writes": twice}).get_json() == {"written": 1, "deleted": 0}
    assert api.bridge("authz/write", {"tenant_id": T1, "deletes": twice}).get_json() == {"written": 0, "deleted": 1}
    assert [e["target"]["written"] + e["target"]["deleted"] for e in people.events("relation.write")] == [1, 1]


def test_a_tuple_both_written_and_deleted_is_refused(people: People, api: Api) -> None:
    """Deleting and writing one tuple in one call has no single meaning (the outcome would flip with what
    was stored before): refused, nothing written."""
    u = people.user(T1)
    both = {
        "tenant_id": T1,
        "writes": [tup("doc:1", "owner", u.subject)],
        "deletes": [tup("doc:1", "owner", u.subject)],
    }
    answer = api.bridge("authz/write", both)
    assert answer.status_code == 400 and answer.get_json()["error"] == "invalid_request", answer.get_json()
    assert api.bridge("authz/read", {"tenant_id": T1, "resource": "doc:1"}).get_json()["tuples"] == []


def test_write_is_atomic(people: People, api: Api) -> None:
    u, w = people.user(T1), people.user(T2)
    other_agent = people.agent(T2)
    for stranger in (w.subject, other_agent.subject, "user:usr_" + "0" * 22):
        batch = [tup(f"doc:{n}", "owner", u.subject) for n in range(5)] + [tup("doc:9", "viewer", stranger)]
        answer = api.bridge("authz/write", {"tenant_id": T1, "writes": batch})
        assert answer.status_code == 404 and answer.get_json()["error"] == "not_found", stranger
    for n in (0, 4, 9):
        assert api.bridge("authz/read", {"tenant_id": T1, "resource": f"doc:{n}"}).get_json()["tuples"] == []
    assert people.events("relation.write") == []


def test_at_most_100_tuples_a_call(people: People, api: Api) -> None:
    u = people.user(T1)
    hundred = [tup(f"doc:{n}", "viewer", u.subject) for n in range(100)]
    too_many = {
        "tenant_id": T1,
        "writes": hundred[:60],
        "deletes": [tup(f"doc:x{n}", "viewer", u.subject) for n in range(41)],
    }
    for body in ({"tenant_id": T1, "writes": [*hundred, tup("doc:100", "viewer", u.subject)]}, too_many):
        answer = api.bridge("authz/write", body)
        assert answer.status_code == 400 and answer.get_json()["error"] == "invalid_request"
    assert api.bridge("authz/read", {"tenant_id": T1, "resource": "doc:0"}).get_json()["tuples"] == []
    answer = api.bridge("authz/write", {"tenant_id": T1, "writes": hundred})
    assert answer.status_code == 200 and answer.get_json() == {"written": 100, "deleted": 0}
    assert len(people.events("relation.write")) == 1


@pytest.mark.parametrize(
    "bad",
    [
        {"resource": "doc:1", "relation": "admin"},
        {"resource": "doc", "relation": "owner"},
        {"resource": "1doc:1", "relation": "owner"},
        {"resource": "doc:a/b", "relation": "owner"},
        {"resource": "doc:1", "relation": "owner", "extra": "x"},
    ],
)
def test_tuples_are_strict(people: People, api: Api, bad: dict[str, str]) -> None:
    u = people.user(T1)
    answer = api.bridge("authz/write", {"tenant_id": T1, "writes": [{"subject": u.subject, **bad}]})
    assert answer.status_code == 400 and answer.get_json()["error"] == "invalid_request"


def test_read_is_per_tenant(people: People, api: Api) -> None:
    u, w = people.user(T1), people.user(T2)
    people.write(T1, ("doc:1", "viewer", u.subject), ("doc:1", "owner", u.subject), ("doc:2", "owner", u.subject))
    people.write(T2, ("doc:1", "owner", w.subject))
    assert api.bridge("authz/read", {"tenant_id": T1, "resource": "doc:1"}).get_json()["tuples"] == [
        tup("doc:1", "owner", u.subject),
        tup("doc:1", "viewer", u.subject),
    ]
    assert api.bridge("authz/read", {"tenant_id": T2, "resource": "doc:1"}).get_json()["tuples"] == [
        tup("doc:1", "owner", w.subject)
    ]
    # A bridge delete in the wrong tenant deletes nothing.
    wrong = api.bridge("authz/write", {"tenant_id": T2, "deletes": [tup("doc:2", "owner", u.subject)]})
    assert wrong.get_json() == {"written": 0, "deleted": 0}
    assert len(api.bridge("authz/read", {"tenant_id": T1, "resource": "doc:2"}).get_json()["tuples"]) == 1


# ---------------------------------------------------------------- checks by token


@dataclass
class TokenWorld:
    u: User
    agent: Agent
    asker: Agent
    token: str


def token_world(people: People, actions: list[str], scope: str | None = None) -> TokenWorld:
    u = people.user(T1)
    agent = people.agent(T1)
    asker = people.agent(T1, scopes=["authz:check", "read", "write", "delete", "share"])
    people.grant(u, agent, actions)
    people.write(T1, ("doc:1", "owner", u.subject))
    form = {"scope": scope} if scope is not None else {}
    return TokenWorld(u, agent, asker, people.exchanged(agent, u, **form))


def test_check_by_an_exchanged_token(people: People, api: Api) -> None:
    world = token_world(people, ["read", "write"], scope="read")
    by_token = {"token": world.token, "resource": "doc:1"}
    assert people.check(T1, action="read", **by_token)
    assert not people.check(T1, action="write", **by_token)  # in the grant, not in the token's scope
    assert not people.check(T1, action="delete", **by_token)  # in neither
    assert not people.check(T2, action="read", **by_token)  # another tenant's question
    assert not people.check(T1, action="read", token=world.token, resource="doc:2")
    assert api.device(world.asker.key, "authz/check", {"action": "read", **by_token}).get_json() == {"allowed": True}
    assert not people.check(T1, action="read", token=world.token[:-2] + "AA", resource="doc:1")  # tampered
    assert not people.check(T1, action="read", token="garbage", resource="doc:1")
    # The agent's own token (no act) speaks for the agent alone: it holds nothing on doc:1.
    form = {"grant_type": "client_credentials", "client_id": world.agent.agent_id, "client_secret": world.agent.key}
    own = function_client("oauth_token").post("/", data=form).get_json()["access_token"]
    assert not people.check(T1, action="read", token=own, resource="doc:1")


def test_a_token_check_turns_false_on_revoke(people: People, api: Api, frozen_clock: Any) -> None:
    start = clock.now()
    frozen_clock(start)
    world = token_world(people, ["read"])
    frozen_clock(start + timedelta(seconds=2))
    by_token = {"token": world.token, "resource": "doc:1", "action": "read"}
    assert people.check(T1, **by_token)
    grant_id = people.as_user(world.u, "users/delegate/list").get_json()["grants"][0]["grant_id"]
    assert people.as_user(world.u, "users/delegate/revoke", {"grant_id": grant_id}).status_code == 200
    assert not people.check(T1, **by_token)
    assert people.introspect(world.token) == {"active": False}
    # Granting again makes a new grant (same ID): tokens issued under the revoked one stay dead
    # (told apart by the token's iat, in whole seconds, against the grant's creation).
    people.grant(world.u, world.agent, ["read"])
    assert not people.check(T1, **by_token)
    assert people.introspect(world.token) == {"active": False}
    fresh = people.exchanged(world.agent, world.u)
    assert people.check(T1, **{**by_token, "token": fresh})


def test_a_token_check_turns_false_when_the_user_is_disabled_or_the_grant_narrows(people: People) -> None:
    world = token_world(people, ["read", "write"])
    by_token = {"token": world.token, "resource": "doc:1"}
    assert people.check(T1, action="write", **by_token)
    people.disable_user(world.u)
    assert not people.check(T1, action="read", **by_token)
    people.disable_user(world.u, disabled=False)
    assert people.check(T1, action="write", **by_token)
    people.grant(world.u, world.agent, ["read"])  # narrowed below the token's scope: the token falls
    assert not people.check(T1, action="read", **by_token)
    assert people.introspect(world.token) == {"active": False}


def test_a_token_check_turns_false_when_the_agent_is_disabled(people: People) -> None:
    world = token_world(people, ["read"])
    by_token = {"token": world.token, "resource": "doc:1", "action": "read"}
    assert people.check(T1, **by_token)
    people.disable_agent(world.agent)
    assert not people.check(T1, **by_token)


def test_access_token_callers_need_authz_check_in_the_token(people: People, api: Api) -> None:
    u = people.user(T1)
    people.write(T1, ("doc:1", "viewer", u.subject))
    asker = people.agent(T1, scopes=["authz:check", "authz:read"])
    body = {"subject": u.subject, "action": "read", "resource": "doc:1"}
    for scope, status in (("authz:check", 200), ("authz:read", 403)):
        form = {"grant_type": "client_credentials", "client_id": asker.agent_id, "client_secret": asker.key}
        token = function_client("oauth_token").post("/", data={**form, "scope": scope}).get_json()["access_token"]
        answer = api.call("authz/check", body, {"authorization": f"Bearer {token}"})
        assert answer.status_code == status, (scope, answer.get_json())
    assert answer.status_code == 403


# ---------------------------------------------------------------- one round trip


def test_a_check_is_one_round_trip(people: People, api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    u = people.user(T1)
    agent = people.agent(T1)
    asker = people.agent(T1, scopes=["authz:check", "read", "write", "delete", "share"])
    people.grant(u, agent, ["read"])
    people.write(T1, ("doc:1", "editor", u.subject))
    token = people.exchanged(agent, u)
    questions = {
        "direct": {"subject": u.subject, "action": "read", "resource": "doc:1"},
        "on behalf": {"subject": agent.subject, "on_behalf_of": u.subject, "action": "read", "resource": "doc:1"},
        "by token": {"token": token, "action": "read", "resource": "doc:1"},
        "the asker about itself": {"subject": asker.subject, "action": "read", "resource": "doc:1"},
    }
    expected = {"direct": True, "on behalf": True, "by token": True, "the asker about itself": False}
    batches = watch_reads(monkeypatch)
    for name, question in questions.items():
        for caller, headers, body in (
            ("device key", {"x-agentpack-device-key": asker.key}, question),
            ("bridge", {"x-agentpack-key": BRIDGE_KEY}, {"tenant_id": T1, **question}),
        ):
            batches.clear()
            answer = api.call("authz/check", body, headers)
            assert answer.status_code == 200, (name, caller, answer.get_json())
            assert answer.get_json()["allowed"] is expected[name], (name, caller)
            assert batches.round_trips() == 1, (name, caller, batches.events)
            assert len(batches.documents()) <= 11, (name, caller, batches.events)
