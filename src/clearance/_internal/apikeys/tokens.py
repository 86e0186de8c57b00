"""API key secrets: minting, parsing and the stored digest.

Format: ``clk_<key_id>_<secret>``, where ``key_id`` is 16 lowercase hex digits (64
random bits, public: it names the row to check) and ``secret`` is 43 base64url
characters (32 bytes, 256 bits, from :mod:`secrets`). Every token is exactly
:data:`TOKEN_LENGTH` characters, so :func:`parse` needs no backtracking and a
megabyte of garbage costs one length comparison.

Invariants:

* A store keeps only :func:`digest` of a token, never the token: SHA-256 over a
  domain-separation prefix and the whole token. A fast hash is enough here, unlike
  for passwords: slow, salted password hashes exist because human passwords have
  little entropy and a stolen hash can be attacked with a dictionary. A 256-bit
  random secret has no dictionary, and inverting SHA-256 on it (2**256 work) is out
  of reach, so a key-stretching function would add nothing but microseconds to
  every request (authentication is on the path of each one). The prefix keeps these
  digests from being reused as any other SHA-256 value clearance computes.
* The digest covers the ``key_id`` too, so changing a token's id (to point it at
  another row) changes its digest.
* Digests are compared with :func:`hmac.compare_digest` only (constant time).
* :data:`DECOY_TOKEN` is well formed but can never be issued (:func:`mint` never
  draws its all-zero id): a malformed token is checked *as* the decoy, so it costs
  the same lookup and hash as a wrong one.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Final

PREFIX: Final = "clk_"
KEY_ID_HEX: Final = 16
SECRET_BYTES: Final = 32
SECRET_CHARS: Final = 43  # base64url of 32 bytes, without padding
TOKEN_LENGTH: Final = len(PREFIX) + KEY_ID_HEX + 1 + SECRET_CHARS

_TOKEN: Final = re.compile(r"clk_([0-9a-f]{16})_[A-Za-z0-9_-]{43}")
_DOMAIN: Final = b"clearance api key v1\x00"

DECOY_KEY_ID: Final = "0" * KEY_ID_HEX
DECOY_TOKEN: Final = f"{PREFIX}{DECOY_KEY_ID}_{'A' * SECRET_CHARS}"


def digest(token: str) -> bytes:
    """What a store keeps for ``token``: SHA-256 of the domain prefix and the token."""
    return hashlib.sha256(_DOMAIN + token.encode("ascii")).digest()


DECOY_DIGEST: Final = digest(DECOY_TOKEN)
"""Compared against when no row matches, so a miss costs what a hit costs."""


def mint() -> tuple[str, str]:
    """A fresh ``(key_id, token)``; the token is the only copy of the secret."""
    key_id = DECOY_KEY_ID
    while key_id == DECOY_KEY_ID:
        key_id = secrets.token_hex(KEY_ID_HEX // 2)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    if len(secret) != SECRET_CHARS:  # token_urlsafe strips padding: 32 bytes -> 43 chars
        raise RuntimeError("unexpected secret length from secrets.token_urlsafe")
    return key_id, f"{PREFIX}{key_id}_{secret}"


def parse(presented: object) -> str | None:
    """The ``key_id`` of a well-formed token, None for anything else (never raises)."""
    if type(presented) is not str or len(presented) != TOKEN_LENGTH:
        return None
    match = _TOKEN.fullmatch(presented)
    return match.group(1) if match is not None else None
