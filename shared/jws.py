"""Compact JWS with EdDSA (RFC 7515, RFC 8037): the strict pieces every token format here shares.

Exactly three unpadded base64url segments, strictly decoded; header and claims
are strict JSON objects (``strictjson``); the signature is 64 bytes, checked by
libsodium (``crypto``) before any claim is parsed. Failures raise
``errors.TokenRefused`` with one text per token kind: no oracle.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from typing import Any, NamedTuple

from shared import crypto, errors, strictjson

ALG = "EdDSA"
MAX_LENGTH = 8192  # checked first: a huge token costs one len()
_URLSAFE = str.maketrans("-_", "+/")


def b64encode(data: bytes) -> str:
    """Unpadded base64url, as JWS writes it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64decode(text: str) -> bytes:
    """Strict unpadded base64url: only ``[A-Za-z0-9_-]``, no padding, canonical; else ``ValueError``."""
    if not text.isascii() or "=" in text or "+" in text or "/" in text:
        raise ValueError("not unpadded base64url")
    data = binascii.a2b_base64(text.translate(_URLSAFE) + "=" * (-len(text) % 4), strict_mode=True)
    if b64encode(data) != text:
        raise ValueError("not canonical base64url")
    return data


class Parts(NamedTuple):
    header: dict[str, Any]
    signing_input: bytes
    claims_segment: str
    signature: bytes


def split(token: str, refusal: str) -> Parts:
    """The header (parsed), signing input, claims segment (unparsed: unsigned claims are never parsed)
    and signature of a compact JWS; ``TokenRefused(refusal)`` for anything else."""
    if type(token) is not str or len(token) > MAX_LENGTH or not token.isascii():
        raise errors.TokenRefused(refusal)
    segments = token.split(".")
    if len(segments) != 3:
        raise errors.TokenRefused(refusal)
    try:
        header = strictjson.object_of(b64decode(segments[0]))
        signature = b64decode(segments[2])
        b64decode(segments[1])  # the claims segment is checked now, parsed only once signed
    except ValueError:
        raise errors.TokenRefused(refusal) from None
    if header is None or len(signature) != crypto.ED25519_SIGNATURE_BYTES:
        raise errors.TokenRefused(refusal)
    return Parts(header, f"{segments[0]}.{segments[1]}".encode("ascii"), segments[1], signature)


def signed_claims(parts: Parts, verify: crypto.Verifier, refusal: str) -> dict[str, Any]:
    """The claims of ``parts`` once ``verify`` accepts its signature; ``TokenRefused(refusal)`` otherwise."""
    if not verify(parts.signing_input, parts.signature):
        raise errors.TokenRefused(refusal)
    try:
        claims = strictjson.object_of(b64decode(parts.claims_segment))
    except ValueError:
        raise errors.TokenRefused(refusal) from None
    if claims is None:
        raise errors.TokenRefused(refusal)
    return claims


def sign(seed: bytes | crypto.Signer, header: Mapping[str, Any], claims: Mapping[str, Any]) -> str:
    """The compact JWS of ``claims`` under ``header``, signed by an Ed25519 private ``seed`` (or its signer)."""
    signing_input = ".".join(
        b64encode(json.dumps(part, separators=(",", ":")).encode("utf-8")) for part in (header, claims)
    )
    message = signing_input.encode("ascii")
    signature = crypto.sign(seed, message) if isinstance(seed, bytes) else seed(message)
    return signing_input + "." + b64encode(signature)


def okp_public_key(jwk: Any) -> bytes | None:
    """The raw key of a public Ed25519 JWK (``{"kty": "OKP", "crv": "Ed25519", "x": …}``), or None.

    A JWK carrying a private part (``d``) or any other key type is refused, and so is a point that is
    not a strict Ed25519 public key.
    """
    if type(jwk) is not dict or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or "d" in jwk:
        return None
    x = jwk.get("x")
    try:
        raw = b64decode(x) if type(x) is str else b""
    except ValueError:
        return None
    return raw if crypto.public_key_is_strict(raw) else None


def okp_jwk(raw_public_key: bytes) -> dict[str, str]:
    return {"kty": "OKP", "crv": "Ed25519", "x": b64encode(raw_public_key)}


def thumbprint(raw_public_key: bytes) -> str:
    """The RFC 7638 SHA-256 thumbprint of an Ed25519 public key's JWK, base64url (DPoP's ``jkt``)."""
    canonical = json.dumps(okp_jwk(raw_public_key), separators=(",", ":"), sort_keys=True)
    return b64encode(hashlib.sha256(canonical.encode("ascii")).digest())


def is_int(value: Any) -> bool:
    """A JSON integer: ``true`` and ``1.0`` are not."""
    return type(value) is int
