"""The files of a grant key ring directory: reading, verifying and writing them.

:mod:`.keys` describes the layout and the ring's invariants; this module is its
storage. Every function here takes the directory (and the seal key) as
arguments and keeps no state.

Invariants:

* With a seal key, nothing in ``jwks.json`` is trusted before its seal verifies
  (:func:`read_ring`); without one the seal member is ignored and reported.
* Every file is written to a fresh temporary name (``O_CREAT | O_EXCL``, its final
  mode from the start), fsynced and renamed into place, then the directory is
  fsynced: a reader sees the old file or the new one, never a partial one.
* A private key is read only from a regular file (``O_NOFOLLOW``) that grants no
  access to group or others, and only when it is the key its ``kid`` names.
* Every failure of a read is a :class:`~clearance.errors.SigningKeyError`; writes
  raise ``OSError``, which :class:`~clearance._internal.grants.keys.GrantKeyRing`
  turns into a SigningKeyError naming what it was doing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from clearance._internal import sealing, strict_json
from clearance._internal.canonical import canonical_json
from clearance._internal.files import fsync_dir, write_atomic
from clearance._internal.grants.jwk import jwk_thumbprint, parse_jwk, public_jwk
from clearance.errors import InputError, SigningKeyError

JWKS_FILE: Final[str] = "jwks.json"
SEAL_MEMBER: Final[str] = "clearance_seal"
"""Top-level member of ``jwks.json`` holding the ring's seal (ignored by JWKS consumers)."""
_MAX_JWKS_BYTES: Final[int] = 1 << 20
"""Largest ``jwks.json`` read (a ring holds a handful of keys; anything bigger is not ours)."""
LOCK_FILE: Final[str] = ".lock"


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


def check_time(name: str, value: float) -> None:
    """ValueError unless ``value`` is a finite number of seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number of seconds, got {value!r}")


def _is_time_or_none(value: object) -> bool:
    if value is None:
        return True
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _seal_of(seal_key: bytes, document: Mapping[str, Any]) -> str:
    """The seal of ``document`` (which must not hold :data:`SEAL_MEMBER`)."""
    return sealing.seal(seal_key, canonical_json(dict(document)))


def check_seal_key(seal_key: bytes | None) -> None:
    """ValueError unless ``seal_key`` is None or at least 16 bytes."""
    if seal_key is not None and (not isinstance(seal_key, bytes) or len(seal_key) < 16):
        raise ValueError(
            "seal_key must be at least 16 bytes (use clearance._internal.sealing.derive_key)"
        )


def only_active(directory: Path, records: tuple[RingKey, ...]) -> RingKey:
    """The one active key of ``records``; SigningKeyError unless there is exactly one."""
    active = [r for r in records if r.retired is None]
    if len(active) != 1:
        raise SigningKeyError(
            f"grant key ring {directory} has {len(active)} active keys, expected exactly 1"
        )
    return active[0]


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold the ring's advisory lock (serializes create, seal and rotate across processes)."""
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def new_key(directory: Path, now: float) -> RingKey:
    """Generate a key, write its private half (0600, O_EXCL) and return its record."""
    private = Ed25519PrivateKey.generate()
    public = private.public_key()
    kid = jwk_thumbprint(public)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_atomic(directory / f"{kid}.pem", pem, mode=0o600)
    return RingKey(kid, public, float(now))


def write_jwks(directory: Path, records: tuple[RingKey, ...], seal_key: bytes | None) -> None:
    """Write ``records`` as ``jwks.json`` (sealed with ``seal_key`` when given), atomically."""
    document: dict[str, Any] = {"keys": [r.to_json() for r in records]}
    if seal_key is not None:
        document[SEAL_MEMBER] = _seal_of(seal_key, document)
    data = json.dumps(document, indent=2, sort_keys=True).encode("utf-8") + b"\n"
    write_atomic(directory / JWKS_FILE, data, mode=0o644)


def remove_private_keys(directory: Path, *, except_kid: str) -> None:
    """Delete every private key file of ``directory`` but ``except_kid``'s, then fsync it."""
    for pem in directory.glob("*.pem"):
        if pem.name != f"{except_kid}.pem":
            pem.unlink(missing_ok=True)
    fsync_dir(directory)


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


def read_records(directory: Path, seal_key: bytes | None) -> tuple[RingKey, ...]:
    """The validated keys of ``jwks.json`` (see :func:`read_ring`)."""
    return read_ring(directory, seal_key)[0]


def read_ring(directory: Path, seal_key: bytes | None) -> tuple[tuple[RingKey, ...], bool]:
    """The validated keys of ``jwks.json`` and whether the file carried a seal."""
    path = directory / JWKS_FILE
    document, sealed = _read_document(directory, seal_key)
    keys = document.get("keys")
    if not isinstance(keys, list):
        raise SigningKeyError(f"{path} is not a JWK Set (no 'keys' list)")
    records = []
    for position, jwk in enumerate(keys):
        where = f"{path} key {position}"
        kid, public = parse_jwk(jwk, where)
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


def read_private(directory: Path, record: RingKey) -> SigningKey:
    """The private key of ``record``, refused unless it is a 0600 Ed25519 key matching its kid."""
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
