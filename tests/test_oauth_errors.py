"""Every error code of /oauth/token's grants (RFC 6749 §5.2, RFC 8707), and the caching headers.

Each refusal is checked for its status, its code, the ``{"error", "error_description"}``
shape and ``Cache-Control: no-store``; every ``invalid_client`` is the same 401 with the
same text, with a ``Basic`` challenge exactly when the client used HTTP Basic.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from shared import clock, ids, keys
from tests.conftest import Api, forged_device_key, function_client
from tests.oauth_support import (
    ASSERTION_TYPE,
    ISSUER,
    JWT_BEARER,
    ROUTE,
    TOKEN_URL,
    KeyPair,
    access_token_for,
    assertion,
    basic,
    client_credentials,
    key_pair,
    login,
    new_client,
    new_public_client,
    parts,
    post_form,
    revoke_key,
    secret_key,
    token,
    update_agent,
    use,
    written,
)


def refused(answer: Any, status: int, code: str) -> dict[str, Any]:
    body = answer.get_json()
    assert answer.status_code == status, body
    assert set(body) == {"error", "error_description"}, body
    assert body["error"] == code, body
    assert isinstance(body["error_description"], str) and body["error_description"]
    assert answer.headers["Cache-Control"] == "no-store"
    return dict(body)


# ---------------------------------------------------------------- unsupported_grant_type, invalid_request


@pytest.mark.parametrize("grant_type", ["password", "authorization_code", "CLIENT_CREDENTIALS", "", "implicit"])
def test_an_unknown_grant_type_is_unsupported_grant_type(api: Api, grant_type: str) -> None:
    agent = new_client(api)
    secret, _ = secret_key(api, agent)
    refused(token({"grant_type": grant_type}, basic(agent, secret)), 400, "unsupported_grant_type")


def test_a_missing_grant_type_is_invalid_request(api: Api) -> None:
    agent = new_client(api)
    secret, _ = secret_key(api, agent)
    body = refused(token({"scope": ROUTE}, basic(agent, secret)), 400, "invalid_request")
    assert "grant_type" in body["error_description"]


@pytest.mark.parametrize("name", ["grant_type", "scope", "client_id", "resource"])
def test_a_parameter_sent_twice_is_invalid_request(api: Api, name: str) -> None:
    agent = new_client(api)
    secret, _ = secret_key(api, agent)
    values = {"grant_type": "client_credentials", "scope": ROUTE, "client_id": agent, "resource": ISSUER}
    form = [*values.items(), (name, values[name])]
    before = written()
    refused(token(form, basic(agent, secret)), 400, "invalid_request")
    assert written() == before


def test_a_missing_assertion_or_refresh_token_is_invalid_request(api: Api) -> None:
    agent = new_client(api)
    secret, _ = secret_key(api, agent)
    refused(token({"grant_type": JWT_BEARER}), 400, "invalid_request")
    refused(token({"grant_type": "refresh_token"}, basic(agent, secret)), 400, "invalid_request")


def test_two_client_authentication_methods_are_invalid_request(api: Api) -> None:
    agent = new_client(api)
    secret, _ = secret_key(api, agent)
    pair, kid = key_pair(api, agent)
    grant = {"grant_type": "client_credentials"}
    refused(token({**grant, "client_secret": secret, "client_id": agent}, basic(agent, secret)), 400, "invalid_request")
    both = {
        **grant,
        "client_id": agent,
        "client_secret": secret,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion(pair, kid, agent),
    }
    refused(token(both), 400, "invalid_request")
    with_assertion = {"grant_type": JWT_BEARER, "assertion": assertion(pair, kid, agent), "client_secret": secret}
    refused(token(with_assertion), 400, "invalid_request")


# ---------------------------------------------------------------- invalid_client: one answer for all


Case = Callable[[Api, str, str, KeyPair, str], tuple[dict[str, str], dict[str, str]]]


def _post(agent: str, secret: str) -> tuple[dict[str, str], dict[str, str]]:
    return {"client_id": agent, "client_secret": secret}, {}


def _jwt(agent: str, text: str, **extra: str) -> tuple[dict[str, str], dict[str, str]]:
    return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": text, **extra}, {}


def _wrong_secret(api: Api, agent: str, secret: str, pair: KeyPair, kid: str) -> tuple[dict[str, str], dict[str, str]]:
    name = keys.parse_device_key(secret)
    assert name is not None
    # the right key ID and a valid checksum, but not the secret
    other = forged_device_key(name.key_id)
    return {}, basic(agent, other)


def _wrong_secret_post(api: Api, agent: str, secret: str, pair: KeyPair, kid: str) -> Any:
    name = keys.parse_device_key(secret)
    assert name is not None
    return _post(agent, forged_device_key(name.key_id))


def _revoked(api: Api, agent: str, secret: str, pair: KeyPair, kid: str) -> Any:
    revoke_key(api, str(keys.parse_device_key(secret).key_id))  # type: ignore[union-attr]
    return {}, basic(agent, secret)


def _other_agents_key(api: Api, agent: str, secret: str, pair: KeyPair, kid: str) -> Any:
    other = new_client(api)
    other_secret, _ = secret_key(api, other)
    return {}, basic(agent, other_secret)


def _disabled(api: Api, agent: str, secret: str, pair: KeyPair, kid: str) -> Any:
    update_agent(api, agent, disabled=True)
    return {}, basic(agent, secret)


def _disabled_post(api: Api, agent: str, secret: str, pair: KeyPair, kid: str) -> Any:
    update_agent(api, agent, disabled=True)
    return _post(agent, secret)


def _unknown_agent(api: Api, agent: str, secret: str, pair: KeyPair, kid: str) -> Any:
    return {}, basic(ids.new_agent_id(), secret)


def _assertion_by_another_key(api: Api, agent: str, secret: str, pair: KeyPair, kid: str) -> Any:
    return _jwt(agent, assertion(KeyPair.new(), kid, agent))


def _assertion_expired(api: Api, agent: str, secret: str, pair: KeyPair, kid: str) -> Any:
    return _jwt(agent, assertion(pair, kid, agent, exp_in=-120))


def _assertion_too_long(api: Api, agent: str, secret: str, pair: KeyPair, kid: str) -> Any:
    return _jwt(agent, assertion(pair, kid, agent, exp_in=3600 + 600))


def _assertion_wrong_aud(api: Api, agent: str, secret: str, pair: KeyPair, kid: str) -> Any:
    return _jwt(agent, assertion(pair, kid, agent, aud="https://other.example/oauth/token"))


def _assertion_wrong_iss(api: Api, agent: str, secret: str, pair: KeyPair, kid: str) -> Any:
    return _jwt(agent, assertion(pair, kid, agent, iss=new_client(api)))


def _assertion_future_iat(api: Api, agent: str, secret: str, pair: KeyPair, kid: str) -> Any:
    return _jwt(agent, assertion(pair, kid, agent, iat=int(time.time()) + 600))


def _assertion_replayed(api: Api, agent: str, secret: str, pair: KeyPair, kid: str) -> Any:
    text = assertion(pair, kid, agent)
    first = token({"grant_type": "client_credentials", **_jwt(agent, text)[0]})
    assert first.status_code == 200, first.get_json()
    return _jwt(agent, text)


def _assertion_wrong_type(api: Api, agent: str, secret: str, pair: KeyPair, kid: str) -> Any:
    return {"client_assertion_type": "urn:other", "client_assertion": assertion(pair, kid, agent)}, {}


def _assertion_revoked_key(api: Api, agent: str, secret: str, pair: KeyPair, kid: str) -> Any:
    revoke_key(api, kid)
    return _jwt(agent, assertion(pair, kid, agent))


def _assertion_hs256(api: Api, agent: str, secret: str, pair: KeyPair, kid: str) -> Any:
    import jwt

    now = time.time()
    claims = {"iss": agent, "sub": agent, "aud": ISSUER + "/oauth/token", "exp": int(now) + 60, "jti": "x1"}
    text = jwt.encode(claims, pair.public_b64, algorithm="HS256", headers={"kid": kid})
    return _jwt(agent, text)


def _assertion_garbage(api: Api, agent: str, secret: str, pair: KeyPair, kid: str) -> Any:
    return _jwt(agent, "not.a.jwt")


def _assertion_other_client_id(api: Api, agent: str, secret: str, pair: KeyPair, kid: str) -> Any:
    return _jwt(agent, assertion(pair, kid, agent), client_id=new_client(api))


def _secret_of_key_pair_kid(api: Api, agent: str, secret: str, pair: KeyPair, kid: str) -> Any:
    return {}, basic(agent, forged_device_key(kid))  # a key pair has no secret: nothing matches


CASES: dict[str, Case] = {
    "wrong secret (basic)": _wrong_secret,
    "wrong secret (post)": _wrong_secret_post,
    "revoked key": _revoked,
    "another agent's key": _other_agents_key,
    "disabled agent (basic)": _disabled,
    "disabled agent (post)": _disabled_post,
    "unknown agent": _unknown_agent,
    "assertion by another key": _assertion_by_another_key,
    "assertion expired": _assertion_expired,
    "assertion living too long": _assertion_too_long,
    "assertion for another audience": _assertion_wrong_aud,
    "assertion of another issuer": _assertion_wrong_iss,
    "assertion issued in the future": _assertion_future_iat,
    "assertion replayed": _assertion_replayed,
    "assertion of a wrong type": _assertion_wrong_type,
    "assertion by a revoked key": _assertion_revoked_key,
    "assertion HS256 with the public key": _assertion_hs256,
    "assertion garbage": _assertion_garbage,
    "assertion with another client_id": _assertion_other_client_id,
    "secret for a key pair's kid": _secret_of_key_pair_kid,
}
_descriptions: dict[str, str] = {}


@pytest.mark.parametrize("case", list(CASES))
def test_every_client_authentication_failure_is_one_invalid_client(api: Api, case: str) -> None:
    agent = new_client(api)
    secret, _ = secret_key(api, agent)
    pair, kid = key_pair(api, agent)
    form, headers = CASES[case](api, agent, secret, pair, kid)
    before = written()
    answer = token({"grant_type": "client_credentials", **form}, headers)
    body = refused(answer, 401, "invalid_client")
    if "Authorization" in headers:
        assert answer.headers.get("WWW-Authenticate", "").startswith("Basic")
    else:
        assert "WWW-Authenticate" not in answer.headers
    assert written() == before  # a refused client wrote nothing, not even an audit event
    _descriptions[case] = body["error_description"]
    assert len(set(_descriptions.values())) == 1, _descriptions  # one message for all: no oracle


def test_an_expired_secret_key_is_invalid_client(api: Api, frozen_clock: Callable[[Any], None]) -> None:
    agent = new_client(api)
    secret, _ = secret_key(api, agent, ttl_seconds=60)
    assert client_credentials(agent, secret).status_code == 200
    frozen_clock(clock.now() + timedelta(seconds=120))
    answer = client_credentials(agent, secret)
    refused(answer, 401, "invalid_client")
    assert answer.headers["WWW-Authenticate"].startswith("Basic")


def test_each_client_authentication_method_succeeds(api: Api) -> None:
    agent = new_client(api)
    secret, _ = secret_key(api, agent)
    pair, kid = key_pair(api, agent)
    grant = {"grant_type": "client_credentials"}
    for form, headers in (
        ({}, basic(agent, secret)),
        ({"client_id": agent, "client_secret": secret}, {}),
        ({"client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion(pair, kid, agent)}, {}),
        ({"client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion(pair, kid, agent, aud=ISSUER)}, {}),
    ):
        answer = token({**grant, **form}, headers)
        assert answer.status_code == 200, answer.get_json()
        assert answer.headers["Cache-Control"] == "no-store"
        assert answer.get_json()["token_type"] == "Bearer"
        assert "refresh_token" not in answer.get_json()  # client_credentials: no refresh token


# ---------------------------------------------------------------- invalid_grant


def test_a_bad_jwt_bearer_assertion_is_invalid_grant(api: Api) -> None:
    agent = new_client(api)
    pair, kid = key_pair(api, agent)
    _secret, secret_kid = secret_key(api, agent)
    used = assertion(pair, kid, agent)
    assert token({"grant_type": JWT_BEARER, "assertion": used}).status_code == 200
    before = written()
    for bad in (
        used,  # replayed
        assertion(KeyPair.new(), kid, agent),
        assertion(pair, kid, agent, exp_in=-120),
        assertion(pair, kid, agent, aud="https://other.example"),
        assertion(pair, kid, agent, sub=new_client(api)),
        assertion(pair, secret_kid, agent),  # a secret key's kid: no public key to check
        "garbage",
        "a.b.c",
    ):
        refused(token({"grant_type": JWT_BEARER, "assertion": bad}), 400, "invalid_grant")
    after = written()
    after["audit_events"] -= 1  # the agents/create of sub=new_client above
    assert after == before


def test_jwt_bearer_refused_for_a_disabled_agent_or_a_revoked_key(api: Api) -> None:
    agent = new_client(api)
    pair, kid = key_pair(api, agent)
    revoke_key(api, kid)
    refused(token({"grant_type": JWT_BEARER, "assertion": assertion(pair, kid, agent)}), 400, "invalid_grant")
    other = new_client(api)
    other_pair, other_kid = key_pair(api, other)
    update_agent(api, other, disabled=True)
    answer = token({"grant_type": JWT_BEARER, "assertion": assertion(other_pair, other_kid, other)})
    refused(answer, 400, "invalid_grant")


def test_an_unknown_or_malformed_refresh_token_is_invalid_grant(api: Api) -> None:
    agent = new_client(api)
    secret, kid = secret_key(api, agent)
    for presented in (
        keys.new_refresh_token(ids.new_family_id(agent, kid)),  # well-formed, never issued
        "apkr_nope",
        "x" * 200,
        "",
    ):
        answer = token({"grant_type": "refresh_token", "refresh_token": presented}, basic(agent, secret))
        refused(answer, 400, "invalid_grant")


def test_a_refresh_token_of_another_client_is_invalid_grant_and_stands(api: Api) -> None:
    owner = new_client(api)
    pair, kid = key_pair(api, owner)
    owner_secret, _ = secret_key(api, owner)
    refresh = login(pair, kid, owner)["refresh_token"]
    thief = new_client(api)
    thief_secret, _ = secret_key(api, thief)
    answer = token({"grant_type": "refresh_token", "refresh_token": refresh}, basic(thief, thief_secret))
    refused(answer, 400, "invalid_grant")
    answer = token({"grant_type": "refresh_token", "refresh_token": refresh}, basic(owner, owner_secret))
    assert answer.status_code == 200, answer.get_json()  # the owner's family was not touched


def test_a_confidential_client_must_authenticate_to_refresh(api: Api) -> None:
    agent = new_client(api)
    pair, kid = key_pair(api, agent)
    refresh = login(pair, kid, agent)["refresh_token"]
    answer = token({"grant_type": "refresh_token", "refresh_token": refresh, "client_id": agent})
    refused(answer, 401, "invalid_client")


# ---------------------------------------------------------------- unauthorized_client


def test_a_public_agent_may_not_use_client_credentials(api: Api) -> None:
    agent = new_public_client(api)
    before = written()
    refused(token({"grant_type": "client_credentials", "client_id": agent}), 400, "unauthorized_client")
    assert written() == before


def test_revoking_another_clients_token_is_unauthorized_client_and_the_token_stands(api: Api) -> None:
    owner = new_client(api)
    owner_secret, _ = secret_key(api, owner)
    pair, kid = key_pair(api, owner)
    access = access_token_for(owner, owner_secret)
    refresh = login(pair, kid, owner)["refresh_token"]
    other = new_client(api)
    other_secret, _ = secret_key(api, other)
    for held in (access, refresh):
        answer = post_form("oauth_revoke", {"token": held}, basic(other, other_secret))
        refused(answer, 400, "unauthorized_client")
    assert use(access).status_code == 200
    answer = token({"grant_type": "refresh_token", "refresh_token": refresh}, basic(owner, owner_secret))
    assert answer.status_code == 200, answer.get_json()


# ---------------------------------------------------------------- invalid_scope, invalid_target


def test_a_scope_beyond_the_agents_is_invalid_scope_never_narrowed(api: Api) -> None:
    agent = new_client(api, scopes=[ROUTE])
    secret, _ = secret_key(api, agent)
    before = written()
    for scope in ("secrets/get", f"{ROUTE} secrets/get", "bad scope!", "x" * 65):
        refused(client_credentials(agent, secret, scope=scope), 400, "invalid_scope")
    assert written() == before
    answer = client_credentials(agent, secret, scope=ROUTE)
    assert answer.status_code == 200 and answer.get_json()["scope"] == ROUTE


def test_a_scope_beyond_the_keys_is_invalid_scope(api: Api) -> None:
    agent = new_client(api, scopes=[ROUTE, "read:users"])
    secret, _ = secret_key(api, agent, scopes=["read:users"])
    refused(client_credentials(agent, secret, scope=ROUTE), 400, "invalid_scope")
    answer = client_credentials(agent, secret)
    assert answer.status_code == 200 and answer.get_json()["scope"] == "read:users"  # all it may have
    pair, kid = key_pair(api, agent, scopes=["read:users"])
    answer = token({"grant_type": JWT_BEARER, "assertion": assertion(pair, kid, agent), "scope": ROUTE})
    refused(answer, 400, "invalid_scope")


def test_an_empty_scope_gives_a_token_that_proves_only_who_it_is(api: Api) -> None:
    agent = new_client(api)
    secret, _ = secret_key(api, agent)
    answer = client_credentials(agent, secret, scope="")
    assert answer.status_code == 200 and answer.get_json()["scope"] == ""
    assert use(answer.get_json()["access_token"]).status_code == 403


@pytest.mark.parametrize(
    "resource",
    [
        "http://example.com/api",
        "not a uri",
        "ftp://x.example",
        "https://x.example/#frag",
        "https://u@x.example",
        "/rel",
    ],
)
def test_a_bad_resource_is_invalid_target(api: Api, resource: str) -> None:
    agent = new_client(api)
    secret, _ = secret_key(api, agent)
    refused(client_credentials(agent, secret, resource=resource), 400, "invalid_target")


def test_a_resource_becomes_the_audience(api: Api) -> None:
    agent = new_client(api)
    secret, _ = secret_key(api, agent)
    access = access_token_for(agent, secret, resource="https://other.example")
    assert parts(access)[1]["aud"] == "https://other.example"


# ---------------------------------------------------------------- discovery and caching


def test_jwks_is_public_for_five_minutes_and_metadata_names_every_endpoint() -> None:
    jwks = function_client("well_known_jwks_json").get("/")
    assert jwks.status_code == 200
    assert jwks.headers["Cache-Control"] == "public, max-age=300"
    (key,) = jwks.get_json()["keys"]
    assert set(key) == {"kty", "crv", "x", "kid", "use", "alg"}
    assert (key["kty"], key["crv"], key["alg"], key["use"]) == ("OKP", "Ed25519", "EdDSA", "sig")
    assert "d" not in key
    meta = function_client("well_known_oauth_authorization_server").get("/").get_json()
    assert meta["issuer"] == ISSUER
    assert meta["token_endpoint"] == ISSUER + "/oauth/token"
    assert meta["jwks_uri"] == ISSUER + "/.well-known/jwks.json"
    assert set(meta["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    }
    assert meta["dpop_signing_alg_values_supported"] == ["EdDSA"]


# ---------------------------------------------------------------- introspection and revocation


@pytest.mark.parametrize("endpoint", ["oauth_introspect", "oauth_revoke"])
def test_the_token_endpoint_is_an_assertion_audience_at_introspection_and_revocation(api: Api, endpoint: str) -> None:
    """RFC 7523 §3 and API.md: ``aud`` = the token endpoint URL or the issuer, on every endpoint a client
    authenticates at (authlib's ``PrivateKeyJWT(token_endpoint)`` signs that audience everywhere)."""
    agent = new_client(api)
    secret, _ = secret_key(api, agent)
    pair, kid = key_pair(api, agent)
    for aud in (TOKEN_URL, ISSUER, ISSUER + "/" + endpoint.replace("_", "/")):
        access = access_token_for(agent, secret)
        form = {
            "token": access,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion(pair, kid, agent, aud=aud),
        }
        answer = post_form(endpoint, form)
        assert answer.status_code == 200, (aud, answer.get_json())
    form = {
        "token": "x",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion(pair, kid, agent, aud="https://other.example"),
    }
    refused(post_form(endpoint, form), 401, "invalid_client")


@pytest.mark.parametrize("held", ["unknown", "revoked access token", "revoked refresh token"])
def test_revoking_an_unknown_or_already_revoked_token_with_private_key_jwt_is_200(api: Api, held: str) -> None:
    agent = new_client(api)
    secret, _ = secret_key(api, agent)
    pair, kid = key_pair(api, agent)
    presented = {
        "unknown": "not-a-token",
        "revoked access token": access_token_for(agent, secret),
        "revoked refresh token": login(pair, kid, agent)["refresh_token"],
    }[held]
    if held != "unknown":
        assert post_form("oauth_revoke", {"token": presented}, basic(agent, secret)).status_code == 200
    form = {
        "token": presented,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion(pair, kid, agent),
    }
    answer = post_form("oauth_revoke", form)
    assert answer.status_code == 200, answer.get_json()  # RFC 7009 §2.2


def test_the_jwt_bearer_grant_refuses_an_authorization_header_too(api: Api) -> None:
    """No other client authentication on the jwt-bearer grant: in the form (above) nor in a header."""
    agent = new_client(api)
    secret, _ = secret_key(api, agent)
    pair, kid = key_pair(api, agent)
    for headers in (basic(agent, secret), basic(agent, "wrong"), {"Authorization": "Bearer x.y.z"}):
        before = written()
        answer = token({"grant_type": JWT_BEARER, "assertion": assertion(pair, kid, agent)}, headers)
        refused(answer, 400, "invalid_request")
        assert written() == before


def test_introspection_needs_an_authenticated_caller_of_the_tokens_tenant(api: Api) -> None:
    agent = new_client(api)
    secret, _ = secret_key(api, agent)
    pair, kid = key_pair(api, agent)
    access = access_token_for(agent, secret)
    refresh = login(pair, kid, agent)["refresh_token"]
    public = new_public_client(api)  # a public agent sends only its ID: it proves nothing
    answer = post_form("oauth_introspect", {"token": access, "client_id": public})
    refused(answer, 401, "invalid_client")
    stranger = new_client(api, tenant_id="elsewhere")
    stranger_secret, _ = secret_key(api, stranger)
    for held in (access, refresh):
        answer = post_form("oauth_introspect", {"token": held}, basic(stranger, stranger_secret))
        assert answer.status_code == 200 and answer.get_json() == {"active": False}
        answer = post_form("oauth_introspect", {"token": held}, basic(agent, secret))
        assert answer.status_code == 200 and answer.get_json()["active"] is True
    refused(post_form("oauth_introspect", {"token": access}), 401, "invalid_client")


def test_an_expired_refresh_token_is_invalid_grant(api: Api, frozen_clock: Callable[[Any], None]) -> None:
    agent = new_client(api)
    secret, _ = secret_key(api, agent)
    pair, kid = key_pair(api, agent)
    refresh = login(pair, kid, agent)["refresh_token"]
    frozen_clock(clock.now() + timedelta(days=400))
    answer = token({"grant_type": "refresh_token", "refresh_token": refresh}, basic(agent, secret))
    refused(answer, 400, "invalid_grant")
