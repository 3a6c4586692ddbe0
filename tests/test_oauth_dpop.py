"""DPoP (RFC 9449): tokens bound to an Ed25519 key at the token endpoint, and proofs on our routes."""

from __future__ import annotations

import time
from typing import Any

import pytest

from shared import jws
from tests.conftest import Api, function_client
from tests.oauth_support import (
    FORM,
    ISSUER,
    JWT_BEARER,
    ROUTE,
    TOKEN_URL,
    KeyPair,
    assertion,
    basic,
    dpop_proof,
    encode,
    introspect,
    key_pair,
    new_client,
    parts,
    secret_key,
    token,
    use,
    written,
)

ROUTE_URL = f"{ISSUER}/{ROUTE}"


def _bound(api: Api) -> tuple[str, str, KeyPair, str]:
    """``(agent, secret, dpop key, bound access token)``."""
    agent = new_client(api)
    secret, _ = secret_key(api, agent)
    holder = KeyPair.new()
    answer = token(
        {"grant_type": "client_credentials"}, {**basic(agent, secret), "DPoP": dpop_proof(holder, TOKEN_URL)}
    )
    assert answer.status_code == 200, answer.get_json()
    return agent, secret, holder, str(answer.get_json()["access_token"])


def test_a_proof_on_the_token_request_binds_the_token(api: Api) -> None:
    agent = new_client(api)
    secret, _ = secret_key(api, agent)
    holder = KeyPair.new()
    answer = token(
        {"grant_type": "client_credentials"}, {**basic(agent, secret), "DPoP": dpop_proof(holder, TOKEN_URL)}
    )
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["token_type"] == "DPoP"
    access = answer.get_json()["access_token"]
    assert parts(access)[1]["cnf"] == {"jkt": jws.thumbprint(holder.public)}
    assert introspect(access)["token_type"] == "DPoP"
    proof = dpop_proof(holder, ROUTE_URL, access_token=access)
    assert use(access, scheme="DPoP", proof=proof).status_code == 200


def test_a_bound_token_is_refused_as_bearer_or_without_a_proof(api: Api) -> None:
    _, _, holder, access = _bound(api)
    assert use(access).status_code == 401
    assert use(access, proof=dpop_proof(holder, ROUTE_URL, access_token=access)).status_code == 401  # Bearer + proof
    assert use(access, scheme="DPoP").status_code == 401


def _proofs(holder: KeyPair, access: str) -> dict[str, str]:
    now = int(time.time())
    other = KeyPair.new()
    return {
        "by another key": dpop_proof(other, ROUTE_URL, access_token=access),
        "wrong htm": dpop_proof(holder, ROUTE_URL, method="GET", access_token=access),
        "wrong htu (another route)": dpop_proof(holder, f"{ISSUER}/agents/list", access_token=access),
        "wrong htu (another host)": dpop_proof(holder, f"https://evil.example/{ROUTE}", access_token=access),
        "wrong htu (the token endpoint)": dpop_proof(holder, TOKEN_URL, access_token=access),
        "wrong ath": dpop_proof(holder, ROUTE_URL, access_token=access + "x"),
        "no ath": dpop_proof(holder, ROUTE_URL),
        "stale iat": dpop_proof(holder, ROUTE_URL, access_token=access, iat=now - 120),
        "future iat": dpop_proof(holder, ROUTE_URL, access_token=access, iat=now + 120),
        "private key in the jwk": holder.sign(
            {"typ": "dpop+jwt", "alg": "EdDSA", "jwk": holder.private_jwk()},
            {"jti": "j1", "htm": "POST", "htu": ROUTE_URL, "iat": now, "ath": _ath(access)},
        ),
        "typ JWT": holder.sign(
            {"typ": "JWT", "alg": "EdDSA", "jwk": holder.jwk()},
            {"jti": "j2", "htm": "POST", "htu": ROUTE_URL, "iat": now, "ath": _ath(access)},
        ),
        "jwk of another key": other.sign(
            {"typ": "dpop+jwt", "alg": "EdDSA", "jwk": holder.jwk()},
            {"jti": "j3", "htm": "POST", "htu": ROUTE_URL, "iat": now, "ath": _ath(access)},
        ),
        "garbage": "not-a-proof",
        "two proofs": dpop_proof(holder, ROUTE_URL, access_token=access)
        + ", "
        + dpop_proof(holder, ROUTE_URL, access_token=access),
    }


def _ath(access: str) -> str:
    from shared import dpop

    return dpop.token_hash(access)


PROOF_CASES = list(_proofs(KeyPair.new(), "a.b.c"))


@pytest.mark.parametrize("case", PROOF_CASES)
def test_a_bad_proof_is_refused_on_our_routes(api: Api, case: str) -> None:
    _, _, holder, access = _bound(api)
    answer = use(access, scheme="DPoP", proof=_proofs(holder, access)[case])
    assert answer.status_code == 401, answer.get_json()
    assert answer.get_json()["error"] == "unauthenticated"
    assert use(access, scheme="DPoP", proof=dpop_proof(holder, ROUTE_URL, access_token=access)).status_code == 200


def test_a_replayed_proof_is_refused_on_our_routes(api: Api) -> None:
    _, _, holder, access = _bound(api)
    proof = dpop_proof(holder, ROUTE_URL, access_token=access)
    assert use(access, scheme="DPoP", proof=proof).status_code == 200
    assert use(access, scheme="DPoP", proof=proof).status_code == 401
    assert use(access, scheme="DPoP", proof=dpop_proof(holder, ROUTE_URL, access_token=access)).status_code == 200


def test_the_token_endpoint_refuses_a_replayed_or_malformed_proof(api: Api) -> None:
    agent = new_client(api)
    secret, _ = secret_key(api, agent)
    holder = KeyPair.new()
    proof = dpop_proof(holder, TOKEN_URL)
    grant = {"grant_type": "client_credentials"}
    assert token(grant, {**basic(agent, secret), "DPoP": proof}).status_code == 200
    now = int(time.time())
    for bad in (
        proof,  # replayed
        "garbage",
        dpop_proof(holder, ROUTE_URL),  # for another URL
        dpop_proof(holder, TOKEN_URL, method="GET"),
        dpop_proof(holder, TOKEN_URL, iat=now - 300),
        holder.sign({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": holder.private_jwk()}, {"jti": "x", "htm": "POST"}),
        dpop_proof(holder, TOKEN_URL) + "," + dpop_proof(holder, TOKEN_URL),
    ):
        before = written()
        answer = token(grant, {**basic(agent, secret), "DPoP": bad})
        body = answer.get_json()
        assert answer.status_code == 400, body
        assert body["error"] == "invalid_dpop_proof" and set(body) == {"error", "error_description"}
        assert written() == before


def test_two_dpop_headers_at_the_token_endpoint_are_refused(api: Api) -> None:
    agent = new_client(api)
    secret, _ = secret_key(api, agent)
    holder = KeyPair.new()
    headers: list[tuple[str, str]] = [
        *basic(agent, secret).items(),
        ("DPoP", dpop_proof(holder, TOKEN_URL)),
        ("DPoP", dpop_proof(holder, TOKEN_URL)),
    ]
    answer = function_client("oauth_token").post(
        "/", data=encode({"grant_type": "client_credentials"}), content_type=FORM, headers=headers
    )
    assert answer.status_code == 400 and answer.get_json()["error"] == "invalid_dpop_proof"


def test_a_bound_refresh_family_needs_its_key(api: Api) -> None:
    agent = new_client(api)
    secret, _ = secret_key(api, agent)
    pair, kid = key_pair(api, agent)
    holder = KeyPair.new()
    answer = token(
        {"grant_type": JWT_BEARER, "assertion": assertion(pair, kid, agent)}, {"DPoP": dpop_proof(holder, TOKEN_URL)}
    )
    assert answer.status_code == 200 and answer.get_json()["token_type"] == "DPoP"
    refresh = answer.get_json()["refresh_token"]
    grant = {"grant_type": "refresh_token", "refresh_token": refresh}
    for headers in ({}, {"DPoP": dpop_proof(KeyPair.new(), TOKEN_URL)}):
        refused = token(grant, {**basic(agent, secret), **headers})
        assert refused.status_code == 400 and refused.get_json()["error"] == "invalid_grant"
    answer = token(grant, {**basic(agent, secret), "DPoP": dpop_proof(holder, TOKEN_URL)})
    assert answer.status_code == 200, answer.get_json()
    renewed: dict[str, Any] = answer.get_json()
    assert renewed["token_type"] == "DPoP"
    assert parts(renewed["access_token"])[1]["cnf"] == {"jkt": jws.thumbprint(holder.public)}
