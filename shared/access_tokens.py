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
        self._seeds = dict(seeds)
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
        return jws.sign(self._seeds[self.signing_kid], {"alg": jws.ALG, "typ": TYP, "kid": self.signing_kid}, claims)

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


def verify(token: str, keys: SigningKeys, *, issuer: str, now: float) -> AccessToken:
    """The claims of a valid access token of ``issuer``, any audience (the caller checks ``aud``).

    ``now`` is a POSIX time. Expiry is checked with ``SKEW_SECONDS`` of skew both ways; liveness
    (revocation, the agent, key or family it stands on) is the caller's: it needs the datastore.
    """
    parts = jws.split(token, REFUSED)
    verifier = keys.verifier_of(token[: token.find(".")], parts.header)
    if verifier is None:
        raise errors.TokenRefused(REFUSED)
    claims = jws.signed_claims(parts, verifier, REFUSED)
    if not set(_REQUIRED) <= set(claims) <= set(_REQUIRED + _OPTIONAL):
        raise errors.TokenRefused(REFUSED)
    if not all(type(claims[name]) is str for name in _STRINGS):
        raise errors.TokenRefused(REFUSED)
    exp, iat = claims["exp"], claims["iat"]
    if (
        not jws.is_int(exp)
        or not jws.is_int(iat)
        or claims["iss"] != issuer
        or not 1 <= exp - iat <= MAX_TTL_SECONDS
        or now > exp + SKEW_SECONDS
        or iat > now + SKEW_SECONDS
        or JTI.fullmatch(claims["jti"]) is None
    ):
        raise errors.TokenRefused(REFUSED)
    actor = _member(claims.get("act"), "sub")
    jkt = _member(claims.get("cnf"), "jkt")
    key_id, family_id, grant_id = claims.get("key_id"), claims.get("family_id"), claims.get("grant_id")
    if (
        ("act" in claims and actor is None)
        or ("cnf" in claims and jkt is None)
        or any(value is not None and type(value) is not str for value in (key_id, family_id, grant_id))
        or (key_id is None and family_id is None)
    ):
        raise errors.TokenRefused(REFUSED)
    scope = claims["scope"]
    scopes = tuple(scope.split(" ")) if scope else ()
    return AccessToken(
        claims["iss"],
        claims["sub"],
        claims["aud"],
        exp,
        iat,
        claims["jti"],
        claims["client_id"],
        scopes,
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
