"""Capability tokens: the offline Ed25519 verifier, its key set, its primitives and the operator script.

Pure unit tests (no emulator is used, though the session's conftest starts one). Every token an
attacker might try is built by hand here, signed with the real key where that makes the attack
stronger, and must be refused with the one 401 text.
"""

from __future__ import annotations

import ast
import base64
import binascii
import hashlib
import hmac
import json
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared import config, crypto, errors, tokens

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

SEED = hashlib.sha256(b"agentpack test capability key 1").digest()
SEED_2 = hashlib.sha256(b"agentpack test capability key 2").digest()
OTHER_SEED = hashlib.sha256(b"an attacker's key").digest()
PUBLIC = crypto.public_key_of(SEED)
PUBLIC_2 = crypto.public_key_of(SEED_2)
KEYS = tokens.KeySet({"k1": PUBLIC})

AGENT = "agt_0123456789ABCDEFGHIJkl"
NOW = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
T = int(NOW.timestamp())
HEADER: dict[str, Any] = {"alg": "EdDSA", "typ": "agentpack-cap+jwt", "kid": "k1"}
L = 2**252 + 27742317777372353535851937790883648493  # the order of the Ed25519 base point
DROP = object()  # claims(exp=DROP) leaves the claim out
BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def b64(data: bytes | str) -> str:
    return base64.urlsafe_b64encode(data.encode() if isinstance(data, str) else data).rstrip(b"=").decode()


def as_json(value: Any) -> str:
    """A JSON text: strings are taken as already-written JSON (duplicates, odd spacing)."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def claims(**changes: Any) -> dict[str, Any]:
    found: dict[str, Any] = {
        "iss": "agentpack-identity",
        "sub": AGENT,
        "aud": "agentpack",
        "scope": "secrets/get secrets/list",
        "iat": T,
        "exp": T + 300,
        "jti": "tok-1",
    }
    for name, value in changes.items():
        if value is DROP:
            found.pop(name, None)
        else:
            found[name] = value
    return found


def header(**changes: Any) -> dict[str, Any]:
    found = dict(HEADER)
    for name, value in changes.items():
        if value is DROP:
            found.pop(name, None)
        else:
            found[name] = value
    return found


def forge(head: Any = None, body: Any = None, seed: bytes = SEED) -> str:
    """A compact JWS of the given header and claims (objects or raw JSON texts), Ed25519-signed by ``seed``."""
    signing_input = (
        b64(as_json(HEADER if head is None else head)) + "." + b64(as_json(claims() if body is None else body))
    )
    return signing_input + "." + b64(crypto.sign(seed, signing_input.encode()))


def ok(token: str, keys: tokens.KeySet = KEYS, now: datetime = NOW, max_ttl_seconds: int = 300) -> tokens.Capability:
    return tokens.verify(token, keys, now=now, max_ttl_seconds=max_ttl_seconds)


def refused(token: Any, keys: tokens.KeySet = KEYS, now: datetime = NOW, max_ttl_seconds: int = 300) -> None:
    with pytest.raises(errors.TokenRefused) as caught:
        tokens.verify(token, keys, now=now, max_ttl_seconds=max_ttl_seconds)
    assert type(caught.value) is errors.TokenRefused
    assert caught.value.reason == "invalid capability token"  # one text for all: no oracle
    answer = errors.wire(caught.value)
    assert (answer.status, answer.code) == (401, "unauthenticated")


def with_signature(token: str, signature: bytes) -> str:
    return token.rpartition(".")[0] + "." + b64(signature)


def signature_of(token: str) -> bytes:
    return base64.urlsafe_b64decode(token.rpartition(".")[2] + "==")


# --- the positive cases -------------------------------------------------------------------------


def test_a_contract_token_is_accepted() -> None:
    capability = ok(forge())
    assert capability.agent_id == AGENT
    assert capability.scopes == frozenset({"secrets/get", "secrets/list"})
    assert capability.jti == "tok-1"
    assert capability.issued_at == NOW
    assert capability.expires_at == NOW + timedelta(seconds=300)
    assert capability.iat == T and capability.exp == T + 300


def test_mint_writes_a_token_that_verifies() -> None:
    token = tokens.mint(SEED, "k1", AGENT, ["secrets/get"], 120, NOW, jti="abc")
    assert ok(token) == tokens.Capability(AGENT, frozenset({"secrets/get"}), "abc", T, T + 120)
    assert ok(tokens.mint(SEED, "k1", AGENT, ["secrets/get"], 120, NOW)).jti  # a random jti


def test_mint_output_is_the_canonical_spelling() -> None:
    token = tokens.mint(SEED, "k1", AGENT, ["secrets/get", "secrets/list"], 300, NOW, jti="tok-1")
    assert token == forge()


@pytest.mark.parametrize(
    "spelling",
    [
        json.dumps(claims(), sort_keys=True),  # another order, default spacing
        json.dumps(claims(), indent=2),
        "\n " + json.dumps(claims()) + " \n",
        as_json(claims()).replace('"secrets/get', '"secrets\\/get'),  # a JSON escape
        as_json(claims()).replace('"agt_0', '"\\u0061gt_0'),
    ],
)
def test_other_spellings_of_the_same_claims_give_the_same_answer(spelling: str) -> None:
    assert ok(forge(body=spelling)) == ok(forge())


@pytest.mark.parametrize(
    "head",
    [
        {"kid": "k1", "alg": "EdDSA", "typ": "agentpack-cap+jwt"},
        json.dumps(HEADER),
        json.dumps(HEADER, indent=1),
        ' {"alg":"EdDSA","typ":"agentpack-cap+jwt","kid":"k1"}\n',
        '{"alg":"Ed\\u0044SA","typ":"agentpack-cap+jwt","kid":"k1"}',
    ],
)
def test_other_spellings_of_the_header_are_accepted(head: Any) -> None:
    assert ok(forge(head=head)).agent_id == AGENT


def test_nbf_is_optional_and_accepted_in_either_position() -> None:
    assert ok(forge(body=claims(nbf=T))).agent_id == AGENT  # nbf last: the canonical spelling
    first = {"nbf": T + 59, **claims()}
    assert ok(forge(body=first)).agent_id == AGENT


def test_a_token_minted_by_pyjwt_is_accepted() -> None:
    private = Ed25519PrivateKey.from_private_bytes(SEED)
    for body in (claims(), dict(sorted(claims().items()))):
        token = jwt.encode(body, private, algorithm="EdDSA", headers={"kid": "k1", "typ": "agentpack-cap+jwt"})
        assert jwt.get_unverified_header(token) == HEADER  # exactly alg, kid and typ: nothing more
        assert ok(token).agent_id == AGENT


def test_pyjwt_decodes_what_mint_writes() -> None:
    now = datetime.now(UTC)
    token = tokens.mint(SEED, "k1", AGENT, ["secrets/get", "secrets/list"], 300, now, jti="j-1")
    public = Ed25519PrivateKey.from_private_bytes(SEED).public_key()
    decoded = jwt.decode(token, public, algorithms=["EdDSA"], audience="agentpack", issuer="agentpack-identity")
    assert decoded["sub"] == AGENT and decoded["scope"] == "secrets/get secrets/list" and decoded["jti"] == "j-1"
    assert decoded["exp"] - decoded["iat"] == 300
    assert jwt.get_unverified_header(token) == HEADER


def test_pyjwt_default_header_is_refused() -> None:
    private = Ed25519PrivateKey.from_private_bytes(SEED)
    refused(jwt.encode(claims(), private, algorithm="EdDSA", headers={"kid": "k1"}))  # typ "JWT"


def test_several_kids_are_live_at_once() -> None:
    keys = tokens.KeySet({"k1": PUBLIC, "k2": PUBLIC_2})
    assert ok(forge(head=header(kid="k1"), seed=SEED), keys).agent_id == AGENT
    assert ok(forge(head=header(kid="k2"), seed=SEED_2), keys).agent_id == AGENT
    refused(forge(head=header(kid="k2"), seed=SEED), keys)  # a kid names its own key only
    refused(forge(head=header(kid="k1"), seed=SEED_2), keys)


def test_a_naive_now_is_taken_as_utc() -> None:
    assert ok(forge(), now=NOW.replace(tzinfo=None)).agent_id == AGENT
    refused(forge(), now=(NOW + timedelta(seconds=361)).replace(tzinfo=None))


# --- the header -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "alg",
    ["none", "None", "NONE", "nOnE", "", "HS256", "HS512", "ES256", "RS256", "PS256", "EdDSA ", "eddsa", "Ed25519"],
)
def test_any_other_alg_is_refused_even_when_signed_with_the_real_key(alg: str) -> None:
    refused(forge(head=header(alg=alg)))


@pytest.mark.parametrize("alg", [None, ["EdDSA"], {"EdDSA": 1}, 1, True])
def test_an_alg_of_the_wrong_type_is_refused(alg: Any) -> None:
    refused(forge(head=header(alg=alg)))


@pytest.mark.parametrize("alg", ["none", "None", "NONE", ""])
def test_unsigned_tokens_are_refused(alg: str) -> None:
    signing_input = b64(as_json(header(alg=alg))) + "." + b64(as_json(claims()))
    refused(signing_input + ".")
    refused(signing_input)


@pytest.mark.parametrize("secret", [PUBLIC, b64(PUBLIC).encode(), json.dumps({"k1": b64(PUBLIC)}).encode()])
def test_hs256_with_the_public_key_as_hmac_secret_is_refused(secret: bytes) -> None:
    signing_input = b64(as_json(header(alg="HS256"))) + "." + b64(as_json(claims()))
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    refused(signing_input + "." + b64(mac))
    refused(signing_input + "." + b64(mac + mac))  # 64 bytes, the length of an Ed25519 signature


def attacker_jwk() -> dict[str, str]:
    return {"kty": "OKP", "crv": "Ed25519", "x": b64(crypto.public_key_of(OTHER_SEED))}


@pytest.mark.parametrize(
    "member",
    [
        {"jwk": attacker_jwk()},
        {"jku": "https://attacker.example/jwks.json"},
        {"x5u": "https://attacker.example/cert.pem"},
        {"x5c": ["MIIBszCCAVmgAwIBAgIU"]},
        {"x5t": "abc"},
        {"crit": ["exp"]},
        {"cty": "JWT"},
        {"b64": False},
        {"zip": "DEF"},
        {"extra": 1},
    ],
)
def test_any_header_member_beyond_alg_typ_kid_is_refused(member: dict[str, Any]) -> None:
    refused(forge(head=HEADER | member))  # signed with the real key
    refused(forge(head=HEADER | member, seed=OTHER_SEED))


def test_a_jwk_header_without_kid_is_refused() -> None:
    refused(forge(head={"alg": "EdDSA", "typ": "agentpack-cap+jwt", "jwk": attacker_jwk()}, seed=OTHER_SEED))


@pytest.mark.parametrize(
    "kid", [DROP, "k9", "", "../x", "k1/../k1", "K1", "k1 ", " k1", "k1\x00", "k" * 65, "k" * 5000, None, 1, True]
)
def test_missing_unknown_and_odd_kids_are_refused(kid: Any) -> None:
    refused(forge(head=header(kid=kid)))


@pytest.mark.parametrize("kid", [["k1"], {"k1": "k1"}])
def test_unhashable_kids_are_refused(kid: Any) -> None:
    refused(forge(head=header(kid=kid)))


@pytest.mark.parametrize("typ", [DROP, "JWT", "jwt", "at+jwt", "agentpack-cap+JWT", "agentpack-cap", "", None, 1])
def test_a_wrong_or_missing_typ_is_refused(typ: Any) -> None:
    refused(forge(head=header(typ=typ)))


@pytest.mark.parametrize(
    "text",
    [
        '{"alg":"EdDSA","typ":"agentpack-cap+jwt","kid":"k1","kid":"k1"}',
        '{"alg":"none","alg":"EdDSA","typ":"agentpack-cap+jwt","kid":"k1"}',
        '{"alg":"EdDSA","typ":"agentpack-cap+jwt","kid":"k9","kid":"k1"}',
        '{"alg":"EdDSA","typ":"JWT","typ":"agentpack-cap+jwt","kid":"k1"}',
    ],
)
def test_duplicate_header_members_are_refused(text: str) -> None:
    refused(forge(head=text))


@pytest.mark.parametrize(
    "text", ['["EdDSA","agentpack-cap+jwt","k1"]', '"EdDSA"', "null", "1", "", "{", "{}", "\xff", "[" * 2000]
)
def test_a_header_that_is_not_a_json_object_is_refused(text: str) -> None:
    refused(forge(head=text))


# --- the claims -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"iss": "agentpack"},
        {"iss": "AGENTPACK-IDENTITY"},
        {"iss": ["agentpack-identity"]},
        {"iss": None},
        {"iss": DROP},
        {"aud": ["agentpack"]},
        {"aud": "agentpack2"},
        {"aud": "Agentpack"},
        {"aud": None},
        {"aud": DROP},
        {"sub": "agt_short"},
        {"sub": "dk_0123456789ABCDEFGHIJkl0123456789ABCDEFGHIJkl"},
        {"sub": "AGT_0123456789ABCDEFGHIJkl"},
        {"sub": AGENT + "\n"},
        {"sub": AGENT + "x"},
        {"sub": 123},
        {"sub": [AGENT]},
        {"sub": DROP},
        {"jti": ""},
        {"jti": "a" * 129},
        {"jti": "a b"},
        {"jti": "a/b"},
        {"jti": 123},
        {"jti": None},
        {"jti": DROP},
    ],
)
def test_wrong_or_mistyped_iss_aud_sub_jti_are_refused(changes: dict[str, Any]) -> None:
    refused(forge(body=claims(**changes)))


@pytest.mark.parametrize(
    "changes",
    [
        {"exp": str(T + 300)},
        {"exp": float(T + 300)},
        {"exp": True},
        {"exp": None},
        {"exp": [T + 300]},
        {"exp": DROP},
        {"iat": str(T)},
        {"iat": float(T)},
        {"iat": True},
        {"iat": False, "exp": 300},
        {"iat": None},
        {"iat": DROP},
        {"nbf": str(T)},
        {"nbf": float(T)},
        {"nbf": True},
        {"nbf": False},
        {"nbf": None},
        {"exp": T + 10**30},
        {"iat": -(10**30)},
    ],
)
def test_mistyped_or_missing_times_are_refused(changes: dict[str, Any]) -> None:
    refused(forge(body=claims(**changes)))


@pytest.mark.parametrize(
    "text",
    [
        as_json(claims()).replace(f'"exp":{T + 300}', f'"exp":{T + 300}.0'),
        as_json(claims()).replace(f'"exp":{T + 300}', f'"exp":{T + 300}e0'),
        as_json(claims()).replace(f'"iat":{T}', f'"iat":0{T}'),
        as_json(claims()).replace(f'"iat":{T}', '"iat":NaN'),
        as_json(claims()).replace(f'"exp":{T + 300}', '"exp":Infinity'),
    ],
)
def test_numbers_that_are_not_json_integers_are_refused(text: str) -> None:
    refused(forge(body=text))


@pytest.mark.parametrize(
    "scope",
    [
        "",
        " ",
        "secrets/get  secrets/list",
        " secrets/get",
        "secrets/get ",
        "secrets/get\tsecrets/list",
        "secrets/get secrets/get",
        "Secrets/Get",
        "secrets/get,secrets/list",
        "secrets//get",
        "/secrets",
        "secrets/",
        "secrets/get\n",
        ["secrets/get"],
        None,
        DROP,
    ],
)
def test_a_bad_scope_is_refused(scope: Any) -> None:
    refused(forge(body=claims(scope=scope)))


@pytest.mark.parametrize("extra", [{"foo": 1}, {"azp": "x"}, {"cnf": {"jkt": "x"}}, {"scp": ["secrets/get"]}])
def test_an_unknown_extra_claim_is_refused(extra: dict[str, Any]) -> None:
    refused(forge(body=claims() | extra))
    refused(forge(body=claims(nbf=T) | extra))


@pytest.mark.parametrize(
    "text",
    [
        as_json(claims())[:-1] + f',"exp":{T + 300}}}',  # the same value twice
        as_json(claims())[:-1] + f',"exp":{T + 3000}}}',
        as_json(claims())[:-1] + ',"sub":"agt_ZZZZZZZZZZZZZZZZZZZZZZ"}',
        '{"scope":"secrets/delete",' + as_json(claims())[1:],
        as_json(claims())[:-1] + f',"nbf":{T},"nbf":{T}}}',
    ],
)
def test_duplicate_claims_are_refused(text: str) -> None:
    refused(forge(body=text))


@pytest.mark.parametrize("text", ["[]", '"x"', "null", "", "{", as_json(claims()) + "x", "[" * 2000, '{"a":' * 1000])
def test_claims_that_are_not_a_json_object_are_refused(text: str) -> None:
    refused(forge(body=text))


def test_the_lifetime_is_bounded_by_max_ttl() -> None:
    assert ok(forge(body=claims(exp=T + 300))).agent_id == AGENT
    refused(forge(body=claims(exp=T + 301)))
    refused(forge(body=claims(exp=T)))  # exp - iat must be at least 1
    refused(forge(body=claims(exp=T - 1)))
    assert ok(forge(body=claims(exp=T + 1))).agent_id == AGENT
    assert ok(forge(body=claims(exp=T + 60)), max_ttl_seconds=60).agent_id == AGENT
    refused(forge(body=claims(exp=T + 61)), max_ttl_seconds=60)


def test_iat_in_the_future_is_allowed_60_seconds_of_skew() -> None:
    for ahead in (59, 60):
        assert ok(forge(body=claims(iat=T + ahead, exp=T + ahead + 300))).agent_id == AGENT
    refused(forge(body=claims(iat=T + 61, exp=T + 61 + 300)))


def test_exp_in_the_past_is_allowed_60_seconds_of_skew() -> None:
    token = forge()
    for late in (0, 59, 60):
        assert ok(token, now=NOW + timedelta(seconds=300 + late)).agent_id == AGENT
    refused(token, now=NOW + timedelta(seconds=361))
    refused(token, now=NOW + timedelta(seconds=360, microseconds=1))
    refused(token, now=NOW + timedelta(days=1))


def test_nbf_in_the_future_is_allowed_60_seconds_of_skew() -> None:
    assert ok(forge(body=claims(nbf=T + 59))).agent_id == AGENT
    assert ok(forge(body=claims(nbf=T + 60))).agent_id == AGENT
    refused(forge(body=claims(nbf=T + 61)))
    refused(forge(body={"nbf": T + 61, **claims()}))  # the general path too
    assert ok(forge(body=claims(nbf=T + 61)), now=NOW + timedelta(seconds=1)).agent_id == AGENT


# --- the signature --------------------------------------------------------------------------------


def test_a_tampered_payload_is_refused() -> None:
    token = forge()
    signature = token.rpartition(".")[2]
    for body in (claims(scope="secrets/get secrets/list secrets/delete"), claims(sub="agt_ZZZZZZZZZZZZZZZZZZZZZZ")):
        refused(b64(as_json(HEADER)) + "." + b64(as_json(body)) + "." + signature)
    refused(b64(as_json(header(kid="k1"))) + "." + b64(as_json(claims(exp=T + 200))) + "." + signature)


def test_a_tampered_header_is_refused() -> None:
    token = forge()
    _, payload, signature = token.split(".")
    reordered = b64(as_json({"kid": "k1", "alg": "EdDSA", "typ": "agentpack-cap+jwt"}))
    refused(f"{reordered}.{payload}.{signature}")


def test_truncated_extended_and_empty_signatures_are_refused() -> None:
    token = forge()
    signature = signature_of(token)
    for bad in (signature[:63], signature + b"\x00", signature + signature, b"", signature[:32], bytes(64)):
        refused(with_signature(token, bad))
    refused(token[:-1])
    refused(token + "A")


def test_a_malleated_signature_s_plus_l_is_refused() -> None:
    token = forge()
    signature = signature_of(token)
    s = int.from_bytes(signature[32:], "little")
    assert s < L
    malleated = signature[:32] + (s + L).to_bytes(32, "little")
    refused(with_signature(token, malleated))
    assert ok(with_signature(token, signature[:32] + s.to_bytes(32, "little"))).agent_id == AGENT  # control


def test_flipped_bits_and_another_keys_signature_are_refused() -> None:
    token = forge()
    signature = signature_of(token)
    for index in (0, 31, 32, 63):
        refused(with_signature(token, signature[:index] + bytes([signature[index] ^ 1]) + signature[index + 1 :]))
    refused(forge(seed=OTHER_SEED))
    refused(forge(seed=SEED_2))


def test_a_non_canonical_base64_signature_is_refused() -> None:
    token = forge()
    last = token[-1]
    assert last in "AQgw"
    same_bytes = BASE64URL[BASE64URL.index(last) + 1]  # differs only in the 4 bits that must be zero
    assert base64.urlsafe_b64decode(token[-86:-1] + same_bytes + "==") == signature_of(token)
    refused(token[:-1] + same_bytes)


# --- the encoding ---------------------------------------------------------------------------------


def test_padding_is_refused() -> None:
    token = forge()
    head, payload, signature = token.split(".")
    for bad in (f"{head}=.{payload}.{signature}", f"{head}.{payload}=.{signature}", f"{head}.{payload}.{signature}=="):
        refused(bad)
    padded = ".".join(base64.urlsafe_b64encode(base64.urlsafe_b64decode(p + "==")).decode() for p in token.split("."))
    assert "=" in padded
    refused(padded)


def test_standard_base64_characters_are_refused() -> None:
    token = forge()
    standard = token.replace("-", "+").replace("_", "/")
    assert standard != token
    refused(standard)
    head, payload, signature = token.split(".")
    refused(f"{head}.{payload[:10]}+{payload[11:]}.{signature}")
    refused(f"{head}.{payload[:10]}/{payload[11:]}.{signature}")


@pytest.mark.parametrize("where", [0, 10, -1, "dot", "end"])
@pytest.mark.parametrize("space", [" ", "\n", "\t", "\r\n", "\x00", "\u00a0"])
def test_whitespace_and_stray_characters_are_refused(where: int | str, space: str) -> None:
    token = forge()
    if where == "dot":
        bad = token.replace(".", "." + space, 1)
    elif where == "end":
        bad = token + space
    else:
        index = int(where) % len(token)
        bad = token[:index] + space + token[index:]
    refused(bad)


@pytest.mark.parametrize("stray", ["!", "*", "é", "\u0661", "%2B", "~"])
def test_characters_outside_base64url_are_refused(stray: str) -> None:
    head, payload, signature = forge().split(".")
    refused(f"{head}.{payload[:20]}{stray}{payload[20:]}.{signature}")
    refused(f"{head}{stray}.{payload}.{signature}")


def test_anything_but_three_segments_is_refused() -> None:
    token = forge()
    head, payload, signature = token.split(".")
    for bad in (
        f"{head}.{payload}",
        f"{head}.{payload}.{signature}.{signature}",
        f"{token}.",
        f".{token}",
        f"{head}..{payload}.{signature}",
        f"{head}.{payload}.{signature}.",
        "..",
        "...",
        "",
        "a.b.c",
        signature,
    ):
        refused(bad)


def test_the_json_serialization_is_refused() -> None:
    head, payload, signature = forge().split(".")
    flattened = {"protected": head, "payload": payload, "signature": signature}
    general = {"payload": payload, "signatures": [{"protected": head, "signature": signature}]}
    for serialization in (flattened, general):
        refused(json.dumps(serialization))
        refused(json.dumps(serialization, separators=(",", ":")))
        refused(b64(json.dumps(serialization)))


def test_a_huge_token_is_refused_before_any_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*_: Any) -> bytes:
        raise AssertionError("a huge token must be refused before it is decoded")

    monkeypatch.setattr(tokens, "_b64decode", never)
    monkeypatch.setattr(tokens, "_a2b", never)
    monkeypatch.setattr(binascii, "a2b_base64", never)
    token = forge()
    head, payload, signature = token.split(".")
    for huge in (
        "a" * 300_000,
        forge(body=claims(jti="a" * 128) | {"pad": "x" * 300_000}),
        f"{head}.{payload}{'A' * 300_000}.{signature}",
        "." * 300_000,
        token + " " * 300_000,
    ):
        refused(huge)
    refused("a" * (tokens.MAX_TOKEN_LENGTH + 1))


def test_tokens_that_are_not_strings_are_refused() -> None:
    token = forge()
    for bad in (token.encode(), None, 1, [token], {"token": token}):
        refused(bad)


def test_a_token_at_the_length_cap_is_still_considered() -> None:
    long_jti = claims(jti="j" * 128, scope=" ".join(f"route_{'x' * n}/get" for n in range(1, 40)))
    token = forge(body=long_jti)
    assert len(token) <= tokens.MAX_TOKEN_LENGTH
    assert ok(token).jti == "j" * 128


# --- the key set ----------------------------------------------------------------------------------

SMALL_ORDER_POINTS = [
    "0000000000000000000000000000000000000000000000000000000000000000",  # y = 0, order 4
    "0100000000000000000000000000000000000000000000000000000000000000",  # the identity, order 1
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # y = p - 1, order 2
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # y = p (non-canonical 0)
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # y = p + 1 (non-canonical 1)
    "0000000000000000000000000000000000000000000000000000000000000080",  # sign bit set on each
    "0100000000000000000000000000000000000000000000000000000000000080",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
]


@pytest.mark.parametrize("point", SMALL_ORDER_POINTS)
def test_small_order_points_are_not_strict_keys(point: str) -> None:
    raw = bytes.fromhex(point)
    assert not crypto.public_key_is_strict(raw)
    with pytest.raises(ValueError):
        crypto.verifier(raw)
    with pytest.raises(errors.ConfigRefused):
        tokens.KeySet.from_json(json.dumps({"k1": b64(raw)}))
    with pytest.raises(errors.ConfigRefused):
        tokens.KeySet.from_json(json.dumps({"k1": b64(PUBLIC), "k2": b64(raw)}))  # one bad key refuses them all


def test_a_mixed_order_point_is_not_a_strict_key() -> None:
    from nacl.bindings import crypto_core_ed25519_add

    mixed = crypto_core_ed25519_add(PUBLIC, bytes.fromhex(SMALL_ORDER_POINTS[2]))
    assert len(mixed) == 32 and mixed != PUBLIC
    assert not crypto.public_key_is_strict(mixed)


def test_non_canonical_encodings_are_not_strict_keys() -> None:
    p = 2**255 - 19
    for y in (p, p + 1, p + 2, 2**255 - 1):
        assert not crypto.public_key_is_strict(y.to_bytes(32, "little"))
    assert crypto.public_key_is_strict(PUBLIC)


@pytest.mark.parametrize("raw", [b"", PUBLIC[:31], PUBLIC + b"\x00", PUBLIC * 2])
def test_keys_of_the_wrong_length_are_refused(raw: bytes) -> None:
    assert not crypto.public_key_is_strict(raw)
    with pytest.raises(errors.ConfigRefused):
        tokens.KeySet.from_json(json.dumps({"k1": b64(raw)}))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        "not json",
        "[]",
        '"k1"',
        "null",
        "{}",
        f'{{"k1": "{b64(PUBLIC)}", "k1": "{b64(PUBLIC)}"}}',  # a duplicate kid
        f'{{"k1": "{b64(PUBLIC)}", "k2": NaN}}',
        '{"k1": 1}',
        '{"k1": null}',
        f'{{"k1": ["{b64(PUBLIC)}"]}}',
        f'{{"k1": "{b64(PUBLIC)}="}}',  # padding
        f'{{"k1": "{base64.urlsafe_b64encode(PUBLIC).decode()}"}}',
        f'{{"k1": "{base64.b64encode(PUBLIC).decode().rstrip("=")}x"}}',
        f'{{"k1": " {b64(PUBLIC)}"}}',
        f'{{"k1": "{b64(PUBLIC)[:-1]}"}}',
        f'{{"k1": "{b64(PUBLIC)[:-1]}{BASE64URL[BASE64URL.index(b64(PUBLIC)[-1]) + 1]}"}}',  # non-canonical
        f'{{"k1": "{b64(PUBLIC)[:-1]}!"}}',
        f'{{"": "{b64(PUBLIC)}"}}',
        f'{{"../x": "{b64(PUBLIC)}"}}',
        f'{{"{"k" * 65}": "{b64(PUBLIC)}"}}',
        f'{{"k 1": "{b64(PUBLIC)}"}}',
    ],
)
def test_a_malformed_key_set_is_refused(text: str) -> None:
    with pytest.raises(errors.ConfigRefused) as caught:
        tokens.KeySet.from_json(text)
    assert errors.wire(caught.value).status == 503


def test_standard_base64_with_plus_or_slash_is_refused() -> None:
    for seed_text in (f"key {n}" for n in range(200)):
        encoded = base64.b64encode(crypto.public_key_of(hashlib.sha256(seed_text.encode()).digest())).decode()
        if "+" in encoded or "/" in encoded:
            break
    else:
        pytest.fail("no key with + or / in its standard base64 among 200")
    with pytest.raises(errors.ConfigRefused):
        tokens.KeySet.from_json(json.dumps({"k1": encoded.rstrip("=")}))


def test_a_real_key_set_is_accepted_and_immutable() -> None:
    keys = tokens.KeySet.from_json(f'{{"k1": "{b64(PUBLIC)}", "k2.rotated-2026_11": "{b64(PUBLIC_2)}"}}')
    assert sorted(keys) == ["k1", "k2.rotated-2026_11"] and len(keys) == 2
    assert keys.public_key("k1") == PUBLIC
    assert tokens.KeySet.from_json(keys.to_json()).public_key("k2.rotated-2026_11") == PUBLIC_2
    assert keys["k1"](b"message", crypto.sign(SEED, b"message"))
    assert not keys["k1"](b"message", crypto.sign(SEED_2, b"message"))
    with pytest.raises(TypeError):
        keys["k3"] = keys["k1"]  # type: ignore[index]
    with pytest.raises(AttributeError):
        keys.extra = 1  # type: ignore[attr-defined]
    assert "k1" in repr(keys) and b64(PUBLIC) not in repr(keys)


def test_config_builds_the_key_set_and_refuses_a_bad_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTPACK_CAPABILITY_PUBLIC_KEYS", json.dumps({"k1": b64(PUBLIC)}))
    config.reset()
    keys = config.capability_keys()
    assert keys is not None and ok(forge(), keys).agent_id == AGENT
    monkeypatch.setenv("AGENTPACK_CAPABILITY_PUBLIC_KEYS", json.dumps({"k1": "A" * 43}))
    config.reset()
    with pytest.raises(errors.ConfigRefused):
        config.capability_keys()


# --- the primitives and the module boundaries -------------------------------------------------------


def test_the_primitives() -> None:
    seed, public = crypto.new_signing_key()
    assert len(seed) == 32 and len(public) == 32 and crypto.public_key_of(seed) == public
    assert crypto.public_key_is_strict(public)
    signature = crypto.sign(seed, b"hello")
    assert len(signature) == 64
    verify = crypto.verifier(public)
    assert verify(b"hello", signature)
    assert not verify(b"hellO", signature)
    assert not verify(b"hello", signature[:63])
    assert not verify(b"hello", signature + b"\x00")
    assert not crypto.public_key_is_strict(b64(public))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        crypto.sign(seed[:31], b"hello")
    assert crypto.new_signing_key()[0] != seed


def test_mint_refuses_what_no_verifier_would_accept() -> None:
    bad: dict[str, Any]
    for bad in (
        {"agent_id": "agt_short"},
        {"scopes": []},
        {"scopes": ["secrets/get", "secrets/get"]},
        {"scopes": ["secrets/get secrets/list"]},
        {"scopes": ["Secrets/Get"]},
        {"ttl_seconds": 0},
        {"jti": "a b"},
        {"kid": "../x"},
        {"seed": SEED[:31]},
    ):
        arguments: dict[str, Any] = {
            "seed": SEED, "kid": "k1", "agent_id": AGENT, "scopes": ["secrets/get"], "ttl_seconds": 60, "now": NOW
        } | bad  # fmt: skip
        with pytest.raises(ValueError):
            tokens.mint(**arguments)


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_crypto_is_the_only_module_that_imports_pynacl_or_pyjwt() -> None:
    sources = [*ROOT.glob("shared/*.py"), *ROOT.glob("functions/*/main.py"), *ROOT.glob("scripts/*.py")]
    importers = {p.relative_to(ROOT).as_posix() for p in sources if imported_modules(p) & {"nacl", "jwt"}}
    assert importers == {"shared/crypto.py"}


def test_importing_tokens_loads_no_crypto_library_and_no_datastore() -> None:
    probe = (
        "import sys\n"
        "import shared.tokens\n"
        "loaded = [m for m in ('nacl', 'jwt', 'cryptography', 'google.cloud.firestore', 'shared.store')"
        " if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([PYTHON, "-c", probe], cwd=ROOT, check=True, timeout=60)


# --- the operator script ----------------------------------------------------------------------------


def run_script(*arguments: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [PYTHON, "-m", "scripts.capability", *arguments], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def test_keygen_writes_a_0600_key_it_never_prints_and_never_overwrites(tmp_path: Path) -> None:
    key_file = tmp_path / "cap.key"
    made = run_script("keygen", "--kid", "cap-1", "--out", str(key_file))
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    private = key_file.read_text().strip()
    assert len(base64.urlsafe_b64decode(private + "=")) == 32
    assert private not in made.stdout and private not in made.stderr
    configured = json.loads(made.stdout.strip().splitlines()[-1])
    keys = tokens.KeySet.from_json(json.dumps(configured))
    assert list(keys) == ["cap-1"]
    assert keys.public_key("cap-1") == crypto.public_key_of(base64.urlsafe_b64decode(private + "="))

    again = run_script("keygen", "--kid", "cap-2", "--out", str(key_file))
    assert again.returncode != 0 and "exist" in again.stderr
    assert key_file.read_text().strip() == private

    assert run_script("keygen", "--kid", "../x", "--out", str(tmp_path / "other.key")).returncode == 2
    assert not (tmp_path / "other.key").exists()


def test_mint_prints_the_token_and_its_claims_apart(tmp_path: Path) -> None:
    key_file = tmp_path / "cap.key"
    made = run_script("keygen", "--kid", "cap-1", "--out", str(key_file))
    keys = tokens.KeySet.from_json(made.stdout.strip().splitlines()[-1])
    arguments = [
        "mint",
        "--key",
        str(key_file),
        "--kid",
        "cap-1",
        "--agent",
        AGENT,
        "--scope",
        "secrets/get secrets/list",
    ]
    minted = run_script(*arguments, "--ttl", "120", "--jti", "op-1")
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()
    assert "\n" not in token and token not in minted.stderr
    capability = tokens.verify(token, keys, now=datetime.now(UTC))
    assert capability.agent_id == AGENT and capability.scopes == {"secrets/get", "secrets/list"}
    record = json.loads(minted.stderr.strip().splitlines()[-1])
    assert record == {"jti": "op-1", "sub": AGENT, "scope": "secrets/get secrets/list",
                      "iat": capability.iat, "exp": capability.iat + 120, "kid": "cap-1"}  # fmt: skip
    assert key_file.read_text().strip() not in minted.stdout + minted.stderr

    claims_file = tmp_path / "claims.json"
    quiet = run_script(*arguments, "--claims-out", str(claims_file))
    assert quiet.returncode == 0 and quiet.stderr == ""
    written = json.loads(claims_file.read_text())
    assert set(written) == {"jti", "sub", "scope", "iat", "exp", "kid"} and written["exp"] - written["iat"] == 300
    assert quiet.stdout.strip() not in claims_file.read_text()
    assert tokens.verify(quiet.stdout.strip(), keys, now=datetime.now(UTC)).jti == written["jti"]


def test_mint_refuses_bad_arguments(tmp_path: Path) -> None:
    key_file = tmp_path / "cap.key"
    run_script("keygen", "--kid", "cap-1", "--out", str(key_file))
    base = ["mint", "--key", str(key_file), "--kid", "cap-1"]
    for bad in (
        ["--agent", "agt_short", "--scope", "secrets/get"],
        ["--agent", AGENT, "--scope", "secrets/get secrets/get"],
        ["--agent", AGENT, "--scope", ""],
        ["--agent", AGENT, "--scope", "secrets/get", "--ttl", "0"],
        ["--agent", AGENT, "--scope", "secrets/get", "--ttl", "3601"],
    ):
        result = run_script(*base, *bad)
        assert result.returncode == 2 and result.stdout == "", bad
    missing = run_script("mint", "--key", str(tmp_path / "none.key"), "--kid", "k", "--agent", AGENT, "--scope", "a")
    assert missing.returncode == 1 and missing.stdout == ""
    (tmp_path / "bad.key").write_text("not a key\n")
    broken = run_script("mint", "--key", str(tmp_path / "bad.key"), "--kid", "k", "--agent", AGENT, "--scope", "a")
    assert broken.returncode == 1 and "not a key" not in broken.stderr


def test_every_command_has_an_example_in_its_help() -> None:
    for command in ([], ["keygen"], ["mint"]):
        result = run_script(*command, "--help")
        assert result.returncode == 0 and "example" in result.stdout and "scripts.capability" in result.stdout
