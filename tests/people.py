"""Helpers for the tests of users, their grants, relations and token exchange (issue 10).

Users are real Firebase Auth emulator accounts (the emulator is not wiped between tests, so every
sign-up uses a fresh e-mail address), registered here through the bridge. Nothing is mocked.
"""

from __future__ import annotations

import base64
import json
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

from scripts import emulator
from tests.conftest import Api, function_client

SIGN_UP = "/identitytoolkit.googleapis.com/v1/accounts:signUp?key=any"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def claims_of(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified (the test reads what the server put there)."""
    return dict(json.loads(unb64(token.split(".")[1])))


def unsigned_jwt(claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
    """A JWT shaped like the Auth emulator's own (``alg: none``, empty signature), made by hand."""
    head = header if header is not None else {"alg": "none", "typ": "JWT"}
    return f"{b64(json.dumps(head).encode())}.{b64(json.dumps(claims).encode())}."


def sign_up(host: str) -> tuple[str, str]:
    """A new Firebase account in the Auth emulator: ``(uid, id_token)``."""
    email = f"u{uuid.uuid4().hex}@example.com"
    request = urllib.request.Request(
        f"http://{host}{SIGN_UP}",
        data=json.dumps({"email": email, "password": "correct-horse", "returnSecureToken": True}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        found = json.loads(answer.read())
    return str(found["localId"]), str(found["idToken"])


def emulator_claims(uid: str, **changes: Any) -> dict[str, Any]:
    """Claims as the emulator writes them for ``uid`` (project ``emulator.PROJECT``), with ``changes``."""
    import time

    now = int(time.time())
    found: dict[str, Any] = {
        "iss": f"https://securetoken.google.com/{emulator.PROJECT}",
        "aud": emulator.PROJECT,
        "auth_time": now,
        "user_id": uid,
        "sub": uid,
        "iat": now,
        "exp": now + 3600,
        "firebase": {"identities": {}, "sign_in_provider": "password"},
    }
    found.update(changes)
    return found


@dataclass(frozen=True)
class User:
    user_id: str
    uid: str
    token: str
    tenant_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}

    @property
    def subject(self) -> str:
        return f"user:{self.user_id}"


@dataclass(frozen=True)
class Agent:
    agent_id: str
    key: str
    key_id: str
    tenant_id: str

    @property
    def subject(self) -> str:
        return f"agent:{self.agent_id}"


class People:
    """Users, agents, grants, tuples, checks and token exchange, through the real functions."""

    def __init__(self, api: Api, auth_host: str) -> None:
        self.api = api
        self.auth_host = auth_host

    def user(self, tenant_id: str = "default", display_name: str | None = None) -> User:
        uid, token = sign_up(self.auth_host)
        body: dict[str, Any] = {"firebase_uid": uid, "tenant_id": tenant_id}
        if display_name is not None:
            body["display_name"] = display_name
        answer = self.api.bridge("users/create", body)
        assert answer.status_code == 201, answer.get_json()
        return User(answer.get_json()["user_id"], uid, token, tenant_id)

    def agent(self, tenant_id: str = "default", scopes: list[str] | None = None, name: str = "agent") -> Agent:
        """An agent with a device key; by default its scopes hold every action, as an agent acting for people
        must (a token for a user carries only what both the grant and the agent's own scopes allow)."""
        held = scopes if scopes is not None else ["read", "write", "delete", "share"]
        answer = self.api.bridge("agents/create", {"display_name": name, "tenant_id": tenant_id, "scopes": held})
        assert answer.status_code == 201, answer.get_json()
        agent_id = answer.get_json()["agent_id"]
        key = self.api.new_key(agent_id)
        return Agent(agent_id, key["device_key"], key["key_id"], tenant_id)

    def as_user(self, user: User, route: str, body: Any = None) -> Any:
        return self.api.call(route, body if body is not None else {}, user.headers)

    def grant(self, user: User, agent: Agent, actions: list[str], ttl_seconds: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"agent_id": agent.agent_id, "actions": actions}
        if ttl_seconds is not None:
            body["ttl_seconds"] = ttl_seconds
        answer = self.as_user(user, "users/delegate", body)
        assert answer.status_code == 201, answer.get_json()
        return dict(answer.get_json())

    def write(self, tenant_id: str, *tuples: tuple[str, str, str]) -> dict[str, Any]:
        writes = [{"resource": r, "relation": rel, "subject": s} for r, rel, s in tuples]
        answer = self.api.bridge("authz/write", {"tenant_id": tenant_id, "writes": writes})
        assert answer.status_code == 200, answer.get_json()
        return dict(answer.get_json())

    def check(self, tenant_id: str, **question: Any) -> bool:
        """The bridge's answer to one check (any status but 200 fails the test)."""
        answer = self.api.bridge("authz/check", {"tenant_id": tenant_id, **question})
        assert answer.status_code == 200, (question, answer.status_code, answer.get_json())
        allowed = answer.get_json()["allowed"]
        assert type(allowed) is bool
        return allowed

    def disable_user(self, user: User, disabled: bool = True) -> None:
        answer = self.api.bridge("users/update", {"user_id": user.user_id, "disabled": disabled})
        assert answer.status_code == 200, answer.get_json()

    def disable_agent(self, agent: Agent, disabled: bool = True) -> None:
        answer = self.api.bridge("agents/update", {"agent_id": agent.agent_id, "disabled": disabled})
        assert answer.status_code == 200, answer.get_json()

    def exchange(self, agent: Agent | None, subject_token: str, **form: str) -> Any:
        """``/oauth/token`` with the token-exchange grant; the agent authenticates with its device key."""
        data = {"grant_type": TOKEN_EXCHANGE, "subject_token": subject_token, "subject_token_type": ID_TOKEN_TYPE}
        if agent is not None:
            data.update(client_id=agent.agent_id, client_secret=agent.key)
        data.update(form)
        return function_client("oauth_token").post("/", data=data)

    def exchanged(self, agent: Agent, user: User, **form: str) -> str:
        answer = self.exchange(agent, user.token, **form)
        assert answer.status_code == 200, answer.get_json()
        return str(answer.get_json()["access_token"])

    def introspect(self, token: str) -> dict[str, Any]:
        from tests.conftest import BRIDGE_KEY

        answer = function_client("oauth_introspect").post(
            "/", data={"token": token}, headers={"x-agentpack-key": BRIDGE_KEY}
        )
        assert answer.status_code == 200, answer.get_json()
        return dict(answer.get_json())

    def events(self, action: str) -> list[dict[str, Any]]:
        answer = self.api.bridge("audit/list", {"action": action, "page_size": 100})
        assert answer.status_code == 200, answer.get_json()
        return list(answer.get_json()["events"])
