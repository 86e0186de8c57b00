"""The libsodium Ed25519 path agrees with OpenSSL (cryptography) in both directions."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from clearance._internal.grants import ed25519

KEY = Ed25519PrivateKey.generate()
PUBLIC = KEY.public_key()


@settings(max_examples=100)
@given(st.binary(max_size=512))
def test_signatures_are_rfc8032_identical_and_cross_verify(message: bytes) -> None:
    ours = ed25519.sign(KEY, message)
    assert ours == KEY.sign(message)  # Ed25519 signatures are deterministic (RFC 8032)
    PUBLIC.verify(ours, message)
    assert ed25519.verify(PUBLIC, KEY.sign(message), message)


@pytest.mark.parametrize("position", [0, 31, 32, 63])
def test_any_flipped_signature_bit_is_rejected(position: int) -> None:
    signature = bytearray(ed25519.sign(KEY, b"grant"))
    signature[position] ^= 0x01
    assert not ed25519.verify(PUBLIC, bytes(signature), b"grant")


def test_wrong_message_key_or_length_is_rejected() -> None:
    signature = ed25519.sign(KEY, b"grant")
    assert not ed25519.verify(PUBLIC, signature, b"grant!")
    assert not ed25519.verify(Ed25519PrivateKey.generate().public_key(), signature, b"grant")
    assert not ed25519.verify(PUBLIC, signature[:-1], b"grant")
    assert not ed25519.verify(PUBLIC, signature + b"\0", b"grant")
