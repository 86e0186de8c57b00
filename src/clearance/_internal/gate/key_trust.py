"""Which grant keys a gate signs and verifies with, and picking up a rotation made elsewhere.

Invariants (fail-closed rules 5 and 13):

* A grant verifies only with a key that is in the ring *and* was logged as a ``key``
  entry (:meth:`GateKeys.trusted`): a key the gate signed with was logged before its
  first grant (:meth:`GateKeys.log`), so this drops nothing legitimate, and a key
  added to the ring by anyone else is never trusted.
* With no ring, or a ring that cannot be read or authenticated, there is no signing
  key: :meth:`GateKeys.signing_key` says why, and the gate denies.
* The ring is looked at for a rotation done by another process at most once per
  ``refresh_interval`` seconds of the gate's clock; a rotation picked up is logged on
  the ``clearance.gate`` logger at INFO naming the old and the new ``kid``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import threading
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from clearance._internal import entries
from clearance._internal.grants.jwk import b64url_decode
from clearance._internal.grants.keys import GrantKeyRing, SigningKey
from clearance._internal.ledger.store import LedgerStore
from clearance.errors import SigningKeyError

log = logging.getLogger("clearance.gate")


def grant_kid(token: str) -> object:
    """The ``kid`` in an unverified grant's header (for key lookup only; None if unreadable)."""
    try:
        header = json.loads(b64url_decode(token.split(".", 1)[0]))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return header.get("kid") if isinstance(header, dict) else None


class GateKeys:
    """A gate's view of its grant key ring: signing, logging and trusting keys."""

    def __init__(
        self, keyring: GrantKeyRing | None, ledger: LedgerStore, *, refresh_interval: float
    ) -> None:
        """Sign and verify with ``keyring`` (None: sign nothing, trust nothing)."""
        self._keyring = keyring
        self._ledger = ledger
        self._refresh_interval = refresh_interval
        self._checked_at = float("-inf")
        self._lock = threading.Lock()
        self.logged: set[str] = set()
        """Kids with a ``key`` entry in the ledger: the only keys grants verify with.

        It only grows, so a hit needs no lock (the authorizer's fast path reads it)."""

    def refresh(self, now: float) -> None:
        """Pick up a rotation done by another process (looked at once per refresh interval).

        SigningKeyError when the ring on disk cannot be read or authenticated.
        """
        ring = self._keyring
        if ring is None or now - self._checked_at < self._refresh_interval:
            return
        self._checked_at = now
        old = ring.active_kid
        if ring.refresh() and ring.active_kid != old:
            log.info(
                "grant key rotation picked up: signing with %s instead of %s", ring.active_kid, old
            )

    def signing_key(self, now: float) -> tuple[SigningKey | None, str | None]:
        """The active signing key, or None and why not (fail-closed rule 5)."""
        try:
            if self._keyring is None:
                raise SigningKeyError("no grant-signing key is configured")
            self.refresh(now)
            return self._keyring.signing_key(), None
        except SigningKeyError as exc:
            return None, f"signing-key-unavailable: {exc}"

    def log(self, kid: str, now: float) -> None:
        """Append the ``key`` entry of ``kid`` unless the ledger holds it (once per gate)."""
        with self._lock:
            if kid in self.logged or self._keyring is None:
                return
            if not self._ledger.find("key", kid):
                jwk = next(k for k in self._keyring.jwks(now)["keys"] if k["kid"] == kid)
                self._ledger.append(entries.key_entry(now, kid, jwk))
            self.logged.add(kid)

    def trusted(self, grant: str, now: float) -> dict[str, Ed25519PublicKey]:
        """The ring's live keys that were logged as ``key`` entries (fail-closed rule 13)."""
        if self._keyring is None:
            return {}
        # An unreadable rotation leaves the keys already loaded; signing fails closed.
        with contextlib.suppress(SigningKeyError):
            self.refresh(now)
        ring = self._keyring.verification_keys(now)
        logged = self.logged
        if ring.keys() <= logged:
            return ring  # every key of the ring is known to be logged: nothing to look up
        kid = grant_kid(grant)
        if isinstance(kid, str) and kid in ring and kid not in logged:
            expected = base64.urlsafe_b64encode(ring[kid].public_bytes_raw()).rstrip(b"=")
            for stored in self._ledger.find("key", kid):
                jwk: Any = self._ledger.prove(stored).entry.get("jwk")
                if isinstance(jwk, Mapping) and jwk.get("x") == expected.decode("ascii"):
                    logged.add(kid)
                    break
        return {k: v for k, v in ring.items() if k in logged}
