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
Every failure is the same ``401`` with the same text: no oracle tells a bad
signature from an expired token. The signature is checked before the claims
are parsed, so only signed claims ever reach the JSON parser; the header is
parsed first (it names the key), bounded by the token length cap.

Verification reads no datastore and costs one base64 decode and one JSON parse
per part plus one libsodium verification.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import logging
import re
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared import crypto, errors, ids
from shared.config import ConfigError

log = logging.getLogger("agentpack")

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

_PUBLIC_KEY = re.compile(r"[A-Za-z0-9_-]*")
# 64 bytes are 86 base64url characters; the last one carries 2 bits of data and 4 bits that
# must be zero, so only A, Q, g and w may end a canonical signature.
_SIGNATURE_LENGTH = 86
_SIGNATURE_LAST = frozenset("AQgw")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        raise ValueError("duplicate member")
    return found


def _constant(name: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


# Prebuilt decoders: json.loads(..., hook) would build a new one per call.
_JSON = json.JSONDecoder(object_pairs_hook=_object, parse_constant=_constant)
# The hot path's scanner leaves every object as its list of pairs (no Python call per object);
# _json_object refuses duplicates at the top level. A nested object or array is never a valid
# header member or claim value (those are strings and integers), so it is refused whatever it holds.
_SCAN_PAIRS = json.JSONDecoder(object_pairs_hook=list, parse_constant=_constant).scan_once


def _b64decode(segment: str) -> bytes:
    """Strict unpadded base64url. The caller has refused ``+``, ``/`` and ``=`` in the token.

    After mapping ``-_`` to ``+/`` and restoring the padding, strict mode refuses any
    character outside the alphabet (whitespace included) and a length of 4n + 1
    (``binascii.Error``, a ``ValueError``).
    """
    return binascii.a2b_base64(
        segment.replace("-", "+").replace("_", "/") + "=" * (-len(segment) % 4), strict_mode=True
    )


def _json_object(data: bytes) -> dict[str, Any] | None:
    """The JSON object of ``data`` with no duplicate member, or None (or a ValueError)."""
    text = data.decode("utf-8")
    if text[:1] == "{":
        pairs, end = _SCAN_PAIRS(text, 0)
        if end == len(text):
            found = dict(pairs)
            return found if len(found) == len(pairs) else None
    found = _JSON.decode(text)  # rare: surrounding whitespace, or not an object at all
    return found if type(found) is dict else None


def b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class KeySet(Mapping[str, crypto.Verifier]):
    """The deployment's capability public keys: an immutable mapping of kid to a prebuilt verifier.

    Several kids may be live at once, so the signing key rotates with no downtime.
    """

    __slots__ = ("_by_header", "_public_keys", "_verifiers")

    def __init__(self, public_keys: Mapping[str, bytes]) -> None:
        """Keys by kid, raw 32 bytes each. Raises ConfigError for a bad kid or a key that is not strict."""
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
            listed = _JSON.decode(text)
        except (ValueError, RecursionError):
            raise _refuse("not a JSON object without duplicate kids") from None
        if not isinstance(listed, dict):
            raise _refuse("not a JSON object")
        public_keys: dict[str, bytes] = {}
        for kid, encoded in listed.items():
            if not isinstance(encoded, str) or _PUBLIC_KEY.fullmatch(encoded) is None:
                raise _refuse("a key is not unpadded base64url")
            try:
                raw = _b64decode(encoded)
            except ValueError:
                raise _refuse("a key is not unpadded base64url") from None
            if b64encode(raw) != encoded:
                raise _refuse("a key is not canonical base64url")
            public_keys[kid] = raw
        return cls(public_keys)

    def public_key(self, kid: str) -> bytes:
        return self._public_keys[kid]

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


def _refuse(reason: str) -> ConfigError:
    log.error("capability public keys refused: %s", reason)
    return ConfigError()


@dataclass(frozen=True, slots=True)
class Capability:
    """What a verified token grants: its agent, for the routes in ``scopes``, until ``expires_at``.

    The times are kept as the token's integer claims and turned into datetimes only when asked
    for: most requests never look at them.
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


def verify(token: str, keys: KeySet, *, now: datetime, max_ttl_seconds: int = DEFAULT_MAX_TTL_SECONDS) -> Capability:
    """The capability of a valid token; anything else raises ``Unauthenticated``, one text for all."""
    capability = _verify(token, keys, now, max_ttl_seconds)
    if capability is None:
        raise errors.Unauthenticated()
    return capability


def _verify(token: str, keys: KeySet, now: datetime, max_ttl_seconds: int) -> Capability | None:
    # Cheap checks first: a token of hundreds of KB costs one len(). Then the alphabet: ASCII,
    # and none of the characters of standard base64 or padding; strict decoding refuses the rest.
    if (
        type(token) is not str
        or len(token) > MAX_TOKEN_LENGTH
        or not token.isascii()
        or "=" in token
        or "+" in token
        or "/" in token
    ):
        return None
    parts = token.split(".")
    if len(parts) != 3:
        return None
    header, payload, signature = parts
    if len(signature) != _SIGNATURE_LENGTH or signature[-1] not in _SIGNATURE_LAST:
        return None
    try:
        verifier = keys._by_header.get(header) or _header_verifier(header, keys)
        if verifier is None or not verifier(f"{header}.{payload}".encode("ascii"), _b64decode(signature)):
            return None
        claims = _json_object(_b64decode(payload))  # only signed claims reach the parser
    except (ValueError, RecursionError):
        return None
    if claims is None:
        return None
    return _capability(claims, now, max_ttl_seconds)


def _header_verifier(segment: str, keys: KeySet) -> crypto.Verifier | None:
    """The verifier of the kid a header names, if the header is exactly alg, typ and a known kid."""
    header = _json_object(_b64decode(segment))
    if header is None or len(header) != 3 or header.get("alg") != ALG or header.get("typ") != TYP:
        return None
    kid = header.get("kid")
    return keys._verifiers.get(kid) if type(kid) is str else None


def _capability(claims: dict[str, Any], now: datetime, max_ttl_seconds: int) -> Capability | None:
    try:
        iss, sub, aud, scope = claims["iss"], claims["sub"], claims["aud"], claims["scope"]
        iat, exp, jti = claims["iat"], claims["exp"], claims["jti"]
    except KeyError:
        return None
    # The seven required claims are present: with one more it must be nbf, with two or more refuse.
    count = len(claims)
    nbf = claims.get("nbf", False) if count == 8 else None
    if (
        (count != 7 and type(nbf) is not int)
        or iss != ISSUER
        or aud != AUDIENCE
        or type(iat) is not int
        or type(exp) is not int
        or not 1 <= exp - iat <= max_ttl_seconds
        or type(sub) is not str
        or ids.AGENT_ID.fullmatch(sub) is None
        or type(jti) is not str
        or JTI.fullmatch(jti) is None
        or type(scope) is not str
        or SCOPE.fullmatch(scope) is None
    ):
        return None
    current = (now if now.tzinfo is not None else now.replace(tzinfo=UTC)).timestamp()
    if (
        current > exp + SKEW_SECONDS
        or iat > current + SKEW_SECONDS
        or (nbf is not None and nbf > current + SKEW_SECONDS)
    ):
        return None
    routes = scope.split(" ")
    scopes = frozenset(routes)
    if len(scopes) != len(routes):
        return None
    return Capability(sub, scopes, jti, iat, exp)


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
    header = {"alg": ALG, "typ": TYP, "kid": kid}
    signing_input = ".".join(
        b64encode(json.dumps(part, separators=(",", ":")).encode("utf-8")) for part in (header, claims)
    )
    return signing_input + "." + b64encode(crypto.sign(seed, signing_input.encode("ascii")))


def mint(
    seed: bytes, kid: str, agent_id: str, scopes: list[str], ttl_seconds: int, now: datetime, jti: str | None = None
) -> str:
    """A new token for ``agent_id`` and ``scopes``, valid ``ttl_seconds`` from ``now`` (operator scripts)."""
    return sign(seed, kid, new_claims(agent_id, scopes, ttl_seconds, now, jti))
