"""Off-the-shelf OAuth and JOSE clients, unmodified, against the service on a real loopback HTTP port.

authlib's requests-based clients drive every grant and client authentication
method, revocation and introspection; PyJWT's ``PyJWKClient`` and joserfc verify
our access tokens from the published JWKS alone. The server is every route's
functions-framework app (``scripts.serve.build_app``) under werkzeug in a
thread, with ``AGENTPACK_ISSUER`` set to its own URL.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import requests
from authlib.integrations.base_client import OAuthError  # type: ignore[import-untyped]
from authlib.integrations.requests_client import AssertionSession, OAuth2Session  # type: ignore[import-untyped]
from authlib.oauth2.rfc7523 import PrivateKeyJWT  # type: ignore[import-untyped]
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet, OKPKey
from werkzeug.serving import make_server

from scripts.serve import build_app
from shared import config
from tests.conftest import Api
from tests.oauth_support import ROUTE, KeyPair, audit_actions, key_pair, new_client, parts, secret_key


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    served = make_server("127.0.0.1", 0, build_app(), threaded=True)
    thread = threading.Thread(target=served.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{served.server_port}"
    finally:
        served.shutdown()
        thread.join(timeout=10)


@pytest.fixture
def issuer(server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AGENTPACK_ISSUER", server)
    config.reset()
    return server


def _okp(pair: KeyPair) -> OKPKey:
    return OKPKey.import_key(pair.private_jwk())  # type: ignore[arg-type]


def _session(issuer: str, agent: str, secret: str, method: str, **kwargs: Any) -> Any:
    return OAuth2Session(agent, secret, token_endpoint_auth_method=method, timeout=15, **kwargs)


def _private_key_jwt_session(issuer: str, agent: str, pair: KeyPair, kid: str, **kwargs: Any) -> Any:
    # The token endpoint is the assertions' audience everywhere (RFC 7523 §3: it identifies the server),
    # also at introspection and revocation, which authlib authenticates as set here.
    method = PrivateKeyJWT(issuer + "/oauth/token", alg="EdDSA", headers={"kid": kid})
    return OAuth2Session(
        agent,
        _okp(pair),
        token_endpoint_auth_method=method,
        revocation_endpoint_auth_method=method,
        timeout=15,
        **kwargs,
    )


def _call(issuer: str, session: Any, route: str = ROUTE) -> requests.Response:
    return session.post(f"{issuer}/{route}", json={})  # type: ignore[no-any-return]


def test_metadata_names_this_server(issuer: str) -> None:
    meta = requests.get(issuer + "/.well-known/oauth-authorization-server", timeout=15).json()
    assert meta["issuer"] == issuer
    assert meta["token_endpoint"] == issuer + "/oauth/token"
    assert requests.get(meta["jwks_uri"], timeout=15).json()["keys"]


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_client_credentials_with_a_client_secret(api: Api, issuer: str, method: str) -> None:
    agent = new_client(api)
    secret, kid = secret_key(api, agent)
    session = _session(issuer, agent, secret, method, scope=ROUTE)
    got = session.fetch_token(issuer + "/oauth/token", grant_type="client_credentials")
    assert got["token_type"] == "Bearer" and got["scope"] == ROUTE and "refresh_token" not in got
    claims = parts(got["access_token"])[1]
    assert (claims["iss"], claims["aud"], claims["sub"], claims["key_id"]) == (issuer, issuer, agent, kid)
    answer = _call(issuer, session)
    assert answer.status_code == 200 and answer.json()["agent_id"] == agent
    wrong = _session(issuer, agent, secret[:-1] + ("A" if secret[-1] != "A" else "B"), method)
    with pytest.raises(OAuthError) as refused:
        wrong.fetch_token(issuer + "/oauth/token", grant_type="client_credentials")
    assert refused.value.error == "invalid_client"


def test_client_credentials_with_private_key_jwt(api: Api, issuer: str) -> None:
    agent = new_client(api)
    pair, kid = key_pair(api, agent)
    session = _private_key_jwt_session(issuer, agent, pair, kid)
    got = session.fetch_token(issuer + "/oauth/token", grant_type="client_credentials")
    assert got["token_type"] == "Bearer"
    assert parts(got["access_token"])[1]["key_id"] == kid
    assert _call(issuer, session).status_code == 200
    again = session.fetch_token(issuer + "/oauth/token", grant_type="client_credentials")  # a new jti each time
    assert again["access_token"] != got["access_token"]
    stranger = _private_key_jwt_session(issuer, agent, KeyPair.new(), kid)
    with pytest.raises(OAuthError) as refused:
        stranger.fetch_token(issuer + "/oauth/token", grant_type="client_credentials")
    assert refused.value.error == "invalid_client"


def _login(issuer: str, agent: str, pair: KeyPair, kid: str) -> dict[str, Any]:
    """The jwt-bearer grant, with authlib's own assertion session."""
    session = AssertionSession(
        token_endpoint=issuer + "/oauth/token",
        issuer=agent,
        subject=agent,
        audience=issuer + "/oauth/token",
        key=_okp(pair),
        header={"alg": "EdDSA", "kid": kid},
        default_timeout=15,
    )
    got: dict[str, Any] = dict(session.refresh_token())
    assert session.post(f"{issuer}/{ROUTE}", json={}).status_code == 200  # authlib sends the token it got
    return got


def test_the_jwt_bearer_grant_with_authlib(api: Api, issuer: str) -> None:
    agent = new_client(api)
    pair, kid = key_pair(api, agent)
    got = _login(issuer, agent, pair, kid)
    assert got["token_type"] == "Bearer" and got["refresh_token"].startswith("apkr_")
    assert parts(got["access_token"])[1]["family_id"]


def test_the_jwt_bearer_grant_with_a_joserfc_assertion_sent_by_authlib(api: Api, issuer: str) -> None:
    import secrets
    import time

    agent = new_client(api)
    pair, kid = key_pair(api, agent)
    now = int(time.time())
    claims = {"iss": agent, "sub": agent, "aud": issuer, "iat": now, "exp": now + 300, "jti": secrets.token_hex(8)}
    made = jose_jwt.encode({"alg": "EdDSA", "kid": kid}, claims, _okp(pair), algorithms=["EdDSA"])
    session = OAuth2Session(agent, token_endpoint_auth_method="none", timeout=15)
    got = session.fetch_token(
        issuer + "/oauth/token", grant_type="urn:ietf:params:oauth:grant-type:jwt-bearer", assertion=made
    )
    assert got["refresh_token"]
    with pytest.raises(OAuthError) as refused:  # the same assertion again
        session.fetch_token(
            issuer + "/oauth/token", grant_type="urn:ietf:params:oauth:grant-type:jwt-bearer", assertion=made
        )
    assert refused.value.error == "invalid_grant"


@pytest.mark.parametrize("auth", ["client_secret_basic", "private_key_jwt"])
def test_refresh_rotation_and_reuse_detection(api: Api, issuer: str, auth: str) -> None:
    agent = new_client(api)
    pair, kid = key_pair(api, agent)
    secret, _ = secret_key(api, agent)
    first = _login(issuer, agent, pair, kid)
    session = (
        _session(issuer, agent, secret, auth)
        if auth == "client_secret_basic"
        else _private_key_jwt_session(issuer, agent, pair, kid)
    )
    second = session.refresh_token(issuer + "/oauth/token", refresh_token=first["refresh_token"])
    assert second["refresh_token"] != first["refresh_token"]
    assert parts(second["access_token"])[1]["family_id"] == parts(first["access_token"])[1]["family_id"]
    assert _call(issuer, session).status_code == 200  # the session holds the new access token
    with pytest.raises(OAuthError) as spent:
        session.refresh_token(issuer + "/oauth/token", refresh_token=first["refresh_token"])
    assert spent.value.error == "invalid_grant"
    # The reuse took the whole family down: the newest refresh token and every access token of it.
    with pytest.raises(OAuthError) as revoked:
        session.refresh_token(issuer + "/oauth/token", refresh_token=second["refresh_token"])
    assert revoked.value.error == "invalid_grant"
    for access in (first["access_token"], second["access_token"]):
        answer = requests.post(f"{issuer}/{ROUTE}", json={}, headers={"Authorization": f"Bearer {access}"}, timeout=15)
        assert answer.status_code == 401
    reuse = audit_actions("token.reuse_detected")
    assert len(reuse) == 1 and reuse[0]["target"]["family_id"] == parts(first["access_token"])[1]["family_id"]


def test_revocation_and_introspection_with_authlib(api: Api, issuer: str) -> None:
    agent = new_client(api)
    secret, _ = secret_key(api, agent)
    pair, kid = key_pair(api, agent)
    session = _session(issuer, agent, secret, "client_secret_basic")
    got = session.fetch_token(issuer + "/oauth/token", grant_type="client_credentials")
    seen = session.introspect_token(issuer + "/oauth/introspect", token=got["access_token"]).json()
    assert seen["active"] is True and seen["client_id"] == agent and seen["token_type"] == "Bearer"
    revoked = session.revoke_token(issuer + "/oauth/revoke", token=got["access_token"], token_type_hint="access_token")
    assert revoked.status_code == 200
    assert session.introspect_token(issuer + "/oauth/introspect", token=got["access_token"]).json() == {"active": False}
    assert _call(issuer, session).status_code == 401
    refresh = _login(issuer, agent, pair, kid)["refresh_token"]
    by_key = _private_key_jwt_session(issuer, agent, pair, kid)
    assert by_key.introspect_token(issuer + "/oauth/introspect", token=refresh).json()["active"] is True
    assert by_key.revoke_token(issuer + "/oauth/revoke", token=refresh).status_code == 200
    assert by_key.introspect_token(issuer + "/oauth/introspect", token=refresh).json() == {"active": False}
    with pytest.raises(OAuthError) as refused:
        session.refresh_token(issuer + "/oauth/token", refresh_token=refresh)
    assert refused.value.error == "invalid_grant"
    unknown = session.revoke_token(issuer + "/oauth/revoke", token="not-a-token")
    assert unknown.status_code == 200  # RFC 7009 §2.2


def test_pyjwt_and_joserfc_verify_our_access_tokens_from_the_jwks(api: Api, issuer: str) -> None:
    agent = new_client(api)
    secret, _ = secret_key(api, agent)
    session = _session(issuer, agent, secret, "client_secret_basic")
    access = session.fetch_token(issuer + "/oauth/token", grant_type="client_credentials")["access_token"]
    other = session.fetch_token(
        issuer + "/oauth/token", grant_type="client_credentials", resource="https://other.example"
    )["access_token"]

    signing_key = jwt.PyJWKClient(issuer + "/.well-known/jwks.json").get_signing_key_from_jwt(access)
    claims = jwt.decode(access, signing_key.key, algorithms=["EdDSA"], audience=issuer, issuer=issuer)
    assert claims["sub"] == agent and claims["client_id"] == agent
    assert jwt.get_unverified_header(access)["typ"] == "at+jwt"
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(other, signing_key.key, algorithms=["EdDSA"], audience=issuer, issuer=issuer)
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(
            access[:-4] + ("AAAA" if access[-4:] != "AAAA" else "BBBB"),
            signing_key.key,
            algorithms=["EdDSA"],
            audience=issuer,
        )

    key_set = KeySet.import_key_set(requests.get(issuer + "/.well-known/jwks.json", timeout=15).json())
    decoded = jose_jwt.decode(access, key_set, algorithms=["EdDSA"])
    assert decoded.header["alg"] == "EdDSA" and decoded.header["typ"] == "at+jwt"
    registry = jose_jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": issuer}, aud={"essential": True, "value": issuer}
    )
    registry.validate(decoded.claims)
    from joserfc.errors import InvalidClaimError

    with pytest.raises(InvalidClaimError):
        registry.validate(jose_jwt.decode(other, key_set, algorithms=["EdDSA"]).claims)
