"""DPoP proofs (RFC 9449) with Ed25519 keys: sender-constrained access tokens.

A proof is a JWS whose header is ``{"typ": "dpop+jwt", "alg": "EdDSA", "jwk":
<public OKP key>}`` and whose claims name the request: ``htm`` (method),
``htu`` (URL, without query or fragment), ``iat`` (within ``SKEW_SECONDS``),
``jti`` (used once: the caller stores it) and, beside an access token, ``ath``
(the token's SHA-256, base64url). A token bound to a key carries that key's
thumbprint (``cnf.jkt``) and is accepted only with a fresh proof by that key.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

from shared import crypto, errors, jws

TYP = "dpop+jwt"
SKEW_SECONDS = 60
REFUSED = "invalid DPoP proof"
MAX_JTI_LENGTH = 256


class Proof(NamedTuple):
    jkt: str  # the RFC 7638 thumbprint of the proof's key
    jti: str
    iat: int

    def replay_id(self) -> str:
        """A document ID for this proof's ``jti``, spread evenly (a hash) and scoped to its key."""
        return hashlib.sha256(f"{self.jkt}\x00{self.jti}".encode()).hexdigest()


def token_hash(access_token: str) -> str:
    """``ath``: the base64url SHA-256 of the access token's ASCII text."""
    return jws.b64encode(hashlib.sha256(access_token.encode("ascii")).digest())


def verify(proof: str, *, method: str, url: str, now: float, access_token: str | None = None) -> Proof:
    """The key and ``jti`` of a valid proof for ``method`` ``url`` (and ``access_token``, if given).

    Raises ``errors.TokenRefused``; storing the ``jti`` so it is used once is the caller's.
    """
    parts = jws.split(proof, REFUSED)
    header = parts.header
    if set(header) != {"typ", "alg", "jwk"} or header["typ"] != TYP or header["alg"] != jws.ALG:
        raise errors.TokenRefused(REFUSED)
    public_key = jws.okp_public_key(header["jwk"])
    if public_key is None or set(header["jwk"]) - {"kty", "crv", "x", "kid", "use", "alg"}:
        raise errors.TokenRefused(REFUSED)
    claims = jws.signed_claims(parts, crypto.verifier(public_key), REFUSED)
    expected = {"jti", "htm", "htu", "iat"} | ({"ath"} if access_token is not None else set())
    if not expected <= set(claims) <= expected | {"nonce"}:
        raise errors.TokenRefused(REFUSED)
    jti, iat, htu = claims["jti"], claims["iat"], claims["htu"]
    if (
        type(jti) is not str
        or not 1 <= len(jti) <= MAX_JTI_LENGTH
        or not jws.is_int(iat)
        or not now - SKEW_SECONDS <= iat <= now + SKEW_SECONDS  # compared, never subtracted: iat may be huge
        or claims["htm"] != method
        or type(htu) is not str
        or htu.split("#", 1)[0].split("?", 1)[0] != url
        or (access_token is not None and claims["ath"] != token_hash(access_token))
    ):
        raise errors.TokenRefused(REFUSED)
    return Proof(jws.thumbprint(public_key), jti, iat)
