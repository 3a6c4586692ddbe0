"""OAuth 2.0 access tokens (RFC 9068): JWTs signed with EdDSA by the service's online keys.

Header exactly ``{"alg": "EdDSA", "typ": "at+jwt", "kid"}``. Claims, as minted
here and nothing else: ``iss``, ``sub``, ``aud``, ``exp``, ``iat``, ``jti``,
``client_id``, ``scope``, ``tenant_id``, and the service's own ``key_id`` (the
client key the token was issued through), ``family_id`` (its refresh-token
family, when it has one), ``act`` (``{"sub": agent}`` when an agent acts for a
user), ``grant_id`` (that user's grant) and ``cnf`` (``{"jkt"}``, when bound
to a DPoP key). The private claims let a live check read, in one round trip,
every record the token stands on.

The signing keys are online (``AGENTPACK_TOKEN_SIGNING_KEYS``, or Secret
Manager): an oldest-to-newest list by kid, the newest signs, all are published
in the JWKS, so a key can be rotated in with no downtime. Every refusal is the
same ``errors.TokenRefused``.
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

from shared import crypto, errors, ids, jws, strictjson

TYP = "at+jwt"
SKEW_SECONDS = 60
MAX_TTL_SECONDS = 3600
REFUSED = "invalid access token"
KID = re.compile(r"[A-Za-z0-9._-]{1,64}")
JTI = re.compile(r"[A-Za-z0-9_-]{1,64}")
_REQUIRED = ("iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope", "tenant_id")
_OPTIONAL = ("key_id", "family_id", "act", "grant_id", "cnf")
_STRINGS = ("iss", "sub", "aud", "jti", "client_id", "scope", "tenant_id")


class AccessToken(NamedTuple):
    """The verified claims of an access token."""

    issuer: str
    sub: str
    aud: str
    exp: int
    iat: int
    jti: str
    client_id: str
    scopes: tuple[str, ...]
    tenant_id: str
    key_id: str | None  # None only for a public client's token, which comes from a refresh family
    family_id: str | None
    actor: str | None  # act.sub: the agent acting for the user ``sub``
    grant_id: str | None
    jkt: str | None  # cnf.jkt: the DPoP key the token is bound to

    def claims(self) -> dict[str, Any]:
        """The token's claims as minted (for introspection)."""
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": self.sub,
            "aud": self.aud,
            "exp": self.exp,
            "iat": self.iat,
            "jti": self.jti,
            "client_id": self.client_id,
            "scope": " ".join(self.scopes),
            "tenant_id": self.tenant_id,
        }
        if self.actor is not None:
            claims["act"] = {"sub": self.actor}
        return claims


class SigningKeys(Mapping[str, crypto.Verifier]):
    """The online signing keys by kid, oldest first: the newest signs; every one verifies and is published."""

    def __init__(self, seeds: Mapping[str, bytes]) -> None:
        if not seeds:
            raise errors.ConfigRefused("token signing keys: the key set is empty")
        verifiers: dict[str, crypto.Verifier] = {}
        public: dict[str, bytes] = {}
        for kid, seed in seeds.items():
            if KID.fullmatch(kid) is None:
                raise errors.ConfigRefused("token signing keys: a kid is not [A-Za-z0-9._-]{1,64}")
            if len(seed) != crypto.ED25519_SEED_BYTES:
                raise errors.ConfigRefused("token signing keys: a key is not a 32-byte Ed25519 seed")
            public[kid] = crypto.public_key_of(seed)
            verifiers[kid] = crypto.verifier(public[kid])
        self._signer = crypto.signer(seeds[list(seeds)[-1]])
        self._public = public
        self._verifiers = verifiers
        self.signing_kid = list(seeds)[-1]
        # The header segments this service writes, by kid: the hot path skips decoding them.
        self._by_header = {_header_segment(kid): verifiers[kid] for kid in verifiers}

    @classmethod
    def from_json(cls, text: str) -> SigningKeys:
        """``{"<kid>": "<base64url of a 32-byte seed>", …}`` in document order, oldest first."""
        try:
            listed = strictjson.object_of(text)
        except ValueError:
            raise errors.ConfigRefused("token signing keys: not a JSON object without duplicate kids") from None
        if listed is None or not all(type(v) is str for v in listed.values()):
            raise errors.ConfigRefused("token signing keys: not a JSON object of base64url strings")
        try:
            return cls({kid: jws.b64decode(seed) for kid, seed in listed.items()})
        except ValueError:
            raise errors.ConfigRefused("token signing keys: a key is not canonical unpadded base64url") from None

    def public_key(self, kid: str) -> bytes:
        return self._public[kid]

    def jwks(self) -> dict[str, Any]:
        """The JSON Web Key Set of every key (RFC 7517), newest last."""
        return {
            "keys": [
                {**jws.okp_jwk(raw), "kid": kid, "use": "sig", "alg": jws.ALG} for kid, raw in self._public.items()
            ]
        }

    def sign(self, claims: Mapping[str, Any]) -> str:
        return jws.sign(self._signer, {"alg": jws.ALG, "typ": TYP, "kid": self.signing_kid}, claims)

    def known_header(self, header_segment: str) -> crypto.Verifier | None:
        """The verifier of a header segment spelled as this service writes it, else None."""
        return self._by_header.get(header_segment)

    def verifier_of(self, header_segment: str, header: Mapping[str, Any] | None) -> crypto.Verifier | None:
        known = self._by_header.get(header_segment)
        if known is not None or header is None:
            return known
        if set(header) != {"alg", "typ", "kid"} or header["alg"] != jws.ALG or header["typ"] != TYP:
            return None
        kid = header["kid"]
        return self._verifiers.get(kid) if type(kid) is str else None

    def __getitem__(self, kid: str) -> crypto.Verifier:
        return self._verifiers[kid]

    def __iter__(self) -> Iterator[str]:
        return iter(self._verifiers)

    def __len__(self) -> int:
        return len(self._verifiers)

    def __repr__(self) -> str:  # never the seeds
        return f"SigningKeys(kids={list(self._verifiers)!r})"


def _header_segment(kid: str) -> str:
    return jws.b64encode(json.dumps({"alg": jws.ALG, "typ": TYP, "kid": kid}, separators=(",", ":")).encode())


def new_claims(
    *,
    issuer: str,
    sub: str,
    aud: str,
    client_id: str,
    scopes: list[str],
    tenant_id: str,
    key_id: str | None,
    iat: int,
    ttl_seconds: int,
    family_id: str | None = None,
    actor: str | None = None,
    grant_id: str | None = None,
    jkt: str | None = None,
) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": sub,
        "aud": aud,
        "exp": iat + ttl_seconds,
        "iat": iat,
        "jti": ids.random_base62(22),
        "client_id": client_id,
        "scope": " ".join(scopes),
        "tenant_id": tenant_id,
    }
    if key_id is not None:
        claims["key_id"] = key_id
    if family_id is not None:
        claims["family_id"] = family_id
    if actor is not None:
        claims["act"] = {"sub": actor}
    if grant_id is not None:
        claims["grant_id"] = grant_id
    if jkt is not None:
        claims["cnf"] = {"jkt": jkt}
    return claims


def header_typ(token: str) -> str | None:
    """The ``typ`` of a compact JWS's header, or None: how bearer tokens are told apart."""
    end = token.find(".")
    if end <= 0 or end > 1024:
        return None
    try:
        header = strictjson.object_of(jws.b64decode(token[:end]))
    except ValueError:
        return None
    typ = header.get("typ") if header is not None else None
    return typ if type(typ) is str else None


# Claims exactly as new_claims() and json.dumps(separators=(",", ":")) write them, with strings that need
# no escape: one anchored regular expression admits only valid JSON with exactly these members in this
# order, so the hot path skips the JSON parser. Any other spelling takes the general path (strict JSON,
# the same checks) and gets the same answer: every token this service mints takes the fast one.
# Possessive repeats (``*+``, ``?+``) match the same texts; they only spare the engine the backtracking
# points it would never use: a string stops at its closing quote, and each optional member starts with
# its own name.
_TEXT = r'"([^"\\\x00-\x1f]*+)"'
_INT = r"(0|[1-9][0-9]{0,15}+)"
_CANONICAL_CLAIMS = re.compile(
    r'\{"iss":' + _TEXT + r',"sub":' + _TEXT + r',"aud":' + _TEXT + r',"exp":' + _INT + r',"iat":' + _INT
    + r',"jti":"(' + JTI.pattern + r'+)","client_id":' + _TEXT + r',"scope":' + _TEXT + r',"tenant_id":' + _TEXT
    + r'(?:,"key_id":' + _TEXT + r")?+(?:,\"family_id\":" + _TEXT + r')?+(?:,"act":\{"sub":' + _TEXT
    + r'\})?+(?:,"grant_id":' + _TEXT + r')?+(?:,"cnf":\{"jkt":' + _TEXT + r"\})?+\}"
)  # fmt: skip
_SIGNATURE_LENGTH = 86  # 64 bytes in unpadded base64url
_a2b = binascii.a2b_base64
_SIGNATURE_LAST = frozenset("AQgw")  # the last character carries 2 bits and 4 zero bits: canonical only
_PADDING = ("", "===", "==", "=")  # by length % 4: "=" * (-length % 4)
_new_tuple = tuple.__new__


def verify(token: str, keys: SigningKeys, *, issuer: str, now: float) -> AccessToken:
    """The claims of a valid access token of ``issuer``, any audience (the caller checks ``aud``).

    ``now`` is a POSIX time. Expiry is checked with ``SKEW_SECONDS`` of skew both ways; liveness
    (revocation, the agent, key or family it stands on) is the caller's: it needs the datastore.
    The header as this service writes it is looked up, not parsed; the signature is checked before
    the claims are decoded; the claims as minted are read by one regular expression.
    """
    if (
        type(token) is not str
        or len(token) > jws.MAX_LENGTH
        or not token.isascii()
        or "=" in token
        or "+" in token
        or "/" in token  # base64url only: strict decoding below refuses every other stray
    ):
        raise errors.TokenRefused(REFUSED)
    header_end = token.find(".")
    signed_end = token.rfind(".")
    verifier = keys._by_header.get(token[:header_end]) if header_end > 0 else None
    if (
        verifier is None
        or signed_end <= header_end
        or len(token) - signed_end - 1 != _SIGNATURE_LENGTH
        or token[-1] not in _SIGNATURE_LAST
    ):
        return _verify_general(token, keys, issuer=issuer, now=now)
    # The claims and the signature in the standard alphabet, in one pass (each decoded strictly below).
    body = token[header_end + 1 :].replace("-", "+").replace("_", "/")
    claims_end = signed_end - header_end - 1
    try:
        # 86 characters always need "==".
        if not verifier(token[:signed_end].encode("ascii"), _a2b(body[claims_end + 1 :] + "==", strict_mode=True)):
            raise errors.TokenRefused(REFUSED)
        text = _a2b(body[:claims_end] + _PADDING[claims_end % 4], strict_mode=True).decode("utf-8")
    except ValueError:  # TokenRefused too
        raise errors.TokenRefused(REFUSED) from None
    match = _CANONICAL_CLAIMS.fullmatch(text)
    if match is None:
        return _checked(_parsed_claims(text), issuer, now)
    iss, sub, aud, exp_text, iat_text, jti, client_id, scope, tenant_id, key_id, family_id, actor, grant_id, jkt = (
        match.groups()
    )
    exp, iat = int(exp_text), int(iat_text)
    # _checked's rules, inline on the hot path (the jti's form is in the expression already).
    if (
        iss != issuer
        or not 1 <= exp - iat <= MAX_TTL_SECONDS
        or now > exp + SKEW_SECONDS
        or iat > now + SKEW_SECONDS
        or (key_id is None and family_id is None)
    ):
        raise errors.TokenRefused(REFUSED)
    scopes = tuple(scope.split(" ")) if scope else ()
    fields = (iss, sub, aud, exp, iat, jti, client_id, scopes, tenant_id, key_id, family_id, actor, grant_id, jkt)
    # What AccessToken(*fields) does, without the Python frame of the generated __new__.
    return _new_tuple(AccessToken, fields)


def _checked(claims: AccessToken, issuer: str, now: float) -> AccessToken:
    if (
        claims.issuer != issuer
        or not 1 <= claims.exp - claims.iat <= MAX_TTL_SECONDS
        or now > claims.exp + SKEW_SECONDS
        or claims.iat > now + SKEW_SECONDS
        or JTI.fullmatch(claims.jti) is None
        or (claims.key_id is None and claims.family_id is None)
    ):
        raise errors.TokenRefused(REFUSED)
    return claims


def _verify_general(token: str, keys: SigningKeys, *, issuer: str, now: float) -> AccessToken:
    """Any other spelling of a header: parsed strictly, then held to the same checks."""
    parts = jws.split(token, REFUSED)
    verifier = keys.verifier_of(token[: token.find(".")], parts.header)
    if verifier is None:
        raise errors.TokenRefused(REFUSED)
    claims = jws.signed_claims(parts, verifier, REFUSED)
    return _checked(_claims_of(claims), issuer, now)


def _parsed_claims(text: str) -> AccessToken:
    try:
        claims = strictjson.object_of(text)
    except ValueError:
        raise errors.TokenRefused(REFUSED) from None
    if claims is None:
        raise errors.TokenRefused(REFUSED)
    return _claims_of(claims)


def _claims_of(claims: dict[str, Any]) -> AccessToken:
    """The claims of a parsed claims object, every member of its type, none unknown."""
    if not set(_REQUIRED) <= set(claims) <= set(_REQUIRED + _OPTIONAL):
        raise errors.TokenRefused(REFUSED)
    if not all(type(claims[name]) is str for name in _STRINGS):
        raise errors.TokenRefused(REFUSED)
    exp, iat = claims["exp"], claims["iat"]
    actor = _member(claims.get("act"), "sub")
    jkt = _member(claims.get("cnf"), "jkt")
    key_id, family_id, grant_id = claims.get("key_id"), claims.get("family_id"), claims.get("grant_id")
    if (
        not jws.is_int(exp)
        or not jws.is_int(iat)
        or ("act" in claims and actor is None)
        or ("cnf" in claims and jkt is None)
        or any(value is not None and type(value) is not str for value in (key_id, family_id, grant_id))
    ):
        raise errors.TokenRefused(REFUSED)
    scope = claims["scope"]
    return AccessToken(
        claims["iss"],
        claims["sub"],
        claims["aud"],
        exp,
        iat,
        claims["jti"],
        claims["client_id"],
        tuple(scope.split(" ")) if scope else (),
        claims["tenant_id"],
        key_id,
        family_id,
        actor,
        grant_id,
        jkt,
    )


def _member(value: Any, name: str) -> str | None:
    """``value[name]`` when ``value`` is exactly ``{name: <string>}``, else None."""
    if type(value) is dict and len(value) == 1 and type(value.get(name)) is str:
        return str(value[name])
    return None
