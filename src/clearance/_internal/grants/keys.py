"""Grant signing keys: an Ed25519 key ring on disk and the JWKS it publishes.

Layout of a ring directory (for example ``$CLEARANCE_HOME/keys/grant/``)::

    jwks.json     RFC 7517 JWK Set of the public keys (active and retired), sealed
    <kid>.pem     the active private key, PKCS #8 PEM, mode 0600
    .lock         advisory lock serializing create/rotate across processes

Keys are RFC 8037 OKP keys (``kty: OKP``, ``crv: Ed25519``, ``alg: EdDSA``,
``use: sig``); a key's ``kid`` is its RFC 7638 JWK thumbprint (SHA-256,
base64url without padding). The JWK encodings live in :mod:`.jwk`
(``keys_from_jwks`` is re-exported here for executors). Each JWK in ``jwks.json`` carries one extra,
namespaced member ``"clearance": {"created", "retired", "expires"}``; RFC 7517
§4 tells other consumers to ignore it, and :meth:`GrantKeyRing.jwks` leaves it
out.

A ring opened with a *seal key* (the gate's and the operator's view; see
:mod:`clearance._internal.sealing`, purpose ``JWKS_PURPOSE``) also carries one top-level
member ``"clearance_seal"``: the hex HMAC-SHA256 over the RFC 8785 canonical
JSON of the document without that member. Anyone who can write the file but
cannot read the home's log signing key can therefore not add, remove or edit a
key (threat: an attacker adding their own key as "retired" so that the gate
accepts grants they signed). RFC 7517 §5 tells other consumers to ignore
unknown top-level members, and :meth:`GrantKeyRing.jwks` never includes it. A
ring opened without a seal key (executors and tools that only read) ignores
the member and trusts the file as it is.

Invariants:

* With a seal key, nothing in ``jwks.json`` is trusted before its seal
  verifies; a missing or wrong seal is a :class:`SigningKeyError` at
  :meth:`GrantKeyRing.load`, :meth:`~GrantKeyRing.refresh` and
  :meth:`~GrantKeyRing.rotate`, and every file the ring writes is sealed again.
  After a failed refresh the ring stops signing (fail-closed rule 5) until a
  refresh succeeds; verification keeps the keys it had already verified.
* Exactly one key is active (no ``retired`` time); it is the only one with a
  private key on disk. A retired key was active before it was retired:
  ``created < retired``, or the ring is refused as malformed. A rotation
  writes the new private key, then the new JWKS, then deletes the old private
  key: a crash at any point leaves a ring that still signs, and grants signed
  by either key still verify.
* A retired public key stays published until ``retired + max_grant_lifetime +
  leeway``, so every grant it signed can still be verified; after that it is
  pruned from :meth:`GrantKeyRing.jwks` and from the file at the next rotation.
* Private key files are created with ``O_CREAT | O_EXCL`` and mode 0600 (no
  window in which they are readable by others), and refused when their mode
  grants any access to group or others (fail-closed rule 5). Every file is
  written to a temporary name, fsynced, and renamed into place.
* Every failure is a :class:`~clearance.errors.SigningKeyError`; no ``OSError``,
  ``ValueError`` from ``cryptography`` or ``json`` error escapes. Time is an
  argument (``now``); nothing here reads the clock.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from clearance._internal.grants import ring_files
from clearance._internal.grants.jwk import keys_from_jwks as keys_from_jwks
from clearance._internal.grants.jwk import public_jwk
from clearance._internal.grants.ring_files import JWKS_FILE as JWKS_FILE
from clearance._internal.grants.ring_files import SEAL_MEMBER as SEAL_MEMBER
from clearance._internal.grants.ring_files import RingKey as RingKey
from clearance._internal.grants.ring_files import SigningKey as SigningKey
from clearance._internal.limits import MAX_LEEWAY
from clearance.errors import SigningKeyError

ROTATION_LEEWAY: Final[float] = MAX_LEEWAY
"""Seconds a retired key outlives the longest grant it could have signed: the verifier
leeway ceiling, since any executor may verify with the full leeway."""


class GrantKeyRing:
    """The gateway's grant signing keys in one directory; see the module invariants.

    Obtain one with :meth:`create` or :meth:`load`. Rotation is serialized
    across processes by an advisory lock; other processes holding a ring
    should :meth:`load` it again after a rotation (or call :meth:`refresh`).
    A ring keeps the seal key it was opened with for every later read and write.
    """

    def __init__(
        self, directory: Path, records: tuple[RingKey, ...], seal_key: bytes | None = None
    ) -> None:
        """Internal; use :meth:`create` or :meth:`load`."""
        self._directory = directory
        self._seal_key = seal_key
        self._records, self._active = records, ring_files.only_active(directory, records)
        self._signing_key: SigningKey | None = None
        self._failure: SigningKeyError | None = None
        self._stamp = self._jwks_stamp()

    def _jwks_stamp(self) -> tuple[int, int, int] | None:
        """Identity of the JWKS file on disk (rotation replaces it atomically)."""
        try:
            st = (self._directory / JWKS_FILE).stat()
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def refresh(self) -> bool:
        """Re-read the ring if another process rotated it; True when something changed.

        A long-running gate calls this so that a ``clearance keys rotate`` run
        elsewhere takes effect without a restart. The file is verified exactly
        like a fresh :meth:`load` (with this ring's seal key). SigningKeyError
        when the new state cannot be read or does not verify: the caller then
        fails closed (rule 5), and so does this ring: :meth:`signing_key`
        raises the same error until a later refresh reads a good ring. The
        keys already verified stay in :meth:`verification_keys`.
        """
        stamp = self._jwks_stamp()
        if stamp == self._stamp and self._failure is None:
            return False  # after a failure, read again even if the file looks unchanged
        try:
            reloaded = GrantKeyRing.load(self._directory, seal_key=self._seal_key)
        except SigningKeyError as exc:
            # The stamp is left as it was, so every later refresh reads the file again.
            self._failure = exc
            raise
        self._records, self._active, self._signing_key = reloaded._records, reloaded._active, None
        self._failure = None
        self._stamp = stamp  # taken before the read: a rotation racing it is seen next time
        return True

    @property
    def directory(self) -> Path:
        """The ring's directory."""
        return self._directory

    @property
    def sealed(self) -> bool:
        """True when this ring was opened with a seal key (and so verified its file)."""
        return self._seal_key is not None

    @property
    def active_kid(self) -> str:
        """The ``kid`` new grants are signed with."""
        return self._active.kid

    @property
    def keys(self) -> tuple[RingKey, ...]:
        """Every key in the file, active first after a rotation, expired ones included."""
        return self._records

    @classmethod
    def create(
        cls, directory: str | os.PathLike[str], now: float, *, seal_key: bytes | None = None
    ) -> GrantKeyRing:
        """Create a ring with one fresh active key; SigningKeyError if one already exists.

        With ``seal_key``, ``jwks.json`` is sealed (see the module docstring).
        """
        ring_files.check_time("now", now)
        ring_files.check_seal_key(seal_key)
        path = Path(directory)
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            with ring_files.locked(path):
                if (path / JWKS_FILE).exists():
                    raise SigningKeyError(
                        f"a grant key ring already exists in {path}; load or rotate it instead"
                    )
                record = ring_files.new_key(path, now)
                ring_files.write_jwks(path, (record,), seal_key)
        except OSError as exc:
            raise SigningKeyError(f"cannot create grant key ring in {path}: {exc}") from None
        return cls(path, (record,), seal_key)

    @classmethod
    def load(
        cls, directory: str | os.PathLike[str], *, seal_key: bytes | None = None
    ) -> GrantKeyRing:
        """Load the ring's public state; the private key is read by :meth:`signing_key`.

        With ``seal_key``, ``jwks.json`` must carry a seal that verifies under it,
        or SigningKeyError says how to inspect and re-seal the ring. Without one
        the file is trusted as it is (for executors and read-only tools).
        """
        ring_files.check_seal_key(seal_key)
        path = Path(directory)
        return cls(path, ring_files.read_records(path, seal_key), seal_key)

    @classmethod
    def reseal(cls, directory: str | os.PathLike[str], *, seal_key: bytes) -> GrantKeyRing:
        """Seal the ring's current ``jwks.json`` with ``seal_key``; return the sealed ring.

        For the operator (``clearance keys seal``) after inspecting a ring that
        is unsealed (written by an older version) or whose seal no longer
        verifies. Whatever seal the file holds is ignored; everything else is
        validated as strictly as :meth:`load` does, and the file is rewritten
        from what was validated, so only members clearance understands are
        sealed. Whoever calls this vouches for every key the ring lists.
        """
        ring_files.check_seal_key(seal_key)
        path = Path(directory)
        try:
            with ring_files.locked(path):
                records = ring_files.read_records(path, None)
                ring_files.only_active(path, records)
                ring_files.write_jwks(path, records, seal_key)
        except OSError as exc:
            raise SigningKeyError(f"cannot seal the grant key ring in {path}: {exc}") from None
        return cls(path, records, seal_key)

    def signing_key(self) -> SigningKey:
        """The active private key, read once and cached (fail-closed rule 5).

        Raises SigningKeyError when the key file is missing, not a regular
        file, readable or writable by group or others, not an Ed25519 PKCS #8
        PEM key, or not the key its ``kid`` names; and, after a failed
        :meth:`refresh`, the error that refresh raised.
        """
        if self._failure is not None:
            raise SigningKeyError(f"the grant key ring cannot be used: {self._failure}")
        if self._signing_key is None:
            self._signing_key = ring_files.read_private(self._directory, self._active)
        return self._signing_key

    def rotate(
        self, now: float, max_grant_lifetime: float, *, leeway: float = ROTATION_LEEWAY
    ) -> SigningKey:
        """Make a fresh key active and retire the current one; return the new signing key.

        The retired public key stays published until ``now + max_grant_lifetime
        + leeway``, so every grant it signed can still be verified. The file is
        re-read (and its seal verified) under the lock before it is rewritten.

        SigningKeyError when ``now`` is not after the active key's creation (a
        key is retired only after it was active: is the clock behind?), and
        when this ring has no seal key but the file is sealed: rewriting it
        unsealed would lock out every gate that verifies the seal.
        """
        ring_files.check_time("now", now)
        ring_files.check_time("max_grant_lifetime", max_grant_lifetime)
        ring_files.check_time("leeway", leeway)
        if max_grant_lifetime <= 0 or leeway < 0:
            raise ValueError("max_grant_lifetime must be positive and leeway non-negative")
        try:
            with ring_files.locked(self._directory):
                # Re-read under the lock so a concurrent rotation is not overwritten.
                current, sealed = ring_files.read_ring(self._directory, self._seal_key)
                if sealed and self._seal_key is None:
                    raise SigningKeyError(
                        f"grant key ring {self._directory} is sealed; rotate it with the home's "
                        "seal key (`clearance keys rotate`), not from a read-only view"
                    )
                active = ring_files.only_active(self._directory, current)
                if not active.created < now:
                    raise SigningKeyError(
                        f"cannot retire grant key {active.kid} at {now}: it was created at "
                        f"{active.created}, and a key is retired only after it was active "
                        "(is the clock behind?)"
                    )
                new = ring_files.new_key(self._directory, now)
                expires = now + max_grant_lifetime + leeway
                kept = [
                    r
                    if r.retired is not None
                    else RingKey(r.kid, r.public_key, r.created, now, expires)
                    for r in current
                    if r.live(now)
                ]
                records = (new, *kept)
                ring_files.write_jwks(self._directory, records, self._seal_key)
                ring_files.remove_private_keys(self._directory, except_kid=new.kid)
        except OSError as exc:
            raise SigningKeyError(f"cannot rotate grant keys in {self._directory}: {exc}") from None
        self._records, self._active, self._signing_key = records, new, None
        self._failure = None
        self._stamp = self._jwks_stamp()
        return self.signing_key()

    def jwks(
        self, now: float, *, keep_retired: Callable[[str], bool] | None = None
    ) -> dict[str, Any]:
        """The RFC 7517 JWK Set to publish: the active key and unexpired retired keys.

        ``keep_retired(kid)``, when given, must also be true for a retired key
        to be included (``clearance keys jwks`` passes "the ledger logged this
        key": a key that never signed a grant has nothing to verify). The active
        key is always included. The seal and the ``clearance`` metadata never are.
        """
        return {"keys": [public_jwk(r.public_key) for r in self._published(now, keep_retired)]}

    def verification_keys(
        self, now: float, *, keep_retired: Callable[[str], bool] | None = None
    ) -> dict[str, Ed25519PublicKey]:
        """``{kid: public key}`` for every key in :meth:`jwks` at ``now`` (same filter)."""
        return {r.kid: r.public_key for r in self._published(now, keep_retired)}

    def _published(self, now: float, keep_retired: Callable[[str], bool] | None) -> list[RingKey]:
        return [
            r
            for r in self._records
            if r.live(now) and (r.active or keep_retired is None or keep_retired(r.kid))
        ]
