"""Helpers for the OAuth tests: agents with scopes, keys, assertions, DPoP proofs, forged tokens.

Everything here goes through the real functions-framework apps and the real
emulator; forged tokens are built by hand with the repo's own JWS helpers so a
test says exactly which byte it changed.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from shared import crypto, jws, records, store
from tests.conftest import BRIDGE_KEY, DEV_ENV, Api, function_client

ISSUER = "http://127.0.0.1:8000"  # AGENTPACK_ISSUER's default in the tests (no PORT, no variable)
TOKEN_URL = ISSUER + "/oauth/token"
FORM = "application/x-www-form-urlencoded"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ROUTE = "agents/get"  # a route an agent's access token may call for itself
SIGNING_KID, SIGNING_SEED_TEXT = next(iter(json.loads(DEV_ENV["AGENTPACK_TOKEN_SIGNING_KEYS"]).items()))
SIGNING_SEED = jws.b64decode(SIGNING_SEED_TEXT)
CAPABILITY_KID = next(iter(json.loads(DEV_ENV["AGENTPACK_CAPABILITY_PUBLIC_KEYS"])))


@dataclass(frozen=True)
class KeyPair:
    """An Ed25519 key pair held by a test (a client's private_key_jwt key, or a DPoP key)."""

    seed: bytes
    public: bytes

    @classmethod
    def new(cls) -> KeyPair:
        seed, public = crypto.new_signing_key()
        return cls(seed, public)

    @property
    def public_b64(self) -> str:
        return jws.b64encode(self.public)

    def jwk(self) -> dict[str, str]:
        return jws.okp_jwk(self.public)

    def private_jwk(self) -> dict[str, str]:
        return {**self.jwk(), "d": jws.b64encode(self.seed)}

    def sign(self, header: dict[str, Any], claims: dict[str, Any]) -> str:
        return jws.sign(self.seed, header, claims)


# ---------------------------------------------------------------- agents and keys


def new_client(api: Api, scopes: list[str] | None = None, tenant_id: str | None = None) -> str:
    body: dict[str, Any] = {"display_name": "client", "scopes": [ROUTE, "read:users"] if scopes is None else scopes}
    if tenant_id is not None:
        body["tenant_id"] = tenant_id
    answer = api.bridge("agents/create", body)
    assert answer.status_code == 201, answer.get_json()
    return str(answer.get_json()["agent_id"])


def new_public_client(api: Api) -> str:
    answer = api.bridge("agents/create", {"display_name": "public", "scopes": [ROUTE], "public": True})
    assert answer.status_code == 201, answer.get_json()
    return str(answer.get_json()["agent_id"])


def secret_key(api: Api, agent_id: str, **extra: Any) -> tuple[str, str]:
    """``(device_key, key_id)`` of a new secret device key: a client secret."""
    issued = api.new_key(agent_id, **extra)
    return str(issued["device_key"]), str(issued["key_id"])


def key_pair(api: Api, agent_id: str, **extra: Any) -> tuple[KeyPair, str]:
    """A new key pair registered for ``agent_id``: ``(pair, key_id)``; the key ID is the assertions' kid."""
    pair = KeyPair.new()
    issued = api.new_key(agent_id, public_key=pair.public_b64, **extra)
    assert "device_key" not in issued
    return pair, str(issued["key_id"])


def update_agent(api: Api, agent_id: str, **fields: Any) -> None:
    answer = api.bridge("agents/update", {"agent_id": agent_id, **fields})
    assert answer.status_code == 200, answer.get_json()


def revoke_key(api: Api, key_id: str) -> None:
    answer = api.bridge("device/revoke", {"key_id": key_id})
    assert answer.status_code == 200, answer.get_json()


# ---------------------------------------------------------------- assertions and proofs


def assertion(
    pair: KeyPair,
    key_id: str,
    agent_id: str,
    *,
    aud: Any = TOKEN_URL,
    exp_in: int = 300,
    header: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    now = int(time.time())
    body: dict[str, Any] = {
        "iss": agent_id,
        "sub": agent_id,
        "aud": aud,
        "iat": now,
        "exp": now + exp_in,
        "jti": secrets.token_urlsafe(16),
    }
    body.update(claims)
    return pair.sign(header if header is not None else {"alg": "EdDSA", "kid": key_id, "typ": "JWT"}, body)


def dpop_proof(
    pair: KeyPair,
    url: str,
    *,
    method: str = "POST",
    access_token: str | None = None,
    iat: int | None = None,
    jti: str | None = None,
    **extra: Any,
) -> str:
    claims: dict[str, Any] = {
        "jti": jti or secrets.token_urlsafe(16),
        "htm": method,
        "htu": url,
        "iat": int(time.time()) if iat is None else iat,
    }
    if access_token is not None:
        from shared import dpop

        claims["ath"] = dpop.token_hash(access_token)
    claims.update(extra)
    return pair.sign({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": pair.jwk()}, claims)


# ---------------------------------------------------------------- requests


def encode(data: dict[str, str] | list[tuple[str, str]]) -> str:
    return urllib.parse.urlencode(data)


def post_form(
    function: str,
    data: dict[str, str] | list[tuple[str, str]] | str | bytes,
    headers: dict[str, str] | None = None,
) -> Any:
    """POST a form body to one function (``oauth_token``, ``oauth_introspect``, ``oauth_revoke``)."""
    body = data if isinstance(data, str | bytes) else encode(data)
    return function_client(function).post("/", data=body, content_type=FORM, headers=headers or {})


def token(data: dict[str, str] | list[tuple[str, str]] | str, headers: dict[str, str] | None = None) -> Any:
    return post_form("oauth_token", data, headers)


def basic(client_id: str, secret: str) -> dict[str, str]:
    import base64

    pair = f"{urllib.parse.quote_plus(client_id)}:{urllib.parse.quote_plus(secret)}"
    return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}


def client_credentials(agent_id: str, secret: str, **extra: str) -> Any:
    return token({"grant_type": "client_credentials", **extra}, basic(agent_id, secret))


def access_token_for(agent_id: str, secret: str, **extra: str) -> str:
    answer = client_credentials(agent_id, secret, **extra)
    assert answer.status_code == 200, answer.get_json()
    return str(answer.get_json()["access_token"])


def login(pair: KeyPair, key_id: str, agent_id: str, **extra: str) -> dict[str, Any]:
    """The jwt-bearer grant: an access token and a refresh token."""
    answer = token({"grant_type": JWT_BEARER, "assertion": assertion(pair, key_id, agent_id), **extra})
    assert answer.status_code == 200, answer.get_json()
    return dict(answer.get_json())


def use(access_token: str, route: str = ROUTE, *, scheme: str = "Bearer", proof: str | None = None) -> Any:
    """Call one of agentpack's own routes with an access token."""
    headers = {"Authorization": f"{scheme} {access_token}"}
    if proof is not None:
        headers["DPoP"] = proof
    return function_client(route.replace("/", "_")).post("/", json={}, headers=headers)


def introspect(access_token: str) -> dict[str, Any]:
    answer = post_form("oauth_introspect", {"token": access_token}, {"x-agentpack-key": BRIDGE_KEY})
    assert answer.status_code == 200, answer.get_json()
    return dict(answer.get_json())


# ---------------------------------------------------------------- tokens


def parts(compact: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, claims, signature = compact.split(".")
    return json.loads(jws.b64decode(header)), json.loads(jws.b64decode(claims)), signature


def forge(claims: dict[str, Any], header: dict[str, Any] | None = None, seed: bytes = SIGNING_SEED) -> str:
    """A token signed by ``seed`` (by default the real signing key: a valid signature over what we chose)."""
    return jws.sign(seed, header or {"alg": "EdDSA", "typ": "at+jwt", "kid": SIGNING_KID}, claims)


def raw_token(header_json: bytes, claims_json: bytes, seed: bytes = SIGNING_SEED) -> str:
    """A token over exact JSON bytes (duplicate members and all), signed by ``seed``."""
    signing_input = jws.b64encode(header_json) + "." + jws.b64encode(claims_json)
    return signing_input + "." + jws.b64encode(crypto.sign(seed, signing_input.encode("ascii")))


# ---------------------------------------------------------------- what was written


WATCHED = (records.AUDIT_EVENTS, records.SPENT_ASSERTIONS, records.REVOKED_TOKENS, records.REFRESH_FAMILIES)


def written() -> dict[str, int]:
    """How many documents each collection a token request may write holds now."""
    return {name: store.count(name) for name in WATCHED}


def audit_actions(action: str) -> list[dict[str, Any]]:
    answer = function_client("audit_list").post(
        "/", json={"action": action, "page_size": 100}, headers={"x-agentpack-key": BRIDGE_KEY}
    )
    assert answer.status_code == 200, answer.get_json()
    return list(answer.get_json()["events"])
