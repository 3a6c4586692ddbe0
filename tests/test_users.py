"""Users (issue 10): registered by the bridge from a Firebase account, signed in with an ID token.

Real Firestore and Auth emulators: users sign up through the emulator's REST API and send the ID
token it gives them. Hand-made tokens (another project, expired, tampered) are built here.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.conftest import Api
from tests.people import People, claims_of, emulator_claims, sign_up, unsigned_jwt

ONE_MESSAGE = {"error": "unauthenticated"}


@pytest.fixture
def people(api: Api, auth_emulator: str) -> People:
    return People(api, auth_emulator)


def refused_401(answer: Any) -> str:
    assert answer.status_code == 401, (answer.status_code, answer.get_json())
    body = answer.get_json()
    assert body["error"] == "unauthenticated"
    return str(body["error_description"])


# ---------------------------------------------------------------- users/create, get, list, update


def test_create_answers_the_user_and_the_same_firebase_account_twice_is_409(people: People, api: Api) -> None:
    uid, _ = sign_up(people.auth_host)
    answer = api.bridge("users/create", {"firebase_uid": uid, "tenant_id": "acme", "display_name": "Ada"})
    assert answer.status_code == 201, answer.get_json()
    user = answer.get_json()
    assert set(user) == {"user_id", "firebase_uid", "tenant_id", "display_name", "disabled", "created_at"}
    assert user["user_id"].startswith("usr_") and user["firebase_uid"] == uid
    assert (user["tenant_id"], user["display_name"], user["disabled"]) == ("acme", "Ada", False)
    assert user["created_at"].endswith("Z")
    again = api.bridge("users/create", {"firebase_uid": uid, "tenant_id": "other"})
    assert again.status_code == 409 and again.get_json()["error"] == "conflict"
    # Defaults: tenant "default", no display name.
    uid2, _ = sign_up(people.auth_host)
    plain = api.bridge("users/create", {"firebase_uid": uid2}).get_json()
    assert (plain["tenant_id"], plain["display_name"]) == ("default", None)
    assert plain["user_id"] != user["user_id"]
    assert [e["target"]["user_id"] for e in people.events("user.create")] == [plain["user_id"], user["user_id"]]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"firebase_uid": "abc", "extra": 1},
        {"firebase_uid": 7},
        {"firebase_uid": "a/b"},
        {"firebase_uid": "x" * 129},
        {"firebase_uid": "abc", "tenant_id": 5},
        {"firebase_uid": "abc", "display_name": ""},
        {"firebase_uid": "abc", "disabled": False},
    ],
)
def test_create_bodies_are_strict(api: Api, body: dict[str, Any]) -> None:
    answer = api.bridge("users/create", body)
    assert answer.status_code == 400 and answer.get_json()["error"] == "invalid_request", answer.get_json()
    assert api.bridge("users/list", {}).get_json()["users"] == []


def test_get_by_the_bridge_and_by_the_user_itself(people: People, api: Api) -> None:
    ada, bob = people.user(display_name="Ada"), people.user()
    by_bridge = api.bridge("users/get", {"user_id": ada.user_id})
    assert by_bridge.status_code == 200 and by_bridge.get_json()["display_name"] == "Ada"
    assert api.bridge("users/get", {}).status_code == 400  # the bridge names the user
    mine = people.as_user(ada, "users/get", {})
    assert mine.status_code == 200 and mine.get_json() == by_bridge.get_json()
    assert people.as_user(ada, "users/get", {"user_id": ada.user_id}).get_json()["user_id"] == ada.user_id
    # Another user's ID answers byte for byte as one never made.
    other = people.as_user(ada, "users/get", {"user_id": bob.user_id})
    never = people.as_user(ada, "users/get", {"user_id": "usr_" + "0" * 22})
    assert other.status_code == never.status_code == 404
    assert other.get_data() == never.get_data()
    assert api.bridge("users/get", {"user_id": "usr_" + "0" * 22}).status_code == 404
    assert api.bridge("users/get", {"user_id": "agt_" + "0" * 22}).status_code == 404


def test_list_pages_and_filters_by_tenant(people: People, api: Api) -> None:
    made = {people.user(tenant_id="acme").user_id for _ in range(3)} | {people.user().user_id}
    acme = api.bridge("users/list", {"tenant_id": "acme"}).get_json()
    assert {u["tenant_id"] for u in acme["users"]} == {"acme"} and len(acme["users"]) == 3
    seen: list[str] = []
    token = None
    while True:
        body: dict[str, Any] = {"page_size": 2}
        if token:
            body["page_token"] = token
        page = api.bridge("users/list", body).get_json()
        assert len(page["users"]) <= 2
        seen += [u["user_id"] for u in page["users"]]
        token = page["next_page_token"]
        if not token:
            break
    assert sorted(seen) == sorted(made) and len(seen) == 4
    assert api.bridge("users/list", {"page_token": "garbage"}).status_code == 400
    assert api.bridge("users/list", {"page_size": 0}).status_code == 400


def test_update_renames_and_disables_with_audit(people: People, api: Api) -> None:
    ada = people.user(display_name="Ada")
    renamed = api.bridge("users/update", {"user_id": ada.user_id, "display_name": "Ada L."})
    assert renamed.status_code == 200 and renamed.get_json()["display_name"] == "Ada L."
    assert api.bridge("users/update", {"user_id": ada.user_id, "disabled": True}).get_json()["disabled"] is True
    changes = [e["target"]["changes"] for e in people.events("user.update")]
    assert changes == [["disabled"], ["display_name"]]
    assert api.bridge("users/update", {"user_id": "usr_" + "0" * 22, "disabled": True}).status_code == 404
    assert api.bridge("users/update", {"user_id": ada.user_id, "tenant_id": "x"}).status_code == 400
    assert api.bridge("users/update", {"user_id": ada.user_id, "disabled": "yes"}).status_code == 400


def test_bridge_only_routes_refuse_agents_and_users(people: People, api: Api) -> None:
    ada = people.user()
    agent = people.agent()
    for route, body in (
        ("users/create", {"firebase_uid": "someone"}),
        ("users/list", {}),
        ("users/update", {"user_id": ada.user_id, "display_name": "x"}),
    ):
        assert api.device(agent.key, route, body).status_code == 403, route
        assert people.as_user(ada, route, body).status_code == 403, route
    assert api.device(agent.key, "users/get", {"user_id": ada.user_id}).status_code == 403
    assert api.bridge("users/get", {"user_id": ada.user_id}).get_json()["display_name"] is None  # nothing changed


# ---------------------------------------------------------------- the user credential


def test_a_registered_users_id_token_is_its_credential(people: People) -> None:
    ada = people.user()
    answer = people.as_user(ada, "users/get")
    assert answer.status_code == 200 and answer.get_json()["user_id"] == ada.user_id
    assert claims_of(ada.token)["sub"] == ada.uid


def test_bad_id_tokens_are_one_401(people: People, api: Api) -> None:
    ada = people.user()
    uid_unregistered, token_unregistered = sign_up(people.auth_host)
    head, payload, signature = ada.token.split(".")
    flipped = payload[:-3] + ("A" if payload[-3] != "A" else "B") + payload[-2:]
    other_project = unsigned_jwt(
        emulator_claims(ada.uid, aud="another-project", iss="https://securetoken.google.com/another-project")
    )
    cases = {
        "unregistered Firebase account": token_unregistered,
        "payload tampered": f"{head}.{flipped}.{signature}",
        "another project": other_project,
        "garbage": "not-a-token",
        "garbage with dots": "a.b.c",
        "empty claims": unsigned_jwt({}),
        "expired two minutes ago": unsigned_jwt(emulator_claims(ada.uid, exp=int(time.time()) - 120)),
        "no exp": unsigned_jwt({k: v for k, v in emulator_claims(ada.uid).items() if k != "exp"}),
    }
    texts = set()
    for case, token in cases.items():
        answer = api.call("users/get", {}, {"authorization": f"Bearer {token}"})
        assert answer.status_code == 401, (case, answer.get_json())
        texts.add(refused_401(answer))
    assert len(texts) == 1, texts  # one message for all: no oracle
    assert uid_unregistered != ada.uid


def test_an_expired_id_token_is_401(people: People, api: Api) -> None:
    """With FIREBASE_AUTH_EMULATOR_HOST set firebase-admin checks neither signature nor exp: the service checks exp."""
    ada = people.user()
    recent = unsigned_jwt(emulator_claims(ada.uid))
    assert api.call("users/get", {}, {"authorization": f"Bearer {recent}"}).status_code == 200  # hand-made, valid
    expired = unsigned_jwt(emulator_claims(ada.uid, iat=1_600_000_000, auth_time=1_600_000_000, exp=1_600_003_600))
    refused_401(api.call("users/get", {}, {"authorization": f"Bearer {expired}"}))


def test_a_disabled_user_is_401_and_reenabled_200(people: People, api: Api) -> None:
    ada = people.user()
    people.disable_user(ada)
    refused_401(people.as_user(ada, "users/get"))
    refused_401(people.as_user(ada, "users/delegate/list"))
    people.disable_user(ada, disabled=False)
    assert people.as_user(ada, "users/get").status_code == 200


def test_a_user_token_on_a_route_for_agents_is_403(people: People, api: Api) -> None:
    ada = people.user()
    for route, body in (
        ("secrets/get", {"name": "x"}),
        ("agents/get", {}),
        ("authz/check", {"subject": ada.subject, "action": "read", "resource": "doc:1"}),
        ("authz/write", {"writes": []}),
        ("device/list", {}),
    ):
        answer = people.as_user(ada, route, body)
        assert answer.status_code == 403 and answer.get_json()["error"] == "forbidden", (route, answer.get_json())


def test_a_user_token_beside_another_credential_is_ambiguous(people: People, api: Api) -> None:
    ada = people.user()
    answer = api.call("users/get", {}, {**ada.headers, "x-agentpack-key": "apkb_whatever"})
    assert answer.status_code == 400 and answer.get_json()["error"] == "ambiguous_credentials"


# ---------------------------------------------------------------- disabling cascades


def test_disabling_a_user_cascades_at_once(people: People, api: Api) -> None:
    ada = people.user()
    agent = people.agent(scopes=["authz:check", "read", "write"])
    grant = people.grant(ada, agent, ["read", "write"])
    people.write("default", ("doc:1", "owner", ada.subject))
    token = people.exchanged(agent, ada)
    question = {"action": "read", "resource": "doc:1"}
    acting = {"subject": agent.subject, "on_behalf_of": ada.subject, **question}
    assert people.check("default", **acting)
    assert people.check("default", subject=ada.subject, **question)
    assert people.check("default", token=token, **question)
    assert people.introspect(token)["active"] is True

    people.disable_user(ada)
    assert not people.check("default", **acting)
    assert not people.check("default", subject=ada.subject, **question)
    assert not people.check("default", token=token, **question)
    assert people.introspect(token) == {"active": False}
    refused = people.exchange(agent, ada.token)
    assert refused.status_code == 400 and refused.get_json()["error"] == "invalid_request"
    refused_401(people.as_user(ada, "users/get"))
    # The grant itself was not touched: re-enabling restores what was not revoked or expired.
    assert api.bridge("users/delegate/list", {}).status_code == 403
    people.disable_user(ada, disabled=False)
    assert people.check("default", **acting)
    assert people.check("default", token=token, **question)
    assert grant["grant_id"].startswith("ugr_")


def test_a_user_of_another_tenant_reads_only_itself(people: People, api: Api) -> None:
    ada, eve = people.user(tenant_id="acme"), people.user(tenant_id="evil")
    assert people.as_user(eve, "users/get", {"user_id": ada.user_id}).status_code == 404
    assert people.as_user(ada, "users/get").get_json()["tenant_id"] == "acme"


def test_a_user_token_with_a_delegation_header_is_403(people: People, api: Api) -> None:
    ada = people.user()
    answer = api.call("users/get", {}, {**ada.headers, "x-agentpack-delegation": "dlg_" + "0" * 44})
    assert answer.status_code == 403 and answer.get_json()["error"] == "forbidden"


def test_grants_show_in_the_agents_audit_trail(people: People, api: Api) -> None:
    ada, agent = people.user(), people.agent()
    people.grant(ada, agent, ["read"])
    trail = api.bridge("audit/list", {"agent_id": agent.agent_id}).get_json()["events"]
    assert [e["action"] for e in trail][:2] == ["user_delegation.grant", "device.issue"]
