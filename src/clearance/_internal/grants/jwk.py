"""JSON Web Keys for Ed25519 grant keys: base64url, RFC 7638 thumbprints, JWK Sets.

Pure functions over public keys; no file, no clock. :mod:`.keys` keeps the ring on
disk, :mod:`.token` signs and verifies grants with these encodings.

Invariants:

* :func:`b64url_decode` accepts exactly one encoding per value (unpadded, URL-safe
  alphabet, zero unused trailing bits: RFC 7515 §2, RFC 4648 §3.5), so a grant or a
  key cannot be re-encoded into a second accepted form.
* A JWK is accepted only as an RFC 8037 Ed25519 signing key (``kty: OKP``, ``crv:
  Ed25519``, ``alg: EdDSA`` and ``use: sig`` when present) with no private member
  ``d``; anything else is a :class:`~clearance.errors.SigningKeyError`, never a raw
  ``ValueError`` from ``cryptography``.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from clearance.errors import SigningKeyError

_B64URL: Final = re.compile(r"[A-Za-z0-9_-]*")


def b64url_encode(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict unpadded base64url decoding (RFC 7515 §2).

    Raises ValueError for any other alphabet, padding or non-canonical
    trailing bits, so one value has exactly one accepted encoding: a final
    character that carries bits beyond the data (RFC 4648 §3.5) is refused.
    """
    tail = len(text) % 4
    if tail == 1 or _B64URL.fullmatch(text) is None:
        raise ValueError("not unpadded base64url")
    if tail and text[-1] not in _CANONICAL_LAST[tail]:
        raise ValueError("non-canonical base64url")
    return base64.urlsafe_b64decode(text + "==="[: 4 - tail] if tail else text)


_CANONICAL_LAST: Final = {
    2: "AQgw",  # 2 characters per final byte: the last one's low 4 bits are unused
    3: "AEIMQUYcgkosw048",  # 3 characters per 2 bytes: the low 2 bits are unused
}
"""The final characters whose unused bits are zero, by ``len(text) % 4``."""


def jwk_thumbprint(public_key: Ed25519PublicKey) -> str:
    """The RFC 7638 thumbprint of an Ed25519 public key, used as its ``kid``.

    SHA-256 over the required members ``crv``, ``kty``, ``x`` in lexicographic
    order without whitespace, base64url-encoded (RFC 7638 §3, RFC 8037 §2).
    """
    x = b64url_encode(public_key.public_bytes_raw())
    members = '{"crv":"Ed25519","kty":"OKP","x":"' + x + '"}'
    return b64url_encode(hashlib.sha256(members.encode("ascii")).digest())


def public_jwk(public_key: Ed25519PublicKey) -> dict[str, str]:
    """The RFC 7517 / RFC 8037 JWK of ``public_key`` with its thumbprint as ``kid``."""
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": b64url_encode(public_key.public_bytes_raw()),
        "kid": jwk_thumbprint(public_key),
        "alg": "EdDSA",
        "use": "sig",
    }


def parse_jwk(jwk: object, where: str) -> tuple[str, Ed25519PublicKey]:
    """Validate one JWK as an Ed25519 signing key; return ``(kid, key)``."""
    if not isinstance(jwk, Mapping):
        raise SigningKeyError(f"{where}: a JWK must be a JSON object")
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        raise SigningKeyError(
            f"{where}: only Ed25519 keys are accepted (kty OKP, crv Ed25519), "
            f"got kty={jwk.get('kty')!r} crv={jwk.get('crv')!r}"
        )
    if jwk.get("alg", "EdDSA") != "EdDSA" or jwk.get("use", "sig") != "sig":
        raise SigningKeyError(f"{where}: alg must be EdDSA and use must be sig")
    if "d" in jwk:
        raise SigningKeyError(f"{where}: a published JWK must not contain a private key")
    kid, x = jwk.get("kid"), jwk.get("x")
    if not isinstance(kid, str) or not kid:
        raise SigningKeyError(f"{where}: kid must be a non-empty string")
    try:
        if not isinstance(x, str):
            raise ValueError("x is missing")
        raw = b64url_decode(x)
        if len(raw) != 32:
            raise ValueError(f"x decodes to {len(raw)} bytes, expected 32")
        key = Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise SigningKeyError(f"{where}: malformed Ed25519 public key: {exc}") from None
    return kid, key


def keys_from_jwks(jwks: Mapping[str, Any]) -> dict[str, Ed25519PublicKey]:
    """Parse a JWK Set (RFC 7517 §5) into ``{kid: public key}`` for :func:`verify_grant`.

    For executors that hold only the published JWKS. Every key must be an
    Ed25519 signing key; anything else (RSA, EC, symmetric ``oct``, a private
    ``d``), a duplicate ``kid`` or an empty set raises SigningKeyError.
    """
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(keys, list) or not keys:
        raise SigningKeyError("a JWKS must be an object with a non-empty 'keys' list")
    found: dict[str, Ed25519PublicKey] = {}
    for position, jwk in enumerate(keys):
        kid, key = parse_jwk(jwk, f"JWKS key {position}")
        if kid in found:
            raise SigningKeyError(f"JWKS lists kid {kid!r} twice")
        found[kid] = key
    return found
