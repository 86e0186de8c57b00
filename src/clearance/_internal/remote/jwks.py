"""The gateway's grant verification keys, as a client or tool service holds them.

Invariants:

* Keys come only from a JWK Set parsed by
  :func:`~clearance._internal.grants.jwk.keys_from_jwks` (Ed25519 only; anything else
  refuses the whole set, and the keys held before stay).
* A fetch happens when no set was fetched yet, or when a grant names a ``kid`` the
  cache does not hold (a rotation) and the last fetch is at least
  ``refetch_interval`` seconds old, so a stream of grants with made-up kids costs
  the gateway at most one fetch per interval, and a known kid never costs one.
* The cache is sans-IO: the driver asks :meth:`JwksCache.needs_fetch`, fetches, and
  hands the document to :meth:`JwksCache.update` (or reports the failure with
  :meth:`JwksCache.fetch_failed`, which also counts as a fetch for the interval).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from clearance._internal.grants.jwk import b64url_decode, keys_from_jwks


def token_kid(token: object) -> str | None:
    """The ``kid`` of a compact JWS's protected header, UNVERIFIED; None if unreadable.

    Only picks which key to try; :func:`~clearance._internal.grants.token.verify_grant`
    checks the header again.
    """
    if not isinstance(token, str) or token.count(".") != 2 or len(token) > 8192:
        return None
    try:
        header = json.loads(b64url_decode(token.split(".", 1)[0]))
    except (ValueError, RecursionError):
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) else None


class JwksCache:
    """Verification keys of one gateway, refetched on an unknown kid (see the module)."""

    def __init__(
        self,
        *,
        refetch_interval: float,
        clock: Callable[[], float] = time.monotonic,
        keys: Mapping[str, Ed25519PublicKey] | None = None,
    ) -> None:
        """``keys``: a fixed starting set (then no fetch happens until an unknown kid)."""
        self._interval = refetch_interval
        self._clock = clock
        self._keys: Mapping[str, Ed25519PublicKey] = dict(keys or {})
        self._last_fetch: float | None = None if keys is None else clock()
        self._lock = threading.Lock()
        self.fetches = 0
        """How many fetches were asked for (successful or not); for tests and metrics."""

    @property
    def keys(self) -> Mapping[str, Ed25519PublicKey]:
        """The current ``{kid: key}`` mapping (replaced as a whole on update)."""
        return self._keys

    def needs_fetch(self, token: object) -> bool:
        """True when the driver should fetch the JWKS before verifying ``token``.

        Claims the fetch slot: a second caller in the same interval is told no.
        """
        kid = token_kid(token)
        with self._lock:
            if self._last_fetch is not None and (kid is None or kid in self._keys):
                return False
            now = self._clock()
            if self._last_fetch is not None and now - self._last_fetch < self._interval:
                return False
            self._last_fetch = now
            self.fetches += 1
            return True

    def update(self, document: Any) -> None:
        """Adopt a fetched JWK Set; SigningKeyError (keys unchanged) if it is not a valid one."""
        keys = keys_from_jwks(document)
        with self._lock:
            self._keys = keys

    def fetch_failed(self) -> None:
        """Nothing to adopt: the keys stay; the fetch still counts for the interval."""
