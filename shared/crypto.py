"""Cryptographic primitives: the one module that imports PyNaCl or PyJWT.

Everything else asks for a primitive here by what it does (verify a
signature, make a key), so a change of library or a new primitive (an AEAD
for the secrets) touches this file only. The libraries are imported inside the
functions, so a module that merely imports this one pays nothing for them.

Ed25519 keys are raw bytes: a 32-byte private seed and a 32-byte public key.
A public key is accepted only if it is *strict*: the canonical encoding of a
point of the prime-order subgroup, never one of small or mixed order (such
keys let one signature verify for many messages or many keys).

The verifier calls libsodium through PyNaCl's private cffi module, by the names
in ``PRIVATE_PYNACL_NAMES``; ``tests/test_crypto_fence.py`` checks each of them
against known-answer vectors, so an upgrade of the pinned PyNaCl that moves them
fails a test, not production.
"""

from __future__ import annotations

from collections.abc import Callable

ED25519_PUBLIC_KEY_BYTES = 32
ED25519_SEED_BYTES = 32
ED25519_SIGNATURE_BYTES = 64

_FIELD_PRIME = 2**255 - 19

# Every private name of PyNaCl this module relies on (checked by a test).
PRIVATE_PYNACL_NAMES = ("nacl._sodium.ffi.NULL", "nacl._sodium.lib.crypto_sign_open")

Verifier = Callable[[bytes, bytes], bool]
"""``verify(message, signature) -> bool``: True only for a valid signature by one fixed key."""


def _is_canonical_encoding(raw: bytes) -> bool:
    """The y coordinate is reduced (y < p), and x = 0 (y = 1 or p - 1) carries no sign bit."""
    y = int.from_bytes(raw, "little") & ((1 << 255) - 1)
    if y >= _FIELD_PRIME:
        return False
    return not (raw[31] & 0x80 and y in (1, _FIELD_PRIME - 1))


def public_key_is_strict(raw: bytes) -> bool:
    """True if ``raw`` is a 32-byte canonical Ed25519 point of the prime-order subgroup."""
    if not isinstance(raw, bytes) or len(raw) != ED25519_PUBLIC_KEY_BYTES:
        return False
    if not _is_canonical_encoding(raw):
        return False
    from nacl.bindings import crypto_core_ed25519_is_valid_point

    # libsodium: on the curve, in the main subgroup, not of small order, canonical.
    return bool(crypto_core_ed25519_is_valid_point(raw))


def verifier(raw_public_key: bytes) -> Verifier:
    """A prebuilt verifier for one strict public key: the hot path parses no key.

    libsodium's verification rejects a non-canonical ``S`` (``S >= L``, the
    malleated form of a valid signature), a small-order ``R`` and a
    non-canonical or small-order key. Raises ``ValueError`` for a key that is
    not strict.
    """
    if not public_key_is_strict(raw_public_key):
        raise ValueError("not a strict Ed25519 public key")
    # libsodium's crypto_sign_open itself, not PyNaCl's wrapper of it: the wrapper allocates a buffer and
    # copies the message out, which a verifier never reads. Given NULL for both outputs, libsodium runs
    # the same checks and writes nothing. Private to PyNaCl: see PRIVATE_PYNACL_NAMES.
    from nacl._sodium import ffi, lib

    sign_open = lib.crypto_sign_open
    no_output = ffi.NULL
    key = bytes(raw_public_key)

    def verify(message: bytes, signature: bytes) -> bool:
        if len(signature) != ED25519_SIGNATURE_BYTES:
            return False
        signed = signature + message
        status: int = sign_open(no_output, no_output, signed, len(signed), key)
        return status == 0

    return verify


def new_signing_key() -> tuple[bytes, bytes]:
    """A fresh Ed25519 key from the CSPRNG: ``(private_seed, public_key)``, 32 bytes each."""
    from nacl.signing import SigningKey

    key = SigningKey.generate()
    return bytes(key), bytes(key.verify_key)


def public_key_of(seed: bytes) -> bytes:
    """The public key of a 32-byte private seed."""
    from nacl.signing import SigningKey

    return bytes(SigningKey(_seed(seed)).verify_key)


Signer = Callable[[bytes], bytes]
"""``sign(message) -> signature``: 64 bytes, by one fixed key."""


def signer(seed: bytes) -> Signer:
    """A prebuilt signer for one private seed: a key that signs often is parsed once."""
    from nacl.signing import SigningKey

    key = SigningKey(_seed(seed))

    def sign(message: bytes) -> bytes:
        return bytes(key.sign(message).signature)

    return sign


def sign(seed: bytes, message: bytes) -> bytes:
    """The 64-byte Ed25519 signature of ``message`` by the key of ``seed``."""
    from nacl.signing import SigningKey

    return bytes(SigningKey(_seed(seed)).sign(message).signature)


def _seed(seed: bytes) -> bytes:
    if not isinstance(seed, bytes) or len(seed) != ED25519_SEED_BYTES:
        raise ValueError("an Ed25519 private seed is 32 bytes")
    return seed


AEAD_KEY_BYTES = 32
AEAD_NONCE_BYTES = 24


def seal(key: bytes, plaintext: bytes, associated_data: bytes) -> tuple[bytes, bytes]:
    """XChaCha20-Poly1305 under ``key`` with a fresh random 24-byte nonce: ``(nonce, ciphertext)``.

    The 192-bit nonce is safe to draw at random for every write, with no counter to keep.
    """
    from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_encrypt
    from nacl.utils import random

    if len(key) != AEAD_KEY_BYTES:
        raise ValueError("an XChaCha20-Poly1305 key is 32 bytes")
    nonce = random(AEAD_NONCE_BYTES)
    return nonce, bytes(crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, associated_data, nonce, key))


def unseal(key: bytes, nonce: bytes, ciphertext: bytes, associated_data: bytes) -> bytes | None:
    """The plaintext, or None if the ciphertext, its nonce or its associated data was altered."""
    from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_decrypt
    from nacl.exceptions import CryptoError

    if len(key) != AEAD_KEY_BYTES or len(nonce) != AEAD_NONCE_BYTES:
        return None
    try:
        return bytes(crypto_aead_xchacha20poly1305_ietf_decrypt(ciphertext, associated_data, nonce, key))
    except CryptoError:
        return None
