"""JOSE attacks on access tokens, on agentpack's own routes and at introspection.

Each forged token is built by hand (the repo's JWS helpers, PyJWT, cryptography) from a
real token's claims. A positive control re-signs the same claims with the real key and
must be accepted, so every refusal below is the attack's and not the forging's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shared import crypto, jws
from tests.conftest import Api, function_client
from tests.oauth_support import (
    CAPABILITY_KID,
    ISSUER,
    ROUTE,
    SIGNING_KID,
    KeyPair,
    access_token_for,
    basic,
    forge,
    introspect,
    key_pair,
    login,
    new_client,
    parts,
    post_form,
    raw_token,
    revoke_key,
    secret_key,
    update_agent,
    use,
)

ROOT_DIR = Path(__file__).resolve().parent.parent
CAPABILITY_SEED = jws.b64decode((ROOT_DIR / "emulator-config/dev-capability-signing.key").read_text().strip())
ED25519_L = 2**252 + 27742317777372353535851937790883648493


def _b64(data: bytes) -> str:
    return jws.b64encode(data)


def _segments(token: str) -> list[str]:
    return token.split(".")


def _fresh(claims: dict[str, Any], **changes: Any) -> dict[str, Any]:
    from shared import ids

    return {**claims, "jti": ids.random_base62(22), **changes}


# Each attack: the real token and its claims -> a forged token.
Attack = Callable[[str, dict[str, Any]], str]


def _alg_none(real: str, claims: dict[str, Any]) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "at+jwt", "kid": SIGNING_KID}).encode())
    return f"{header}.{_segments(real)[1]}."


def _alg_none_keeping_signature(real: str, claims: dict[str, Any]) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "at+jwt", "kid": SIGNING_KID}).encode())
    _, body, signature = _segments(real)
    return f"{header}.{body}.{signature}"


def _hs256_with_public_key(real: str, claims: dict[str, Any]) -> str:
    from tests.oauth_support import SIGNING_SEED

    public = crypto.public_key_of(SIGNING_SEED)
    header = _b64(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": SIGNING_KID}).encode())
    body = _b64(json.dumps(_fresh(claims, scope=ROUTE)).encode())
    signing_input = f"{header}.{body}".encode()
    mac = hmac.new(_b64(public).encode(), signing_input, hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(mac)}"


def _hs256_padded_to_64_bytes(real: str, claims: dict[str, Any]) -> str:
    from tests.oauth_support import SIGNING_SEED

    public = crypto.public_key_of(SIGNING_SEED)
    header = _b64(json.dumps({"alg": "HS512", "typ": "at+jwt", "kid": SIGNING_KID}).encode())
    body = _b64(json.dumps(_fresh(claims)).encode())
    mac = hmac.new(public, f"{header}.{body}".encode(), hashlib.sha512).digest()  # 64 bytes, like EdDSA
    return f"{header}.{body}.{_b64(mac)}"


def _rs256(real: str, claims: dict[str, Any]) -> str:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(_fresh(claims), private, algorithm="RS256", headers={"typ": "at+jwt", "kid": SIGNING_KID})


def _typ(typ: str | None) -> Attack:
    def attack(real: str, claims: dict[str, Any]) -> str:
        header: dict[str, Any] = {"alg": "EdDSA", "kid": SIGNING_KID}
        if typ is not None:
            header["typ"] = typ
        return forge(_fresh(claims), header)

    return attack


def _unknown_kid(real: str, claims: dict[str, Any]) -> str:
    return forge(_fresh(claims), {"alg": "EdDSA", "typ": "at+jwt", "kid": "dev-at-2"})


def _capability_kid(real: str, claims: dict[str, Any]) -> str:
    return forge(_fresh(claims), {"alg": "EdDSA", "typ": "at+jwt", "kid": CAPABILITY_KID}, seed=CAPABILITY_SEED)


def _capability_key_under_signing_kid(real: str, claims: dict[str, Any]) -> str:
    return forge(_fresh(claims), seed=CAPABILITY_SEED)


def _another_key(real: str, claims: dict[str, Any]) -> str:
    return forge(_fresh(claims), seed=KeyPair.new().seed)


def _flipped_bit(index: int) -> Attack:
    def attack(real: str, claims: dict[str, Any]) -> str:
        head, body, signature = _segments(real)
        raw = bytearray(jws.b64decode(signature))
        raw[index // 8] ^= 1 << (index % 8)
        return f"{head}.{body}.{_b64(bytes(raw))}"

    return attack


def _malleated(real: str, claims: dict[str, Any]) -> str:
    head, body, signature = _segments(real)
    raw = jws.b64decode(signature)
    s = int.from_bytes(raw[32:], "little") + ED25519_L  # S + L: the same point equation, non-canonical S
    return f"{head}.{body}.{_b64(raw[:32] + s.to_bytes(32, 'little'))}"


def _tampered(**changes: Any) -> Attack:
    def attack(real: str, claims: dict[str, Any]) -> str:
        head, _, signature = _segments(real)
        return f"{head}.{_b64(json.dumps({**claims, **changes}, separators=(',', ':')).encode())}.{signature}"

    return attack


def _extra_header(name: str, value: Any) -> Attack:
    def attack(real: str, claims: dict[str, Any]) -> str:
        return forge(_fresh(claims), {"alg": "EdDSA", "typ": "at+jwt", "kid": SIGNING_KID, name: value})

    return attack


def _embedded_jwk(real: str, claims: dict[str, Any]) -> str:
    attacker = KeyPair.new()
    header = {"alg": "EdDSA", "typ": "at+jwt", "kid": SIGNING_KID, "jwk": attacker.jwk()}
    return forge(_fresh(claims), header, seed=attacker.seed)


def _duplicate_header_member(real: str, claims: dict[str, Any]) -> str:
    header = b'{"alg":"EdDSA","typ":"at+jwt","kid":"' + SIGNING_KID.encode() + b'","typ":"at+jwt"}'
    return raw_token(header, json.dumps(_fresh(claims)).encode())


def _duplicate_alg(real: str, claims: dict[str, Any]) -> str:
    header = b'{"alg":"none","typ":"at+jwt","kid":"' + SIGNING_KID.encode() + b'","alg":"EdDSA"}'
    return raw_token(header, json.dumps(_fresh(claims)).encode())


def _duplicate_claim(name: str, value: Any) -> Attack:
    def attack(real: str, claims: dict[str, Any]) -> str:
        body = json.dumps(_fresh(claims))[:-1] + f", {json.dumps(name)}: {json.dumps(value)}}}"
        header = json.dumps({"alg": "EdDSA", "typ": "at+jwt", "kid": SIGNING_KID}, separators=(",", ":"))
        return raw_token(header.encode(), body.encode())

    return attack


def _claims(**changes: Any) -> Attack:
    def attack(real: str, claims: dict[str, Any]) -> str:
        return forge(_fresh(claims, **changes))

    return attack


def _without(name: str) -> Attack:
    def attack(real: str, claims: dict[str, Any]) -> str:
        fresh = _fresh(claims)
        del fresh[name]
        return forge(fresh)

    return attack


def _expired_beyond_skew(real: str, claims: dict[str, Any]) -> str:
    now = int(time.time())
    return forge(_fresh(claims, iat=now - 1000, exp=now - 61 - 5))


def _issued_in_the_future(real: str, claims: dict[str, Any]) -> str:
    now = int(time.time())
    return forge(_fresh(claims, iat=now + 120, exp=now + 120 + 900))


def _padded_base64(real: str, claims: dict[str, Any]) -> str:
    head, body, signature = _segments(real)
    return f"{head}.{body}.{signature}=="


def _standard_base64(real: str, claims: dict[str, Any]) -> str:
    head, body, signature = _segments(real)
    raw = jws.b64decode(signature)
    return f"{head}.{body}.{base64.b64encode(raw).decode().rstrip('=')}"


ATTACKS: dict[str, Attack] = {
    "alg none": _alg_none,
    "alg none keeping the signature": _alg_none_keeping_signature,
    "HS256 with the public key as secret": _hs256_with_public_key,
    "HS512 with the public key (64-byte MAC)": _hs256_padded_to_64_bytes,
    "RS256": _rs256,
    "typ agentpack-cap+jwt": _typ("agentpack-cap+jwt"),
    "typ JWT": _typ("JWT"),
    "typ at+JWT": _typ("at+JWT"),
    "typ application/at+jwt": _typ("application/at+jwt"),
    "no typ": _typ(None),
    "unknown kid": _unknown_kid,
    "kid of the capability key": _capability_kid,
    "capability key under the signing kid": _capability_key_under_signing_kid,
    "another Ed25519 key": _another_key,
    "flipped signature bit 0": _flipped_bit(0),
    "flipped signature bit 300": _flipped_bit(300),
    "flipped signature bit 511": _flipped_bit(511),
    "malleated signature S+L": _malleated,
    "scope tampered after signing": _tampered(scope=f"{ROUTE} secrets/get"),
    "sub tampered after signing": _tampered(sub="agt_someoneelse000000000"),
    "exp tampered after signing": _tampered(exp=2**40),
    "header jwk": _extra_header("jwk", KeyPair.new().jwk()),
    "header jwk signed by it": _embedded_jwk,
    "header jku": _extra_header("jku", "https://evil.example/jwks.json"),
    "header x5u": _extra_header("x5u", "https://evil.example/cert.pem"),
    "header crit": _extra_header("crit", ["exp"]),
    "header b64 false": _extra_header("b64", False),
    "duplicate header typ": _duplicate_header_member,
    "duplicate header alg": _duplicate_alg,
    "duplicate claim sub": _duplicate_claim("sub", "agt_someoneelse000000000"),
    "duplicate claim scope": _duplicate_claim("scope", "secrets/get"),
    "duplicate claim aud": _duplicate_claim("aud", "https://other.example"),
    "wrong iss": _claims(iss="https://evil.example"),
    "iss with a trailing slash": _claims(iss=ISSUER + "/"),
    "aud as a list": _claims(aud=[ISSUER]),
    "exp as a float": _claims(exp=float(int(time.time()) + 600)),
    "exp true": _claims(exp=True),
    "ttl beyond an hour": _claims(exp=int(time.time()) + 7200),
    "no exp": _without("exp"),
    "no iss": _without("iss"),
    "no key_id": _without("key_id"),
    "unknown claim": _claims(admin=True),
    "expired beyond the skew": _expired_beyond_skew,
    "iat in the future": _issued_in_the_future,
    "padded base64": _padded_base64,
    "standard base64 alphabet": _standard_base64,
    "key of another agent": _claims(key_id="dk_someoneelse000000000xxxxxxxxxxxxxxxxxxxxxxxx"),
    "another tenant": _claims(tenant_id="other"),
}


@pytest.fixture
def victim(api: Api) -> tuple[str, dict[str, Any]]:
    agent = new_client(api)
    secret, _ = secret_key(api, agent)
    real = access_token_for(agent, secret)
    return real, parts(real)[1]


def test_the_forging_itself_is_sound(victim: tuple[str, dict[str, Any]]) -> None:
    """Positive controls: the real token, and its claims re-signed by the real key, are accepted."""
    real, claims = victim
    assert use(real).status_code == 200
    resigned = forge(_fresh(claims))
    assert use(resigned).status_code == 200
    assert introspect(resigned)["active"] is True
    now = int(time.time())
    within_skew = forge(_fresh(claims, iat=now - 900 - 30, exp=now - 30))  # expired 30 s ago: within the 60 s skew
    assert use(within_skew).status_code == 200


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_a_forged_access_token_is_refused_on_our_routes_and_inactive_at_introspection(
    victim: tuple[str, dict[str, Any]], attack: str
) -> None:
    real, claims = victim
    forged = ATTACKS[attack](real, claims)
    for scheme in ("Bearer", "DPoP"):
        answer = use(forged, scheme=scheme)
        assert answer.status_code == 401, (scheme, answer.get_json())
        assert answer.get_json()["error"] == "unauthenticated"
    assert introspect(forged) == {"active": False}


def test_a_bound_token_without_its_proof_is_refused_on_our_routes(victim: tuple[str, dict[str, Any]]) -> None:
    """Signed by the real key, so introspection may call it active; on our routes it needs its DPoP proof."""
    _, claims = victim
    bound = forge(_fresh(claims, cnf={"jkt": "x" * 43}))
    assert use(bound).status_code == 401
    assert use(bound, scheme="DPoP").status_code == 401
    assert introspect(bound)["token_type"] == "DPoP"


def test_a_token_for_another_audience_is_refused_on_our_routes_but_active_at_introspection(api: Api) -> None:
    agent = new_client(api)
    secret, _ = secret_key(api, agent)
    other = access_token_for(agent, secret, resource="https://other.example")
    assert use(other).status_code == 401
    seen = introspect(other)
    assert seen["active"] is True and seen["aud"] == "https://other.example"


def test_a_scope_not_naming_the_route_is_forbidden(api: Api) -> None:
    agent = new_client(api)
    secret, _ = secret_key(api, agent)
    narrow = access_token_for(agent, secret, scope="read:users")
    answer = use(narrow)
    assert answer.status_code == 403 and answer.get_json()["error"] == "forbidden"
    assert use(access_token_for(agent, secret, scope=ROUTE), route="agents/list").status_code == 403


def test_scopes_removed_from_the_agent_after_issue_are_forbidden_at_once(api: Api) -> None:
    agent = new_client(api)
    secret, _ = secret_key(api, agent)
    access = access_token_for(agent, secret)
    assert use(access).status_code == 200
    update_agent(api, agent, scopes=["read:users"])
    assert use(access).status_code == 403
    update_agent(api, agent, scopes=[ROUTE])
    assert use(access).status_code == 200


def _standing(api: Api) -> tuple[str, str, str, KeyPair, str, dict[str, Any]]:
    agent = new_client(api)
    secret, secret_kid = secret_key(api, agent)
    pair, kid = key_pair(api, agent)
    return agent, secret, secret_kid, pair, kid, login(pair, kid, agent)


def test_a_disabled_agent_is_refused_on_the_next_request(api: Api) -> None:
    agent, secret, _, _, _, logged_in = _standing(api)
    access = access_token_for(agent, secret)
    assert use(access).status_code == 200 and use(logged_in["access_token"]).status_code == 200
    update_agent(api, agent, disabled=True)
    for held in (access, logged_in["access_token"]):
        assert use(held).status_code == 401
        assert introspect(held) == {"active": False}


def test_a_revoked_key_is_refused_on_the_next_request(api: Api) -> None:
    agent, secret, secret_kid, _, kid, logged_in = _standing(api)
    access = access_token_for(agent, secret)
    assert use(access).status_code == 200
    revoke_key(api, secret_kid)
    assert use(access).status_code == 401
    assert introspect(access) == {"active": False}
    assert use(logged_in["access_token"]).status_code == 200  # another key's token stands
    revoke_key(api, kid)
    assert use(logged_in["access_token"]).status_code == 401


def test_a_revoked_family_refuses_its_access_tokens_on_the_next_request(api: Api) -> None:
    agent, secret, _, _, _, logged_in = _standing(api)
    assert use(logged_in["access_token"]).status_code == 200
    answer = post_form("oauth_revoke", {"token": logged_in["refresh_token"]}, basic(agent, secret))
    assert answer.status_code == 200, answer.get_json()
    assert use(logged_in["access_token"]).status_code == 401
    assert introspect(logged_in["access_token"]) == {"active": False}
    assert introspect(logged_in["refresh_token"]) == {"active": False}


def test_a_revoked_access_token_is_refused_on_the_next_request(api: Api) -> None:
    agent, secret, _, _, _, _ = _standing(api)
    access = access_token_for(agent, secret)
    sibling = access_token_for(agent, secret)
    answer = post_form("oauth_revoke", {"token": access}, basic(agent, secret))
    assert answer.status_code == 200 and answer.get_json() == {}
    assert use(access).status_code == 401
    assert introspect(access) == {"active": False}
    assert use(sibling).status_code == 200  # only that token


@pytest.mark.parametrize(
    ("route", "body"),
    [("device/issue", {"label": "x"}), ("device/revoke", {"key_id": "KEY"}), ("delegate", {"to_agent": "AGENT"})],
)
def test_an_access_token_never_mints_or_revokes_credentials_whatever_its_scope(
    api: Api, route: str, body: dict[str, Any]
) -> None:
    agent = new_client(api, scopes=[ROUTE, route])
    secret, kid = secret_key(api, agent)
    access = access_token_for(agent, secret)
    assert route in parts(access)[1]["scope"].split(" ")
    sent = {name: {"KEY": kid, "AGENT": agent}.get(value, value) for name, value in body.items()}
    headers = {"Authorization": f"Bearer {access}"}
    answer = function_client(route.replace("/", "_")).post("/", json=sent, headers=headers)
    assert answer.status_code == 403, answer.get_json()
    assert use(access).status_code == 200  # the key was not revoked


def test_a_resource_on_the_refresh_grant_is_honoured_or_refused(api: Api) -> None:
    agent = new_client(api)
    secret, _ = secret_key(api, agent)
    pair, kid = key_pair(api, agent)
    refresh = login(pair, kid, agent)["refresh_token"]
    form = {"grant_type": "refresh_token", "refresh_token": refresh, "resource": "https://api.example"}
    answer = post_form("oauth_token", form, basic(agent, secret))
    if answer.status_code == 200:
        assert parts(answer.get_json()["access_token"])[1]["aud"] == "https://api.example"
    else:
        assert answer.get_json()["error"] == "invalid_target"
