"""Authenticating files in the home with keys derived from the log's signing key.

Threat model (issue "trust gaps", part C): an attacker who can write files in
the clearance home but cannot read its private keys. Files that the gate later
trusts (the grant key ring's ``jwks.json``, spooled outcomes) therefore carry an
HMAC-SHA256 tag under a key only the gate can compute: HKDF-SHA256 (RFC 5869)
over the log's private signing key, with a distinct ``info`` per purpose, so a
tag made for one kind of file never verifies for another.

Invariants:

* A sealing key is never stored: it is derived when needed from the secret the
  home already protects (``keys/log.skey``, mode 0600).
* Tags are compared in constant time (:func:`hmac.compare_digest`).
* A file without a valid tag is not trusted, whatever it contains.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

JWKS_PURPOSE: Final[str] = "clearance/v1 grant key ring"
SPOOL_PURPOSE: Final[str] = "clearance/v1 outcome spool"
PROVENANCE_PURPOSE: Final[str] = "clearance/v1 value provenance"
"""Not a file seal: the key that makes value fingerprints unguessable without the home
(:mod:`clearance._internal.policy.provenance`)."""
_SALT: Final[bytes] = b"clearance sealing keys"


def derive_key(secret: str, purpose: str) -> bytes:
    """A 32-byte HMAC key for ``purpose``, derived from ``secret`` (HKDF-SHA256)."""
    if not secret:
        raise ValueError("cannot derive a sealing key from an empty secret")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=purpose.encode("utf-8"))
    return hkdf.derive(secret.encode("utf-8"))


def seal(key: bytes, data: bytes) -> str:
    """The lower-case hex HMAC-SHA256 tag of ``data`` under ``key``."""
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def check_seal(key: bytes, data: bytes, tag: object) -> bool:
    """True when ``tag`` is the HMAC-SHA256 tag of ``data`` under ``key`` (constant time)."""
    if not isinstance(tag, str):
        return False
    return hmac.compare_digest(seal(key, data), tag)
