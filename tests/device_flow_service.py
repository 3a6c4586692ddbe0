"""A served agentpack (``scripts/serve`` on a free port, emulators of its own) and the device flow's calls.

For the tests of the activation page and of ``agentpack login --device``: ``service`` is a
module-scoped fixture; a test module imports it to get its own server.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from scripts import emulator
from shared import records
from tests.conftest import BRIDGE_KEY
from tests.local_server import banner, clean_env, own_emulator_ports, post, serve, stop

DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
PASSWORD = "correct-horse-battery"


@dataclass
class Service:
    base: str
    auth: str  # host:port of the server's Auth emulator
    firestore: str  # host:port of the server's Firestore emulator
    people: int = field(default=0)

    def bridge(self, route: str, body: dict[str, Any]) -> dict[str, Any]:
        status, answer, _ = post(f"{self.base}/{route}", body, {"x-agentpack-key": BRIDGE_KEY})
        assert status in (200, 201), (route, status, answer)
        return answer

    def public_agent(self, name: str, tenant_id: str | None = None, scopes: tuple[str, ...] = ("read", "write")) -> str:
        body: dict[str, Any] = {"display_name": name, "scopes": list(scopes), "public": True}
        if tenant_id is not None:
            body["tenant_id"] = tenant_id
        return str(self.bridge("agents/create", body)["agent_id"])

    def person(self, tenant_id: str | None = None, registered: bool = True) -> Person:
        """A Firebase user of the Auth emulator, registered here (``users/create``) in ``tenant_id``."""
        self.people += 1
        email = f"person{self.people}@example.com"
        url = f"http://{self.auth}/identitytoolkit.googleapis.com/v1/accounts:signUp?key=any"
        body = {"email": email, "password": PASSWORD, "returnSecureToken": True}
        request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            signed_up = json.loads(answer.read())
        if not registered:
            return Person(email, "", str(signed_up["idToken"]))
        user = self.bridge("users/create", {"firebase_uid": signed_up["localId"], **_maybe(tenant_id=tenant_id)})
        return Person(email, str(user["user_id"]), str(signed_up["idToken"]))

    def start(self, client_id: str, scope: str | None = None) -> dict[str, Any]:
        status, answer = self.form("oauth/device_authorization", {"client_id": client_id, **_maybe(scope=scope)})
        assert status == 200, answer
        return answer

    def poll(self, client_id: str, device_code: str) -> tuple[int, dict[str, Any]]:
        return self.form("oauth/token", {"grant_type": DEVICE_CODE, "device_code": device_code, "client_id": client_id})

    def form(self, route: str, fields: dict[str, str]) -> tuple[int, dict[str, Any]]:
        data = urllib.parse.urlencode(fields).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        try:
            with urllib.request.urlopen(urllib.request.Request(f"{self.base}/{route}", data, headers), timeout=15) as a:
                return a.status, json.loads(a.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def as_person(self, person: Person, route: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        status, answer, _ = post(f"{self.base}/{route}", body, {"Authorization": f"Bearer {person.id_token}"})
        return status, answer

    def expire(self, device_code: str) -> None:
        """Move the authorization's ``expires_at`` into the past, in the server's own datastore."""
        self._expire(device_code[:64])  # a device code starts with its authorization's document ID

    def expire_by_user_code(self, user_code: str) -> None:
        self._expire(records.device_authorization_path(user_code.replace("-", "")).rsplit("/", 1)[1])

    def _expire(self, document: str) -> None:
        url = (
            f"http://{self.firestore}/v1/projects/{emulator.PROJECT}/databases/(default)/documents/"
            f"{records.DEVICE_AUTHORIZATIONS}/{document}?updateMask.fieldPaths=expires_at&currentDocument.exists=true"
        )
        body = {"fields": {"expires_at": {"timestampValue": "2020-01-01T00:00:00Z"}}}
        headers = {"Content-Type": "application/json", "Authorization": "Bearer owner"}  # the emulator's admin
        request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="PATCH")
        urllib.request.urlopen(request, timeout=10).close()


@dataclass(frozen=True)
class Person:
    email: str
    user_id: str
    id_token: str


def _maybe(**values: str | None) -> dict[str, str]:
    return {name: value for name, value in values.items() if value is not None}


@pytest.fixture(scope="module")
def service() -> Iterator[Service]:
    ports = own_emulator_ports()
    port = emulator.free_port()
    server = serve(clean_env({"PORT": str(port), **ports}))
    try:
        line = banner(server)
        assert "serving every route" in line, line
        yield Service(
            base=f"http://127.0.0.1:{port}",
            auth=f"127.0.0.1:{ports['AGENTPACK_AUTH_EMULATOR_PORT']}",
            firestore=f"127.0.0.1:{ports['AGENTPACK_FIRESTORE_EMULATOR_PORT']}",
        )
    finally:
        assert stop(server) == 0
