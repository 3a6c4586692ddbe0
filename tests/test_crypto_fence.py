"""The fast verifier, fenced: the private parts of PyNaCl that ``crypto.verifier`` relies on.

``crypto.verifier`` calls libsodium's ``crypto_sign_open`` through PyNaCl's private
cffi module, with NULL for both outputs (the copy of the message that PyNaCl's
public wrapper makes and a verifier never reads). These tests fail on an upgrade
of the pinned PyNaCl that moves or changes those names, and hold the verifier to
RFC 8032's known answers and to PyNaCl's public API, case by case.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from shared import crypto

CRYPTO_SOURCE = Path(crypto.__file__)
SIGN_OPEN_TYPE = "int(*)(unsigned char *, unsigned long long *, unsigned char *, unsigned long long, unsigned char *)"
ORDER = 2**252 + 27742317777372353535851937790883648493  # L, the order of the prime-order subgroup

# RFC 8032, section 7.1, tests 1-3: (public key, message, signature).
RFC_8032 = [
    (
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
        "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
]
VECTORS = [tuple(bytes.fromhex(part) for part in vector) for vector in RFC_8032]


def _private_names_used() -> set[str]:
    """``module.name.attribute`` for every name imported from a private PyNaCl module and used in crypto.py."""
    tree = ast.parse(CRYPTO_SOURCE.read_text())
    imported: dict[str, str] = {}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("nacl.")
            and any(part.startswith("_") for part in node.module.split("."))
        ):
            imported.update({alias.asname or alias.name: f"{node.module}.{alias.name}" for alias in node.names})
    return {
        f"{imported[node.value.id]}.{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in imported
    }


def _library_opens(signed: bytes, public: bytes) -> bool:
    """PyNaCl's public wrapper of the same libsodium function: the reference answer."""
    from nacl.bindings import crypto_sign_open
    from nacl.exceptions import BadSignatureError

    try:
        return crypto_sign_open(signed, public) == signed[64:]
    except BadSignatureError:
        return False


def _cases(public: bytes, message: bytes, signature: bytes) -> list[tuple[str, bytes, bytes, bool]]:
    """(what, message, signature, valid): the vector, then each way of spoiling it."""
    s = int.from_bytes(signature[32:], "little")
    return [
        ("as published", message, signature, True),
        ("message changed", message + b"\x00", signature, False),
        ("R changed", message, bytes([signature[0] ^ 1]) + signature[1:], False),
        ("S changed", message, signature[:32] + bytes([signature[32] ^ 1]) + signature[33:], False),
        ("S + L (malleated)", message, signature[:32] + (s + ORDER).to_bytes(32, "little"), False),
    ]


def test_every_private_name_crypto_uses_is_named() -> None:
    assert _private_names_used() == set(crypto.PRIVATE_PYNACL_NAMES)


def test_every_named_private_name_exists_with_the_type_used() -> None:
    from nacl import _sodium

    assert {name.rsplit(".", 1)[0] for name in crypto.PRIVATE_PYNACL_NAMES} == {"nacl._sodium.ffi", "nacl._sodium.lib"}
    assert _sodium.ffi.cast("void *", 0) == _sodium.ffi.NULL
    assert _sodium.ffi.typeof(_sodium.lib.crypto_sign_open).cname == SIGN_OPEN_TYPE


@pytest.mark.parametrize(("public", "message", "signature"), VECTORS)
def test_libsodium_with_no_outputs_answers_as_the_public_wrapper(
    public: bytes, message: bytes, signature: bytes
) -> None:
    from nacl import _sodium

    for what, signed_message, signed_by, valid in _cases(public, message, signature):
        signed = signed_by + signed_message
        status = _sodium.lib.crypto_sign_open(_sodium.ffi.NULL, _sodium.ffi.NULL, signed, len(signed), public)
        assert (status == 0) is valid, what
        assert _library_opens(signed, public) is valid, what


@pytest.mark.parametrize(("public", "message", "signature"), VECTORS)
def test_the_verifier_meets_rfc_8032s_known_answers(public: bytes, message: bytes, signature: bytes) -> None:
    verify = crypto.verifier(public)
    for what, signed_message, signed_by, valid in _cases(public, message, signature):
        assert verify(signed_message, signed_by) is valid, what
    assert not verify(message, signature[:63])
    assert not verify(message, signature + b"\x00")
    other_public = next(vector[0] for vector in VECTORS if vector[0] != public)
    assert not crypto.verifier(other_public)(message, signature)  # the right signature, another key
