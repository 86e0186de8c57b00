"""Ed25519 signing and verification for grants, on libsodium (PyNaCl).

Keys live as ``cryptography`` objects everywhere else (PEM files, JWKS, C2SP
keys); this module only performs the two operations on the governed call's hot
path with libsodium, which signs about 1.3-1.6× and verifies about 1.6-2× faster
than OpenSSL on this machine, depending on the day (``clearance bench`` reports
the OpenSSL baseline). Both follow
RFC 8032 §5.1; libsodium additionally rejects non-canonical signatures and
small-order public keys, which only makes verification stricter.

Converted keys are cached by their raw bytes; the caches are bounded because a
key ring holds a handful of keys.
"""

from __future__ import annotations

from typing import Final, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nacl.exceptions import BadSignatureError, CryptoError
from nacl.signing import SigningKey as _NaclSigningKey
from nacl.signing import VerifyKey as _NaclVerifyKey

_CACHE_LIMIT: Final = 64
_signers: dict[bytes, _NaclSigningKey] = {}
_verifiers: dict[bytes, _NaclVerifyKey] = {}


V = TypeVar("V")


def _bounded_put(cache: dict[bytes, V], key: bytes, value: V) -> None:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = value


def sign(private_key: Ed25519PrivateKey, message: bytes) -> bytes:
    """The 64-byte Ed25519 signature of ``message`` (RFC 8032 §5.1.6)."""
    seed = private_key.private_bytes_raw()
    signer = _signers.get(seed)
    if signer is None:
        signer = _NaclSigningKey(seed)
        _bounded_put(_signers, seed, signer)
    return bytes(signer.sign(message).signature)


def verify(public_key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``message`` (RFC 8032 §5.1.7)."""
    raw = public_key.public_bytes_raw()
    verifier = _verifiers.get(raw)
    if verifier is None:
        verifier = _NaclVerifyKey(raw)
        _bounded_put(_verifiers, raw, verifier)
    if len(signature) != 64:
        return False
    try:
        verifier.verify(message, signature)
    except (BadSignatureError, CryptoError, ValueError, TypeError):
        return False
    return True
