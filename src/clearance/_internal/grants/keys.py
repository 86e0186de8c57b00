"""Grant signing keys: an Ed25519 key ring on disk and the JWKS it publishes.

Layout of a ring directory (for example ``$CLEARANCE_HOME/keys/grant/``)::

    jwks.json     RFC 7517 JWK Set of the public keys (active and retired), sealed
    <kid>.pem     the active private key, PKCS #8 PEM, mode 0600
    .lock         advisory lock serializing create/rotate across processes

Keys are RFC 8037 OKP keys (``kty: OKP``, ``crv: Ed25519``, ``alg: EdDSA``,
``use: sig``); a key's ``kid`` is its RFC 7638 JWK thumbprint (SHA-256,
base64url without padding). Each JWK in ``jwks.json`` carries one extra,
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

import base64
import contextlib
import fcntl
import hashlib
import json
import math
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from clearance._internal import sealing, strict_json
from clearance._internal.canonical import canonical_json
from clearance.errors import InputError, SigningKeyError

ROTATION_LEEWAY: Final[float] = 5.0
"""Seconds a retired key outlives the longest grant it could have signed (clock skew)."""
JWKS_FILE: Final[str] = "jwks.json"
SEAL_MEMBER: Final[str] = "clearance_seal"
"""Top-level member of ``jwks.json`` holding the ring's seal (ignored by JWKS consumers)."""
_MAX_JWKS_BYTES: Final[int] = 1 << 20
"""Largest ``jwks.json`` read (a ring holds a handful of keys; anything bigger is not ours)."""
_LOCK_FILE: Final[str] = ".lock"
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


def _parse_jwk(jwk: object, where: str) -> tuple[str, Ed25519PublicKey]:
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
        kid, key = _parse_jwk(jwk, f"JWKS key {position}")
        if kid in found:
            raise SigningKeyError(f"JWKS lists kid {kid!r} twice")
        found[kid] = key
    return found


@dataclass(frozen=True)
class SigningKey:
    """The active grant signing key and its ``kid``."""

    kid: str
    private_key: Ed25519PrivateKey

    def public_key(self) -> Ed25519PublicKey:
        """The matching public key."""
        return self.private_key.public_key()


@dataclass(frozen=True)
class RingKey:
    """One key of the ring as stored in ``jwks.json`` (public part and lifecycle times).

    ``retired`` and ``expires`` are both None for the active key and both set
    for a retired one; a retired key was created before it was retired.
    """

    kid: str
    public_key: Ed25519PublicKey
    created: float
    retired: float | None = None
    expires: float | None = None

    @property
    def active(self) -> bool:
        """True for the key new grants are signed with."""
        return self.retired is None

    def live(self, now: float) -> bool:
        """True while the key is published: active, or retired and not yet expired."""
        return self.expires is None or now < self.expires

    def to_json(self) -> dict[str, Any]:
        meta: dict[str, float] = {"created": self.created}
        if self.retired is not None and self.expires is not None:
            meta["retired"] = self.retired
            meta["expires"] = self.expires
        return {**public_jwk(self.public_key), "clearance": meta}


def _check_time(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number of seconds, got {value!r}")


def _is_time_or_none(value: object) -> bool:
    if value is None:
        return True
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _seal_of(seal_key: bytes, document: Mapping[str, Any]) -> str:
    """The seal of ``document`` (which must not hold :data:`SEAL_MEMBER`)."""
    return sealing.seal(seal_key, canonical_json(dict(document)))


def _check_seal_key(seal_key: bytes | None) -> None:
    if seal_key is not None and (not isinstance(seal_key, bytes) or len(seal_key) < 16):
        raise ValueError(
            "seal_key must be at least 16 bytes (use clearance._internal.sealing.derive_key)"
        )


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` via a fresh ``mode`` file, fsync and rename (OSError out)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _only_active(directory: Path, records: tuple[RingKey, ...]) -> RingKey:
    """The one active key of ``records``; SigningKeyError unless there is exactly one."""
    active = [r for r in records if r.retired is None]
    if len(active) != 1:
        raise SigningKeyError(
            f"grant key ring {directory} has {len(active)} active keys, expected exactly 1"
        )
    return active[0]


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
        self._records, self._active = records, _only_active(directory, records)
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
        if stamp == self._stamp:
            return False
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
        _check_time("now", now)
        _check_seal_key(seal_key)
        path = Path(directory)
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            with cls._locked(path):
                if (path / JWKS_FILE).exists():
                    raise SigningKeyError(
                        f"a grant key ring already exists in {path}; load or rotate it instead"
                    )
                record = cls._new_key(path, now)
                cls._write_jwks(path, (record,), seal_key)
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
        _check_seal_key(seal_key)
        path = Path(directory)
        return cls(path, cls._read_records(path, seal_key), seal_key)

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
        _check_seal_key(seal_key)
        path = Path(directory)
        try:
            with cls._locked(path):
                records = cls._read_records(path, None)
                _only_active(path, records)
                cls._write_jwks(path, records, seal_key)
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
            self._signing_key = self._read_private(self._directory, self._active)
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
        _check_time("now", now)
        _check_time("max_grant_lifetime", max_grant_lifetime)
        _check_time("leeway", leeway)
        if max_grant_lifetime <= 0 or leeway < 0:
            raise ValueError("max_grant_lifetime must be positive and leeway non-negative")
        try:
            with self._locked(self._directory):
                # Re-read under the lock so a concurrent rotation is not overwritten.
                current, sealed = self._read_ring(self._directory, self._seal_key)
                if sealed and self._seal_key is None:
                    raise SigningKeyError(
                        f"grant key ring {self._directory} is sealed; rotate it with the home's "
                        "seal key (`clearance keys rotate`), not from a read-only view"
                    )
                active = _only_active(self._directory, current)
                if not active.created < now:
                    raise SigningKeyError(
                        f"cannot retire grant key {active.kid} at {now}: it was created at "
                        f"{active.created}, and a key is retired only after it was active "
                        "(is the clock behind?)"
                    )
                new = self._new_key(self._directory, now)
                expires = now + max_grant_lifetime + leeway
                kept = [
                    r
                    if r.retired is not None
                    else RingKey(r.kid, r.public_key, r.created, now, expires)
                    for r in current
                    if r.live(now)
                ]
                records = (new, *kept)
                self._write_jwks(self._directory, records, self._seal_key)
                self._remove_private_keys(except_kid=new.kid)
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

    # -- storage ---------------------------------------------------------------------------

    @staticmethod
    @contextlib.contextmanager
    def _locked(directory: Path) -> Iterator[None]:
        fd = os.open(directory / _LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @staticmethod
    def _new_key(directory: Path, now: float) -> RingKey:
        private = Ed25519PrivateKey.generate()
        public = private.public_key()
        kid = jwk_thumbprint(public)
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_atomic(directory / f"{kid}.pem", pem, 0o600)
        return RingKey(kid, public, float(now))

    @staticmethod
    def _write_jwks(directory: Path, records: tuple[RingKey, ...], seal_key: bytes | None) -> None:
        document: dict[str, Any] = {"keys": [r.to_json() for r in records]}
        if seal_key is not None:
            document[SEAL_MEMBER] = _seal_of(seal_key, document)
        data = json.dumps(document, indent=2, sort_keys=True).encode("utf-8") + b"\n"
        _write_atomic(directory / JWKS_FILE, data, 0o644)

    def _remove_private_keys(self, *, except_kid: str) -> None:
        for pem in self._directory.glob("*.pem"):
            if pem.name != f"{except_kid}.pem":
                pem.unlink(missing_ok=True)
        _fsync_dir(self._directory)

    @staticmethod
    def _read_document(directory: Path, seal_key: bytes | None) -> tuple[dict[str, Any], bool]:
        """``jwks.json`` parsed strictly, its seal checked (with a key) and removed.

        Also returns whether the file carried a seal member at all.
        """
        path = directory / JWKS_FILE
        try:
            with path.open("rb") as handle:
                data = handle.read(_MAX_JWKS_BYTES + 1)
            if len(data) > _MAX_JWKS_BYTES:
                raise ValueError(f"larger than {_MAX_JWKS_BYTES} bytes")
            document = strict_json.loads(data)
        except FileNotFoundError:
            raise SigningKeyError(
                f"no grant key ring in {directory}: create one (clearance keys init)"
            ) from None
        except (OSError, ValueError, RecursionError) as exc:
            raise SigningKeyError(f"cannot read {path}: {exc}") from None
        if not isinstance(document, dict):
            raise SigningKeyError(f"{path} is not a JWK Set (not a JSON object)")
        tag = document.pop(SEAL_MEMBER, None)
        if seal_key is None:
            return document, tag is not None
        fix = (
            "inspect the keys it lists (every kid must be one this home created with "
            "`clearance init` or `clearance keys rotate`), remove any you do not recognise, "
            "then run `clearance keys seal`"
        )
        if tag is None:
            raise SigningKeyError(
                f"grant key ring {path} is not sealed ('{SEAL_MEMBER}' is missing): it was "
                f"written by an older version of clearance or modified outside clearance; {fix}"
            )
        try:
            valid = sealing.check_seal(seal_key, canonical_json(document), tag)
        except InputError:
            valid = False
        if not valid:
            raise SigningKeyError(
                f"grant key ring {path}: its seal does not verify: it was modified outside "
                f"clearance after it was sealed (or sealed by another home); {fix}"
            )
        return document, True

    @staticmethod
    def _read_records(directory: Path, seal_key: bytes | None) -> tuple[RingKey, ...]:
        return GrantKeyRing._read_ring(directory, seal_key)[0]

    @staticmethod
    def _read_ring(directory: Path, seal_key: bytes | None) -> tuple[tuple[RingKey, ...], bool]:
        """The validated keys of ``jwks.json`` and whether the file carried a seal."""
        path = directory / JWKS_FILE
        document, sealed = GrantKeyRing._read_document(directory, seal_key)
        keys = document.get("keys")
        if not isinstance(keys, list):
            raise SigningKeyError(f"{path} is not a JWK Set (no 'keys' list)")
        records = []
        for position, jwk in enumerate(keys):
            where = f"{path} key {position}"
            kid, public = _parse_jwk(jwk, where)
            if kid != jwk_thumbprint(public):
                raise SigningKeyError(f"{where}: kid is not the key's RFC 7638 thumbprint")
            meta = jwk.get("clearance")
            if not isinstance(meta, dict):
                raise SigningKeyError(f"{where}: missing 'clearance' metadata")
            created, retired, expires = (meta.get(k) for k in ("created", "retired", "expires"))
            if (
                not all(_is_time_or_none(t) for t in (created, retired, expires))
                or created is None
                or (retired is None) != (expires is None)
            ):
                raise SigningKeyError(f"{where}: malformed 'clearance' metadata")
            if retired is not None and not created < retired:
                # rotate() only retires a key that was active: one "retired" at or before its
                # creation was never active, so it never signed a grant this gate issued.
                raise SigningKeyError(
                    f"{where}: malformed 'clearance' metadata: retired key {kid} was never "
                    f"active (created {created} is not before retired {retired})"
                )
            records.append(RingKey(kid, public, created, retired, expires))
        return tuple(records), sealed

    @staticmethod
    def _read_private(directory: Path, record: RingKey) -> SigningKey:
        path = directory / f"{record.kid}.pem"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise SigningKeyError(f"signing key {path} is unreadable: {exc.strerror}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise SigningKeyError(f"signing key {path} is not a regular file")
            if info.st_mode & 0o077:
                raise SigningKeyError(
                    f"signing key {path} has permissions {stat.S_IMODE(info.st_mode):04o}; "
                    "it must not be accessible to group or others (chmod 600)"
                )
            with os.fdopen(fd, "rb", closefd=False) as handle:
                pem = handle.read(64 * 1024)
        except OSError as exc:
            raise SigningKeyError(f"signing key {path} is unreadable: {exc.strerror}") from None
        finally:
            os.close(fd)
        try:
            private = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise SigningKeyError(f"signing key {path} is malformed: {exc}") from None
        if not isinstance(private, Ed25519PrivateKey):
            raise SigningKeyError(f"signing key {path} is not an Ed25519 key")
        if jwk_thumbprint(private.public_key()) != record.kid:
            raise SigningKeyError(f"signing key {path} does not match kid {record.kid}")
        return SigningKey(record.kid, private)
