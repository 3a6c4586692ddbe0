"""Capability tokens: Ed25519-signed JWS in compact form, verified offline.

A token is ``base64url(header) "." base64url(claims) "." base64url(signature)``
(RFC 7515, no padding), so any JOSE library can read it. Exactly this shape is
accepted, nothing looser:

* header: exactly ``{"alg": "EdDSA", "typ": "agentpack-cap+jwt", "kid": <kid>}``
  with a kid of the deployment's key set (no ``jku``, ``jwk``, ``x5u``, ``x5c``,
  ``crit`` or any other member, no other ``alg``);
* signature: 64 bytes in canonical base64url, verified by libsodium over the
  ASCII signing input with the kid's key (a malleated ``S >= L`` is refused);
* claims: exactly ``iss`` = ``agentpack-identity``, ``sub`` = an agent ID,
  ``aud`` = ``agentpack`` (a string), ``scope`` = space-separated route names,
  ``iat`` and ``exp`` integers (``true`` and ``1.0`` are not), ``jti``, and
  optionally ``nbf``; ``1 <= exp - iat <= max_ttl_seconds``; 60 s of clock
  skew both ways.

Header and claims are strict JSON objects: a duplicate member is refused.
Every failure raises the same plain ``errors.TokenRefused`` (which the HTTP
layer answers as one ``401`` with one text): no oracle tells a bad signature
from an expired token. The header is checked first (it names the
key), then the signature, and only then are the claims parsed: unsigned
claims never reach a parser.

Verification reads no datastore and is on the path of every request that
carries a token, so it is kept cheap: a length cap before anything else, no
key parsing (the verifiers are prebuilt), one libsodium call, and no JSON parse
for the usual spellings: the header segments that mint() and PyJWT write are
looked up in a table built with the key set, and claims as mint() writes them
are read by one anchored regular expression that admits only valid JSON with
exactly the expected members and types. Any other spelling takes the general
path (strict JSON decoding and type checks) and gets the same answer.
"""

from __future__ import annotations

import binascii
import itertools
import json
import re
import secrets
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

from shared import crypto, errors, ids, jws, strictjson
from shared.jws import b64decode as b64decode  # re-exported: the capability tools use them
from shared.jws import b64encode as b64encode

ALG = "EdDSA"
TYP = "agentpack-cap+jwt"
ISSUER = "agentpack-identity"
AUDIENCE = "agentpack"
SKEW_SECONDS = 60
DEFAULT_MAX_TTL_SECONDS = 300
MAX_TOKEN_LENGTH = 4096  # checked first: a huge token costs one len()

KID = re.compile(r"[A-Za-z0-9._-]{1,64}")
JTI = re.compile(r"[A-Za-z0-9._-]{1,128}")
ROUTE = re.compile(r"[a-z_]+(?:/[a-z_]+)*")
SCOPE = re.compile(r"[a-z_]+(?:/[a-z_]+)*(?: [a-z_]+(?:/[a-z_]+)*)*")

# 64 bytes are 86 base64url characters; the last one carries 2 bits of data and 4 bits that
# must be zero, so only A, Q, g and w may end a canonical signature.
_SIGNATURE_LENGTH = 86
_SIGNATURE_LAST = frozenset("AQgw")

# The claims exactly as mint() writes them: compact JSON, this member order, nbf last if present.
# A text that matches is valid JSON with exactly these members, no duplicate, no escape, every value
# of its type and form; so the hot path skips the JSON parser. Any other spelling (another order,
# spaces, escapes: PyJWT with a dict in another order) takes the general path, with the same answer.
_UINT = r"(?:0|[1-9][0-9]{0,15})"
_CANONICAL_CLAIMS = re.compile(
    rf'\{{"iss":"{re.escape(ISSUER)}","sub":"(?P<sub>{ids.AGENT_ID.pattern})","aud":"{re.escape(AUDIENCE)}",'
    rf'"scope":"(?P<scope>{SCOPE.pattern})","iat":(?P<iat>{_UINT}),"exp":(?P<exp>{_UINT}),'
    rf'"jti":"(?P<jti>{JTI.pattern})"(?:,"nbf":(?P<nbf>{_UINT}))?\}}'
)
_CLAIM_GROUPS = tuple(_CANONICAL_CLAIMS.groupindex[name] for name in ("sub", "scope", "iat", "exp", "jti", "nbf"))


_a2b = binascii.a2b_base64


def _b64decode(segment: str) -> bytes:
    """Strict unpadded base64url. The caller has refused ``+``, ``/`` and ``=`` in the token.

    After mapping ``-_`` to ``+/`` and restoring the padding, strict mode refuses any
    character outside the alphabet (whitespace included) and a length of 4n + 1
    (``binascii.Error``, a ``ValueError``).
    """
    return _a2b(segment.replace("-", "+").replace("_", "/") + "=" * (-len(segment) % 4), strict_mode=True)


class KeySet(Mapping[str, crypto.Verifier]):
    """The deployment's capability public keys: an immutable mapping of kid to a prebuilt verifier.

    Several kids may be live at once, so the signing key rotates with no downtime.
    """

    __slots__ = ("_by_header", "_public_keys", "_verifiers")

    def __init__(self, public_keys: Mapping[str, bytes]) -> None:
        """Keys by kid, raw 32 bytes each. Raises ``errors.ConfigRefused`` for a bad kid or a key that is not strict."""
        verifiers: dict[str, crypto.Verifier] = {}
        for kid, raw in public_keys.items():
            if not isinstance(kid, str) or KID.fullmatch(kid) is None:
                raise _refuse("a kid is not [A-Za-z0-9._-]{1,64}")
            if not crypto.public_key_is_strict(raw):
                raise _refuse("a key is not a strict Ed25519 public key (32 bytes, canonical, not of small order)")
            verifiers[kid] = crypto.verifier(raw)
        if not verifiers:
            raise _refuse("the key set is empty")
        self._public_keys: dict[str, bytes] = dict(public_keys)
        self._verifiers = verifiers
        # The usual header segments (any member order, compact or default separators, as written
        # by mint() and by PyJWT) resolved ahead of time: the hot path then skips decoding the
        # header. Any other spelling of a valid header takes the full parse: same answer, slower.
        self._by_header = {
            b64encode(json.dumps(dict(order), separators=separators).encode("ascii")): verifiers[kid]
            for kid in verifiers
            for order in itertools.permutations((("alg", ALG), ("typ", TYP), ("kid", kid)))
            for separators in ((",", ":"), (", ", ": "))
        }

    @classmethod
    def from_json(cls, text: str) -> KeySet:
        """``{"<kid>": "<base64url of a raw 32-byte public key>"}``: AGENTPACK_CAPABILITY_PUBLIC_KEYS."""
        try:
            listed = strictjson.object_of(text)
        except ValueError:
            raise _refuse("not a JSON object without duplicate kids") from None
        if listed is None:
            raise _refuse("not a JSON object")
        public_keys: dict[str, bytes] = {}
        for kid, encoded in listed.items():
            if not isinstance(encoded, str):
                raise _refuse("a key is not a string")
            try:
                public_keys[kid] = b64decode(encoded)
            except ValueError:
                raise _refuse("a key is not canonical unpadded base64url") from None
        return cls(public_keys)

    def public_key(self, kid: str) -> bytes:
        return self._public_keys[kid]

    def knows_header(self, segment: str) -> bool:
        """Whether ``segment`` is a capability header spelled the usual way, for a kid of this set."""
        return segment in self._by_header

    def to_json(self) -> str:
        return json.dumps({kid: b64encode(raw) for kid, raw in self._public_keys.items()})

    def __getitem__(self, kid: str) -> crypto.Verifier:
        return self._verifiers[kid]

    def __iter__(self) -> Iterator[str]:
        return iter(self._verifiers)

    def __len__(self) -> int:
        return len(self._verifiers)

    def __repr__(self) -> str:
        return f"KeySet(kids={sorted(self._verifiers)!r})"


def _refuse(reason: str) -> errors.ConfigRefused:
    return errors.ConfigRefused(f"capability public keys: {reason}")


class Capability(NamedTuple):
    """What a verified token grants: its agent, for the routes in ``scopes``, until ``expires_at``.

    An immutable record. A NamedTuple rather than a frozen dataclass because it is made on every
    request that carries a token and costs a third as much to build; the times stay the token's
    integer claims and become datetimes only when asked for.
    """

    agent_id: str
    scopes: frozenset[str]
    jti: str
    iat: int
    exp: int

    @property
    def issued_at(self) -> datetime:
        return datetime.fromtimestamp(self.iat, UTC)

    @property
    def expires_at(self) -> datetime:
        return datetime.fromtimestamp(self.exp, UTC)


_INVALID = "invalid capability token"  # one text for every refusal
_Claims = tuple[str, str, int, int, str, int | None]  # sub, scope, iat, exp, jti, nbf: types and forms checked


def verify(token: str, keys: KeySet, *, now: datetime, max_ttl_seconds: int = DEFAULT_MAX_TTL_SECONDS) -> Capability:
    """The capability of a valid token; anything else raises ``errors.TokenRefused``, one kind for all.

    ``now`` should be timezone-aware; a naive datetime is taken as UTC. Reads no datastore.
    """
    # Cheap checks first: a token of hundreds of KB costs one len(). Then the alphabet: ASCII and
    # none of standard base64's "+/" or padding; strict decoding below refuses every other stray.
    if (
        type(token) is not str
        or len(token) > MAX_TOKEN_LENGTH
        or not token.isascii()
        or "=" in token
        or "+" in token
        or "/" in token
    ):
        raise errors.TokenRefused(_INVALID)
    header_end = token.find(".")
    signed_end = token.find(".", header_end + 1)
    if header_end < 0 or signed_end < 0 or token.find(".", signed_end + 1) >= 0:
        raise errors.TokenRefused(_INVALID)  # not exactly three segments
    signature = token[signed_end + 1 :]
    if len(signature) != _SIGNATURE_LENGTH or signature[-1] not in _SIGNATURE_LAST:
        raise errors.TokenRefused(_INVALID)
    header = token[:header_end]
    try:
        verifier = keys._by_header.get(header) or _header_verifier(header, keys)
        # _b64decode inlined on the hot path (86 characters always need "==").
        decoded = _a2b(signature.replace("-", "+").replace("_", "/") + "==", strict_mode=True)
        if verifier is None or not verifier(token[:signed_end].encode("ascii"), decoded):
            raise errors.TokenRefused(_INVALID)
        # Only signed claims are ever parsed.
        text = _b64decode(token[header_end + 1 : signed_end]).decode("utf-8")
    except ValueError:
        raise errors.TokenRefused(_INVALID) from None
    canonical = _CANONICAL_CLAIMS.fullmatch(text)
    if canonical is not None:
        sub, scope, iat_text, exp_text, jti, nbf_text = canonical.group(*_CLAIM_GROUPS)
        iat, exp = int(iat_text), int(exp_text)
        nbf = None if nbf_text is None else int(nbf_text)
    else:
        claims = _parse_claims(text)
        if claims is None:
            raise errors.TokenRefused(_INVALID)
        sub, scope, iat, exp, jti, nbf = claims
    # Time: a life of 1 to max_ttl_seconds, and SKEW_SECONDS of clock skew both ways.
    current = (now if now.tzinfo is not None else now.replace(tzinfo=UTC)).timestamp()
    if (
        not 1 <= exp - iat <= max_ttl_seconds
        or current > exp + SKEW_SECONDS
        or iat > current + SKEW_SECONDS
        or (nbf is not None and nbf > current + SKEW_SECONDS)
    ):
        raise errors.TokenRefused(_INVALID)
    routes = scope.split(" ")
    scopes = frozenset(routes)
    if len(scopes) != len(routes):
        raise errors.TokenRefused(_INVALID)  # a route named twice
    return Capability(sub, scopes, jti, iat, exp)


def _header_verifier(segment: str, keys: KeySet) -> crypto.Verifier | None:
    """The general path for a header: strict JSON with exactly alg, typ and a known kid."""
    try:
        header = strictjson.object_of(_b64decode(segment))
    except ValueError:
        return None
    if header is None or len(header) != 3 or header.get("alg") != ALG or header.get("typ") != TYP:
        return None
    kid = header.get("kid")
    return keys._verifiers.get(kid) if type(kid) is str else None


def _parse_claims(text: str) -> _Claims | None:
    """The general path for claims: any member order and JSON spacing, strict JSON, every claim checked."""
    try:
        claims = strictjson.object_of(text)
    except ValueError:
        return None
    if claims is None:
        return None
    try:
        iss, sub, aud, scope = claims["iss"], claims["sub"], claims["aud"], claims["scope"]
        iat, exp, jti = claims["iat"], claims["exp"], claims["jti"]
    except KeyError:
        return None
    # The seven required claims are present: with one more it must be nbf; with two or more, refuse.
    count = len(claims)
    nbf = claims.get("nbf", False) if count == 8 else None
    if (
        (count != 7 and type(nbf) is not int)
        or iss != ISSUER
        or aud != AUDIENCE
        or type(iat) is not int
        or type(exp) is not int
        or type(sub) is not str
        or ids.AGENT_ID.fullmatch(sub) is None
        or type(jti) is not str
        or JTI.fullmatch(jti) is None
        or type(scope) is not str
        or SCOPE.fullmatch(scope) is None
    ):
        return None
    return sub, scope, iat, exp, jti, nbf


def new_claims(
    agent_id: str, scopes: list[str], ttl_seconds: int, now: datetime, jti: str | None = None
) -> dict[str, Any]:
    """The claims of a new token. Raises ``ValueError`` for arguments no verifier would accept."""
    if not ids.is_agent_id(agent_id):
        raise ValueError("agent_id is not an agent ID")
    if not scopes or any(ROUTE.fullmatch(route) is None for route in scopes) or len(set(scopes)) != len(scopes):
        raise ValueError("scopes must be distinct route names such as secrets/get")
    if type(ttl_seconds) is not int or ttl_seconds < 1:
        raise ValueError("ttl_seconds must be a positive integer")
    jti = jti if jti is not None else secrets.token_urlsafe(16)
    if JTI.fullmatch(jti) is None:
        raise ValueError("jti must match [A-Za-z0-9._-]{1,128}")
    iat = int((now if now.tzinfo is not None else now.replace(tzinfo=UTC)).timestamp())
    return {
        "iss": ISSUER,
        "sub": agent_id,
        "aud": AUDIENCE,
        "scope": " ".join(scopes),
        "iat": iat,
        "exp": iat + ttl_seconds,
        "jti": jti,
    }


def sign(seed: bytes, kid: str, claims: Mapping[str, Any]) -> str:
    """The compact JWS of ``claims`` signed by the private ``seed`` under ``kid``."""
    if KID.fullmatch(kid) is None:
        raise ValueError("kid must match [A-Za-z0-9._-]{1,64}")
    return jws.sign(seed, {"alg": ALG, "typ": TYP, "kid": kid}, claims)


def mint(
    seed: bytes, kid: str, agent_id: str, scopes: list[str], ttl_seconds: int, now: datetime, jti: str | None = None
) -> str:
    """A new token for ``agent_id`` and ``scopes``, valid ``ttl_seconds`` from ``now`` (operator scripts)."""
    return sign(seed, kid, new_claims(agent_id, scopes, ttl_seconds, now, jti))
