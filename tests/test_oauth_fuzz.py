"""Fuzzing the form bodies of /oauth/token, /oauth/introspect, /oauth/revoke and
/oauth/device_authorization with Hypothesis.

Random parameters and values (known names, duplicates, huge values, odd bytes and
percent-escapes, JWT-shaped and key-shaped strings), random encodings and headers,
through the real functions-framework apps. Never a 500; every error has the
``{"error", "error_description"}`` shape; a refused request writes nothing, not
even an audit event (or a device authorization). Bounded and derandomized, so CI sees the same
examples; ``AGENTPACK_FUZZ_SCALE=10`` runs ten times as many.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.parse
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared import jws, keys, records, store
from tests.conftest import BRIDGE_KEY, Api, function_client
from tests.fuzzing import fuzz_settings
from tests.oauth_support import (
    ASSERTION_TYPE,
    FORM,
    ISSUER,
    JWT_BEARER,
    ROUTE,
    TOKEN_URL,
    KeyPair,
    access_token_for,
    assertion,
    basic,
    dpop_proof,
    key_pair,
    login,
    new_client,
    secret_key,
    token,
    use,
    written,
)

NAMES = [
    "grant_type",
    "scope",
    "resource",
    "refresh_token",
    "assertion",
    "client_id",
    "client_secret",
    "client_assertion_type",
    "client_assertion",
    "token",
    "token_type_hint",
    "subject_token",
    "subject_token_type",
    "device_code",
    "resource",
]
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
GRANTS = ["client_credentials", JWT_BEARER, "refresh_token", "password", "", TOKEN_EXCHANGE, DEVICE_CODE]
FUZZ = fuzz_settings(40)


def _b64json(value: Any) -> str:
    return jws.b64encode(json.dumps(value).encode())


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
jwt_shaped = st.builds(
    lambda header, claims, sig: f"{_b64json(header)}.{_b64json(claims)}.{sig}",
    st.dictionaries(st.sampled_from(["alg", "typ", "kid", "jwk", "crit", "x"]), json_values, max_size=4),
    st.dictionaries(st.sampled_from(["iss", "sub", "aud", "exp", "iat", "jti", "scope", "x"]), json_values, max_size=6),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/", max_size=100),
)


def _values(real: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from([*real, *GRANTS, ASSERTION_TYPE, ROUTE, "", " ", "%", "+"]),
        st.text(max_size=60),
        st.text(alphabet=st.characters(codec="utf-8"), max_size=30),
        jwt_shaped,
        st.builds(lambda n: "A" * n, st.integers(8000, 9000)),  # around the 8192 bound of a parameter
        st.builds(lambda s: "apkr_" + s, st.text(alphabet="abcXYZ019", max_size=120)),
        st.builds(lambda s: "apkd_" + s, st.text(alphabet="abcXYZ019_", max_size=80)),
        st.sampled_from(real).map(lambda v: v[:-1] + ("0" if v[-1:] != "0" else "1")),  # one character off
    )


def _bodies(real: list[str], lead: str) -> st.SearchStrategy[bytes]:
    """Form bodies; most start with ``lead`` (the endpoint's main parameter) so they get past its first check."""
    first = (
        st.sampled_from([*GRANTS[:3], *GRANTS[5:], None]) if lead == "grant_type" else st.sampled_from(real) | st.none()
    )
    listed = st.lists(st.tuples(st.sampled_from(NAMES) | st.text(max_size=12), _values(real)), max_size=8)
    pairs = st.builds(
        lambda value, rest: ([(lead, value)] if value is not None else []) + rest,
        first,
        listed,
    )
    return st.one_of(
        pairs.map(lambda p: urllib.parse.urlencode(p).encode("ascii")),  # duplicates happen here too
        pairs.map(lambda p: urllib.parse.urlencode(p).encode("ascii")),
        pairs.map(lambda p: "&".join(f"{k}={v}" for k, v in p).encode("utf-8", "surrogatepass")),  # unescaped
        st.binary(max_size=300),  # odd bytes
        st.text(alphabet="%=&+;ABCxyz09\x00\x7f", max_size=120).map(lambda t: t.encode("ascii")),  # odd escapes
        st.builds(lambda n: b"token=" + b"A" * n, st.integers(60_000, 70_000)),  # around the 64 KiB body limit
    )


def _headers(real: list[str], agent: str, secret: str) -> st.SearchStrategy[dict[str, str]]:
    authorization = st.one_of(
        st.just(basic(agent, secret)["Authorization"]),
        st.builds(lambda s: "Basic " + base64.b64encode(s).decode(), st.binary(max_size=60)),
        st.builds(lambda s: "Basic " + s, st.text(alphabet="abc=:%", max_size=30)),
        st.builds(lambda t: "Bearer " + t, _values(real)),
    )
    content_type = st.one_of(
        st.just(FORM),
        st.just(FORM),
        st.just(FORM),
        st.sampled_from([FORM + "; charset=utf-8", FORM + "; charset=latin-1", "application/json", "text/plain", ""]),
    )
    return st.fixed_dictionaries(
        {"Content-Type": content_type},
        optional={
            "Authorization": authorization,
            "DPoP": st.one_of(jwt_shaped, st.text(max_size=40)),
            "x-agentpack-key": st.sampled_from([BRIDGE_KEY, "apkb_nope", ""]),
        },
    ).map(lambda h: {k: v for k, v in h.items() if all(c.isprintable() and ord(c) < 128 for c in v)})


LEADS = {
    "oauth_token": "grant_type",
    "oauth_introspect": "token",
    "oauth_revoke": "token",
    "oauth_device_authorization": "client_id",
}


def _written() -> dict[str, int]:
    """``written()``, and the device authorizations (a refused request starts none; a poll updates its own)."""
    return {**written(), records.DEVICE_AUTHORIZATIONS: store.count(records.DEVICE_AUTHORIZATIONS)}


def _fuzz(api: Api, function: str) -> None:
    agent = new_client(api)
    secret, _ = secret_key(api, agent)
    pair, kid = key_pair(api, agent)
    real = [
        agent,
        secret,
        kid,
        assertion(pair, kid, agent),
        login(pair, kid, agent)["refresh_token"],
        access_token_for(agent, secret),
        keys.new_refresh_token("rtf_" + kid[3:] + "x"),
        assertion(KeyPair.new(), kid, agent),
    ]
    client = function_client(function)
    seen: set[int] = set()
    baseline = [_written()]

    @FUZZ
    @given(
        body=_bodies(real, LEADS[function]),
        headers=_headers(real, agent, secret),
    )
    def run(body: bytes, headers: dict[str, str]) -> None:
        answer = client.post("/", data=body, headers=headers)
        seen.add(answer.status_code)
        assert answer.status_code != 500, (body[:200], headers, answer.get_json())
        assert answer.headers["Cache-Control"] == "no-store"
        result = answer.get_json()
        assert isinstance(result, dict)
        if answer.status_code >= 400:
            assert set(result) == {"error", "error_description"}, result
            assert type(result["error"]) is str and type(result["error_description"]) is str
            for value in (secret, *real[3:6]):  # never echo a secret or token back
                assert value not in result["error_description"]
        if answer.status_code not in (413, 415):  # those are answered before any handler runs
            now = _written()
            if answer.status_code >= 400:
                assert now == baseline[0], (body[:200], headers, result)
            baseline[0] = now

    run()
    assert len(seen) > 2, seen  # the fuzz reached more than one kind of answer


def test_fuzz_the_token_endpoint(api: Api) -> None:
    _fuzz(api, "oauth_token")


def test_fuzz_the_introspection_endpoint(api: Api) -> None:
    _fuzz(api, "oauth_introspect")


def test_fuzz_the_revocation_endpoint(api: Api) -> None:
    _fuzz(api, "oauth_revoke")


def test_fuzz_the_device_authorization_endpoint(api: Api) -> None:
    _fuzz(api, "oauth_device_authorization")


@pytest.mark.parametrize("iat", [10**400, -(10**400)], ids=["1e400", "-1e400"])
def test_a_dpop_proof_with_a_huge_iat_is_refused_not_a_500(api: Api, iat: int) -> None:
    """Regression (found by tests/test_parser_fuzz.py): a proof's iat beyond a float made dpop.verify
    raise OverflowError, a 500 at the token endpoint and on every route a DPoP-bound token reaches."""
    agent = new_client(api)
    secret, _ = secret_key(api, agent)
    holder = KeyPair.new()
    before = written()
    answer = token(
        {"grant_type": "client_credentials"}, {**basic(agent, secret), "DPoP": dpop_proof(holder, TOKEN_URL, iat=iat)}
    )
    assert (answer.status_code, answer.get_json()["error"]) == (400, "invalid_dpop_proof")
    assert written() == before
    bound = token({"grant_type": "client_credentials"}, {**basic(agent, secret), "DPoP": dpop_proof(holder, TOKEN_URL)})
    assert bound.status_code == 200, bound.get_json()
    access = str(bound.get_json()["access_token"])
    route_url = f"{ISSUER}/{ROUTE}"
    refused = use(access, scheme="DPoP", proof=dpop_proof(holder, route_url, access_token=access, iat=iat))
    assert (refused.status_code, refused.get_json()["error"]) == (401, "unauthenticated")
    fresh = dpop_proof(holder, route_url, access_token=access, iat=int(time.time()))
    assert use(access, scheme="DPoP", proof=fresh).status_code == 200
