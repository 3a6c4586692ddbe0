"""Property tests of the parsers every credential and body goes through, with Hypothesis.

For arbitrary input and for mutations of valid tokens and keys (bit flips, truncations,
insertions, segment swaps, re-encodings: other JSON spellings, padding, the standard
alphabet, non-canonical trailing bits; duplicate members, huge numbers, non-JSON numbers),
each parser either answers or raises its own refusal (``errors.TokenRefused`` for tokens,
``errors.ConfigRefused`` for key sets, ``errors.BodyRefused`` or ``errors.InvalidRequest``
for bodies, the documented ``ValueError`` of the low-level decoders), never another
exception; and a mutation of a valid token or key is never accepted. Tokens *validly signed*
over arbitrary headers and claims are refused too, never crash: a signer controls what it signs
(a DPoP proof's key is the client's own).

Bounded and derandomized: the same examples on every run. ``AGENTPACK_FUZZ_SCALE=10`` runs ten
times as many.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from shared import access_tokens, capabilities, crypto, dpop, errors, ids, jws, keys, schema, strictjson, tokens
from tests.conftest import forged_device_key
from tests.fuzzing import fuzz_settings
from tests.oauth_support import raw_token

FUZZ = fuzz_settings(200)

NOW = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
T = int(NOW.timestamp())
AGENT = "agt_0123456789ABCDEFGHIJkl"
CAPABILITY_SEED = hashlib.sha256(b"parser fuzz capability key").digest()
CAPABILITY_KEYS = tokens.KeySet({"k1": crypto.public_key_of(CAPABILITY_SEED)})
SIGNING_SEED = hashlib.sha256(b"parser fuzz signing key").digest()
SIGNING_KEYS = access_tokens.SigningKeys({"at-1": SIGNING_SEED})
ISSUER = "http://127.0.0.1:8000"
PROOF_SEED = hashlib.sha256(b"parser fuzz DPoP key").digest()
PROOF_PUBLIC = crypto.public_key_of(PROOF_SEED)
URL = ISSUER + "/oauth/token"
BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


# ---------------------------------------------------------------- valid originals


def capability_token() -> str:
    return tokens.mint(CAPABILITY_SEED, "k1", AGENT, ["secrets/get", "agents/get"], 120, NOW, jti="fuzz-1")


def access_token() -> str:
    claims = access_tokens.new_claims(
        issuer=ISSUER,
        sub=AGENT,
        aud=ISSUER,
        client_id=AGENT,
        scopes=["agents/get"],
        tenant_id="default",
        key_id=ids.new_device_key_id(AGENT),
        iat=T,
        ttl_seconds=600,
        jkt=jws.thumbprint(PROOF_PUBLIC),
    )
    return SIGNING_KEYS.sign(claims)


def proof(claims: dict[str, Any] | None = None, header: dict[str, Any] | None = None) -> str:
    found = {"jti": "proof-1", "htm": "POST", "htu": URL, "iat": T}
    return jws.sign(
        PROOF_SEED, header or {"typ": dpop.TYP, "alg": "EdDSA", "jwk": jws.okp_jwk(PROOF_PUBLIC)}, claims or found
    )


def verify_capability(token: str) -> tokens.Capability:
    return tokens.verify(token, CAPABILITY_KEYS, now=NOW)


def verify_access(token: str) -> access_tokens.AccessToken:
    return access_tokens.verify(token, SIGNING_KEYS, issuer=ISSUER, now=float(T))


def verify_proof(token: str) -> dpop.Proof:
    return dpop.verify(token, method="POST", url=URL, now=float(T))


VERIFIERS: dict[str, tuple[Callable[[], str], Callable[[str], Any]]] = {
    "capability": (capability_token, verify_capability),
    "access": (access_token, verify_access),
    "dpop": (proof, verify_proof),
}


def test_the_originals_verify() -> None:
    """The mutation properties below are meaningful only if the unmutated tokens are accepted."""
    for make, verify in VERIFIERS.values():
        assert verify(make())


# ---------------------------------------------------------------- strategies


huge = st.one_of(st.integers(), st.integers(-(10**400), 10**400), st.sampled_from([2**63, -(2**63) - 1, 10**308]))
json_scalars = st.one_of(
    st.none(), st.booleans(), huge, st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)


def _member_text(pairs: list[tuple[str, Any]]) -> str:
    """A JSON object text from ``pairs``, duplicates kept."""
    return "{" + ",".join(f"{json.dumps(name)}:{json.dumps(value)}" for name, value in pairs) + "}"


def _json_texts(names: list[str]) -> st.SearchStrategy[str]:
    """JSON texts shaped like a header or claims: known names, odd values, duplicates, non-JSON numbers."""
    pairs = st.lists(st.tuples(st.sampled_from(names) | st.text(max_size=8), json_values), max_size=10)
    return st.one_of(
        pairs.map(_member_text),
        pairs.map(lambda p: _member_text(p).replace(": ", ":").replace("0", "1e999", 1)),  # a float that overflows
        st.sampled_from(["NaN", "Infinity", "-Infinity", "[]", "null", '"x"', "1" * 5000, "[" * 2000]),
        json_values.map(json.dumps),
        st.text(max_size=60),
    )


CAPABILITY_NAMES = ["iss", "sub", "aud", "scope", "iat", "exp", "jti", "nbf"]
ACCESS_NAMES = ["iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope", "tenant_id", "key_id", "family_id"]
ACCESS_NAMES += ["act", "grant_id", "cnf"]
PROOF_NAMES = ["jti", "htm", "htu", "iat", "ath", "nonce"]


def _flip(text: str, index: int, bit: int) -> str:
    index %= len(text)
    return text[:index] + chr(ord(text[index]) ^ (1 << bit)) + text[index + 1 :]


def _non_canonical(segment: str) -> str:
    """The same bytes with the unused trailing bits of the last character set (when it has any)."""
    if len(segment) % 4 in (2, 3):
        last = BASE64URL.index(segment[-1])
        spare = 0b1111 if len(segment) % 4 == 2 else 0b11
        return segment[:-1] + BASE64URL[last | spare]
    return segment + "A"  # 4n + 1 characters: no byte string has that length


def _reencoded(token: str, how: int) -> str:
    """One segment re-encoded: padded, standard alphabet, non-canonical bits, another JSON spelling."""
    segments = token.split(".")
    which = how % 3
    segment = segments[which]
    data = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    variants = [
        segment + "=" * (-len(segment) % 4 or 4),  # padded
        base64.b64encode(data).decode().rstrip("="),  # the standard alphabet (+ and /)
        _non_canonical(segment),
    ]
    if which < 2:
        parsed = json.loads(data)
        variants += [
            jws.b64encode(json.dumps(parsed, indent=1).encode()),
            jws.b64encode(json.dumps(parsed, ensure_ascii=True, sort_keys=True).encode()),
            jws.b64encode(json.dumps(dict(reversed(list(parsed.items())))).encode()),
            jws.b64encode((json.dumps(parsed)[:-1] + ', "iss": "x"}').encode()),  # a duplicate (or new) member
            jws.b64encode(json.dumps({**parsed, "exp": 10**400, "iat": -(10**400)}).encode()),  # huge numbers
        ]
    segments[which] = variants[(how // 3) % len(variants)]
    return ".".join(segments)


def mutations(token: str) -> st.SearchStrategy[str]:
    position = st.integers(0, len(token) - 1)
    return st.one_of(
        st.builds(_flip, st.just(token), position, st.integers(0, 6)),  # a bit flip (ASCII stays ASCII)
        st.builds(_flip, st.just(token), position, st.integers(7, 15)),  # a flip out of ASCII
        st.builds(lambda k: token[:k], position),  # truncated
        st.builds(lambda k: token[k + 1 :], position),  # its head cut off
        st.builds(lambda k, c: token[:k] + c + token[k:], position, st.sampled_from([*".=+/ \n\x00", "A", "é"])),
        st.permutations(token.split(".")).map(".".join),  # segments swapped
        st.builds(_reencoded, st.just(token), st.integers(0, 100)),
        st.builds(lambda k: token[:k] + token[k + 1 :], position),  # a character dropped
        st.just(token + "." + token.split(".")[2]),  # four segments
        st.just(token.replace(".", "..", 1)),
    )


# ---------------------------------------------------------------- tokens: mutations never verify


@pytest.mark.parametrize("kind", list(VERIFIERS))
def test_a_mutated_token_never_verifies(kind: str) -> None:
    make, verify = VERIFIERS[kind]
    original = make()

    @FUZZ
    @given(mutated=mutations(original))
    def run(mutated: str) -> None:
        assume(mutated != original)
        with pytest.raises(errors.TokenRefused):
            verify(mutated)

    run()


tokenish = st.one_of(
    st.text(max_size=200),
    st.text(alphabet=BASE64URL + ".=+/", max_size=400),
    st.lists(st.text(alphabet=BASE64URL, max_size=120), min_size=1, max_size=5).map(".".join),
    st.builds(lambda n: "A" * n + ".B.C", st.integers(4000, 9000)),  # around the length caps
    st.binary(max_size=60).map(lambda b: b.decode("latin-1")),
)


@pytest.mark.parametrize("kind", list(VERIFIERS))
def test_arbitrary_text_is_refused_as_a_token(kind: str) -> None:
    _, verify = VERIFIERS[kind]

    @FUZZ
    @given(text=tokenish)
    def run(text: str) -> None:
        with pytest.raises(errors.TokenRefused):
            verify(text)

    run()


def test_non_strings_are_refused_as_tokens() -> None:
    for _, verify in VERIFIERS.values():
        for value in (None, b"a.b.c", 1, ["a", "b", "c"]):
            with pytest.raises(errors.TokenRefused):
                verify(value)  # type: ignore[arg-type]


@FUZZ
@given(header=_json_texts(["alg", "typ", "kid", "jwk", "crit"]), claims=_json_texts(CAPABILITY_NAMES))
def test_a_signed_capability_token_of_any_shape_is_refused_or_sound(header: str, claims: str) -> None:
    token = raw_token(header.encode("utf-8", "surrogatepass"), claims.encode(), CAPABILITY_SEED)
    try:
        found = verify_capability(token)
    except errors.TokenRefused:
        return
    assert ids.is_agent_id(found.agent_id) and 1 <= found.exp - found.iat <= tokens.DEFAULT_MAX_TTL_SECONDS


@FUZZ
@given(claims=_json_texts(CAPABILITY_NAMES))
def test_signed_capability_claims_of_any_shape_are_refused_or_sound(claims: str) -> None:
    header = json.dumps({"alg": "EdDSA", "typ": tokens.TYP, "kid": "k1"})
    token = raw_token(header.encode(), claims.encode(), CAPABILITY_SEED)
    try:
        found = verify_capability(token)
    except errors.TokenRefused:
        return
    assert ids.is_agent_id(found.agent_id) and type(found.iat) is int and type(found.exp) is int


@FUZZ
@given(claims=_json_texts(ACCESS_NAMES))
def test_signed_access_token_claims_of_any_shape_are_refused_or_sound(claims: str) -> None:
    header = json.dumps({"alg": "EdDSA", "typ": access_tokens.TYP, "kid": "at-1"}, separators=(",", ":"))
    try:
        found = verify_access(raw_token(header.encode(), claims.encode(), SIGNING_SEED))
    except errors.TokenRefused:
        return
    assert found.issuer == ISSUER and 1 <= found.exp - found.iat <= access_tokens.MAX_TTL_SECONDS


jwk_values = st.one_of(
    st.just(jws.okp_jwk(PROOF_PUBLIC)),
    st.fixed_dictionaries(
        {"kty": st.sampled_from(["OKP", "EC", 1]), "crv": st.sampled_from(["Ed25519", "X25519"])},
        optional={"x": st.text(alphabet=BASE64URL + "=", max_size=50) | json_values, "d": st.just("A" * 43)},
    ),
    json_values,
)


@FUZZ
@given(
    jwk=jwk_values,
    typ=st.sampled_from([dpop.TYP, "JWT", ""]) | json_values,
    claims=st.dictionaries(st.sampled_from(PROOF_NAMES), huge | json_values, max_size=6),
    keep=st.sampled_from(["jti", "htm", "htu", "iat"]) | st.none(),
)
def test_a_signed_dpop_proof_of_any_shape_is_refused_or_sound(
    jwk: Any, typ: Any, claims: dict[str, Any], keep: Any
) -> None:
    # Mostly valid claims with one of them replaced, or claims of any shape: the proof's signer is the client.
    valid: dict[str, Any] = {"jti": "j", "htm": "POST", "htu": URL, "iat": T}
    body = {**valid, **claims} if keep is None else {**{k: v for k, v in valid.items() if k != keep}, **claims}
    token = jws.sign(PROOF_SEED, {"typ": typ, "alg": "EdDSA", "jwk": jwk}, body)
    try:
        found = verify_proof(token)
    except errors.TokenRefused:
        return
    assert found.jkt == jws.thumbprint(PROOF_PUBLIC) and abs(found.iat - T) <= dpop.SKEW_SECONDS


@pytest.mark.parametrize("iat", [10**400, -(10**400), 10**309, 2**1024], ids=["1e400", "-1e400", "1e309", "2^1024"])
def test_a_dpop_proof_with_a_huge_iat_is_refused_not_a_crash(iat: int) -> None:
    """Regression: ``abs(now - iat)`` overflowed (OverflowError, a 500) for an iat beyond a float."""
    with pytest.raises(errors.TokenRefused):
        verify_proof(proof({"jti": "j", "htm": "POST", "htu": URL, "iat": iat}))


# ---------------------------------------------------------------- key sets


@FUZZ
@given(
    text=_json_texts(["dev-1", "k1", "a b"])
    | st.dictionaries(st.text(max_size=70), st.text(max_size=50)).map(json.dumps)
)
def test_key_sets_of_any_text_are_refused_as_configuration(text: str) -> None:
    for parse in (tokens.KeySet.from_json, access_tokens.SigningKeys.from_json):
        try:
            parsed = parse(text)
        except errors.ConfigRefused:
            continue
        assert len(parsed) >= 1 and all(tokens.KID.fullmatch(kid) for kid in parsed)


# ---------------------------------------------------------------- keys


DEVICE_KEY_ID = ids.new_device_key_id(AGENT)
DEVICE_KEY = forged_device_key(DEVICE_KEY_ID)
BRIDGE_KEY = keys.new_bridge_key()
FAMILY_ID = ids.new_family_id(AGENT, DEVICE_KEY_ID)
REFRESH_TOKEN = keys.new_refresh_token(FAMILY_ID)


def test_the_original_keys_parse() -> None:
    assert keys.parse_device_key(DEVICE_KEY) == keys.DeviceKeyName(key_id=DEVICE_KEY_ID, agent_id=AGENT)
    assert keys.is_bridge_key(BRIDGE_KEY)
    assert keys.family_of_refresh_token(REFRESH_TOKEN) == FAMILY_ID


@FUZZ
@given(text=tokenish | st.text(alphabet="apkdrb_0123456789AZaz", max_size=120))
def test_key_parsers_never_raise(text: str) -> None:
    assert keys.parse_device_key(text) is None or text.startswith("apkd_")
    assert keys.is_bridge_key(text) in (True, False)
    family = keys.family_of_refresh_token(text)
    assert family is None or family.startswith("rtf_")


@pytest.mark.parametrize("kind", ["device", "bridge", "refresh"])
def test_a_mutated_key_is_never_accepted(kind: str) -> None:
    originals: dict[str, tuple[str, Callable[[str], bool]]] = {
        "device": (DEVICE_KEY, lambda k: keys.parse_device_key(k) is not None),
        "bridge": (BRIDGE_KEY, keys.is_bridge_key),
        "refresh": (REFRESH_TOKEN, lambda k: keys.family_of_refresh_token(k) is not None),
    }
    original, accepted = originals[kind]

    @FUZZ
    @given(
        mutated=st.one_of(
            st.builds(_flip, st.just(original), st.integers(0, len(original) - 1), st.integers(0, 6)),
            st.builds(lambda k: original[:k], st.integers(0, len(original) - 1)),
            st.builds(
                lambda k, c: original[:k] + c + original[k + 1 :],
                st.integers(0, len(original) - 1),
                st.sampled_from("0aZ_9Az"),
            ),  # one character replaced
            st.builds(
                lambda k: original[:k] + original[k + 1] + original[k] + original[k + 2 :],
                st.integers(0, len(original) - 2),
            ),  # two neighbours swapped
        )
    )
    def run(mutated: str) -> None:
        assume(mutated != original)
        assert not accepted(mutated)

    run()


# ---------------------------------------------------------------- strict JSON and bodies


@FUZZ
@given(
    raw=st.one_of(
        st.binary(max_size=200),
        _json_texts(["agent_id", "name", "value", "page_size"]).map(lambda t: t.encode("utf-8", "surrogatepass")),
        json_values.map(lambda v: json.dumps({"body": v}).encode()),
    )
)
def test_a_body_is_an_object_or_refused_naming_no_value(raw: bytes) -> None:
    try:
        found = strictjson.body_object(raw)
    except errors.BodyRefused as refusal:
        where = refusal.reason.split(": ")[0].split(".")  # the field's path: plain names only, never a value
        assert all(part in ("body", "a field") or strictjson.is_sane_field(part) for part in where), refusal.reason
        return
    assert type(found) is dict


@FUZZ
@given(pairs=st.lists(st.tuples(st.text(max_size=5), json_values), min_size=2, max_size=6), nest=st.booleans())
def test_a_duplicate_member_anywhere_is_refused(pairs: list[tuple[str, Any]], nest: bool) -> None:
    doubled = [*pairs, pairs[0]]
    text = _member_text(doubled)
    raw = ('{"outer": [' + text + "]}" if nest else text).encode("utf-8", "surrogatepass")
    with pytest.raises(errors.BodyRefused):
        strictjson.body_object(raw)
    with pytest.raises(ValueError):
        strictjson.object_of(raw)


@FUZZ
@given(
    number=st.integers(10**strictjson.MAX_INT_DIGITS, 10**4000)
    | st.integers(-(10**4000), -(10**strictjson.MAX_INT_DIGITS))
)
def test_a_huge_integer_in_a_body_is_refused(number: int) -> None:
    with pytest.raises(errors.BodyRefused, match="integer too large"):
        strictjson.body_object(json.dumps({"page_size": number}).encode())


@FUZZ
@given(mantissa=st.integers(1, 10**6), exponent=st.integers(309, 10**5), sign=st.sampled_from(["", "-"]))
def test_a_number_too_large_to_be_finite_is_refused(mantissa: int, exponent: int, sign: str) -> None:
    huge = f"{sign}{mantissa}e{exponent}"  # a float of infinite value: Infinity by another spelling
    with pytest.raises(errors.BodyRefused, match="ttl: number too large"):
        strictjson.body_object(f'{{"ttl": {huge}}}'.encode())
    with pytest.raises(ValueError):
        strictjson.object_of(f'{{"exp": {huge}}}')
    tiny = strictjson.body_object(f'{{"ttl": {sign}{mantissa}e-{exponent}}}'.encode())["ttl"]
    assert abs(tiny) < 1e-300  # the control: a tiny number is finite, and kept


@FUZZ
@given(raw=st.binary(max_size=200) | _json_texts(["a"]).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_a_token_segment_is_an_object_none_or_a_value_error(raw: bytes) -> None:
    # object_of's documented refusal is a plain ValueError: every caller maps it to its token's one refusal.
    try:
        found = strictjson.object_of(raw)
    except ValueError:
        return
    assert found is None or type(found) is dict


@FUZZ
@given(text=tokenish)
def test_strict_base64url_decodes_only_its_canonical_text(text: str) -> None:
    try:
        data = jws.b64decode(text)
    except ValueError:
        return
    assert jws.b64encode(data) == text


@FUZZ
@given(text=tokenish)
def test_jws_split_answers_or_refuses(text: str) -> None:
    try:
        parts = jws.split(text, "refused")
    except errors.TokenRefused as refusal:
        assert refusal.reason == "refused"
        return
    assert type(parts.header) is dict and len(parts.signature) == 64


@FUZZ
@given(jwk=jwk_values)
def test_a_jwk_is_a_strict_public_key_or_none(jwk: Any) -> None:
    raw = jws.okp_public_key(jwk)
    assert raw is None or crypto.public_key_is_strict(raw)


@FUZZ
@given(
    body=st.dictionaries(st.sampled_from(["jti", "sub", "scope", "iat", "exp", "kid", "x"]), json_values, max_size=7)
)
def test_a_capability_record_body_is_parsed_or_refused_as_invalid(body: dict[str, Any]) -> None:
    try:
        record = schema.parse(capabilities.Record, body)
    except errors.InvalidRequest:
        return
    assert 0 <= record.iat <= 2**40 and 0 <= record.exp <= 2**40
