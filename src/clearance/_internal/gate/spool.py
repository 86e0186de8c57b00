"""A durable, authenticated spool for execution outcomes the ledger could not take.

When appending an execution entry fails, the gate hands it to :meth:`Spool.put`,
and :meth:`Spool.drain` appends it on the next open (docs/design.md §1 step 7). The
spool directory lives in the clearance home, which an attacker may be able to
write without being able to read its private keys (docs/design.md §4 rule 13); the
spool must not become a way to put entries into the log.

File format (one file per outcome, directly in the spool directory)::

    o-<32 random hex digits>.json
    {"entry": {<the execution entry>}, "seal": "<64 hex digits>"}

``seal`` is the HMAC-SHA256 (:func:`clearance._internal.sealing.seal`) of the RFC 8785
canonical JSON of ``entry`` under a key derived from the home's log signing key
(purpose :data:`clearance._internal.sealing.SPOOL_PURPOSE`).

Invariants:

* An outcome is never lost silently: :meth:`Spool.put` writes a temporary file,
  fsyncs it, renames it into place and fsyncs the directory before it returns,
  and raises LedgerError when it cannot.
* A file name never comes from an entry: names are generated (``o-`` and 128
  random bits), so no request id, however crafted (``../../keys/grant/jwks``,
  an absolute path), can choose where a file is written. Every file operation
  is relative to the spool directory's descriptor, opened without following a
  symbolic link.
* Nothing unauthenticated reaches ``append``. :meth:`Spool.drain` considers only
  names ending in ``.json`` directly in the directory, opens them with
  ``O_NOFOLLOW``, and *quarantines* (renames into ``quarantine/``, keeping the
  name, with a warning on the ``clearance.spool`` logger naming the file and
  the reason) any that is not a regular file, not strict JSON of exactly the
  shape above, not sealed under this spool's key, or whose entry is not an
  execution entry with a string ``request_id``. The gate's classifier then
  decides the rest (:class:`SpoolVerdict`); what it rejects is quarantined too.
  A bad file never stops a drain.
* A crash between appending an entry and removing its file cannot duplicate an
  outcome: the file is removed only after the append returned, and the
  classifier's contract is to answer :attr:`SpoolVerdict.ALREADY_LOGGED` for an
  entry the ledger already holds. The same answer covers a sealed file that
  was copied (or kept and replayed) under another name.
* The first failure to append or to classify (a :class:`~clearance.errors.Error`,
  e.g. the ledger is unavailable) stops the drain; that file and the rest stay
  for the next one, and the :class:`DrainReport` carries the error.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import logging
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final

from clearance._internal import sealing, strict_json
from clearance._internal.canonical import canonical_json
from clearance.errors import Error, InputError, LedgerError

log = logging.getLogger("clearance.spool")

QUARANTINE_DIR: Final[str] = "quarantine"
"""Subdirectory of the spool that receives files which failed authentication."""
MAX_FILE_BYTES: Final[int] = 1 << 20
"""Default largest spool file read; an execution entry is a few hundred bytes."""
_SEAL: Final = re.compile(r"[0-9a-f]{64}")
_DIR_FLAGS: Final[int] = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class SpoolAction(enum.Enum):
    """What :meth:`Spool.drain` does with an authenticated entry (see :class:`SpoolVerdict`)."""

    APPEND = "append"
    """The ledger does not hold this outcome: append it, then remove the file."""
    ALREADY_LOGGED = "already_logged"
    """The ledger already holds it (an earlier drain crashed before removal): remove the file."""
    REJECT = "reject"
    """The gate refuses it: quarantine the file, naming the reason."""


@dataclass(frozen=True)
class SpoolVerdict:
    """The classifier's answer for one spooled entry: a :class:`SpoolAction` and, to reject, why.

    Use :attr:`APPEND`, :attr:`ALREADY_LOGGED` or :meth:`reject`. ``reason`` is
    non-empty exactly when ``action`` is :attr:`SpoolAction.REJECT`; it goes to
    the log and the :class:`DrainReport`, never to an untrusted caller.
    """

    action: SpoolAction
    reason: str | None = None

    APPEND: ClassVar[SpoolVerdict]
    """Append the entry."""
    ALREADY_LOGGED: ClassVar[SpoolVerdict]
    """The ledger holds the entry already; drop the file."""

    def __post_init__(self) -> None:
        if (self.action is SpoolAction.REJECT) != bool(self.reason):
            raise ValueError("a reason is required to reject an entry, and only then")

    @classmethod
    def reject(cls, reason: str) -> SpoolVerdict:
        """Quarantine the file because of ``reason``."""
        return cls(SpoolAction.REJECT, reason)


SpoolVerdict.APPEND = SpoolVerdict(SpoolAction.APPEND)
SpoolVerdict.ALREADY_LOGGED = SpoolVerdict(SpoolAction.ALREADY_LOGGED)

Classify = Callable[[Mapping[str, Any]], SpoolVerdict]
"""Supplied by the gate. It receives an authenticated execution entry (``type`` is
``"execution"``, ``request_id`` is a string) and decides what becomes of it."""


@dataclass(frozen=True)
class Quarantined:
    """A spool file moved to ``quarantine/``: its name there, and why."""

    name: str
    reason: str


@dataclass(frozen=True)
class DrainReport:
    """What one :meth:`Spool.drain` did.

    ``error`` is the failure that stopped the drain early (None when every
    file was dealt with); the file it stopped at and any after it remain.
    """

    appended: int = 0
    already_logged: int = 0
    quarantined: tuple[Quarantined, ...] = ()
    error: Error | None = None

    @property
    def quarantined_names(self) -> tuple[str, ...]:
        """The names of the quarantined files."""
        return tuple(q.name for q in self.quarantined)


class _Bad(Exception):
    """A spool file failed authentication; the message is the quarantine reason."""


class Spool:
    """A directory of sealed outcomes waiting for the ledger; see the module invariants."""

    def __init__(
        self, directory: Path, seal_key: bytes, *, max_file_bytes: int = MAX_FILE_BYTES
    ) -> None:
        """``seal_key``: :func:`clearance._internal.sealing.derive_key` of the log key,
        ``SPOOL_PURPOSE``."""
        if not isinstance(seal_key, bytes) or len(seal_key) < 16:
            raise ValueError(
                "seal_key must be at least 16 bytes (use clearance._internal.sealing.derive_key)"
            )
        if max_file_bytes < 1:
            raise ValueError("max_file_bytes must be positive")
        self._directory = Path(directory)
        self._key = seal_key
        self._max = max_file_bytes

    @property
    def directory(self) -> Path:
        """The spool directory."""
        return self._directory

    @property
    def quarantine_dir(self) -> Path:
        """Where files that failed authentication are kept for a human."""
        return self._directory / QUARANTINE_DIR

    # -- writing ---------------------------------------------------------------------------

    def put(self, entry: Mapping[str, Any]) -> Path:
        """Seal ``entry`` and write it durably under a fresh name; return the file's path.

        ``entry`` must be an execution entry (ValueError otherwise: anything else
        would be quarantined by :meth:`drain`). Raises LedgerError if even the
        spool cannot take it, and InputError if it is not canonical JSON.
        """
        if entry.get("type") != "execution" or not isinstance(entry.get("request_id"), str):
            raise ValueError("only execution entries with a request_id can be spooled")
        data = canonical_json(dict(entry))
        tag = sealing.seal(self._key, data).encode("ascii")
        document = b'{"entry":' + data + b',"seal":"' + tag + b'"}'  # itself RFC 8785 form
        name = f"o-{secrets.token_hex(16)}.json"
        tmp = f".{name}.{secrets.token_hex(4)}.tmp"  # no .json suffix: drain never reads it
        try:
            self._directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            with self._open_dir() as dfd:
                fd = os.open(
                    tmp,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                    0o600,
                    dir_fd=dfd,
                )
                try:
                    try:
                        view = memoryview(document)
                        while view:
                            view = view[os.write(fd, view) :]
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                    os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp, dir_fd=dfd)
                    raise
                os.fsync(dfd)
        except OSError as exc:
            raise LedgerError(
                f"could not record an execution outcome in the ledger or in the spool at "
                f"{self._directory}: {exc.strerror or exc}"
            ) from None
        return self._directory / name

    # -- draining --------------------------------------------------------------------------

    def pending(self) -> list[Path]:
        """Candidate spool files (``*.json`` directly in the directory), oldest first.

        Nothing here is authenticated yet; :meth:`drain` decides.
        """
        try:
            with self._open_dir() as dfd:
                return [self._directory / name for name in self._candidates(dfd)]
        except OSError:
            return []

    def drain(
        self, append: Callable[[Mapping[str, Any]], object], classify: Classify
    ) -> DrainReport:
        """Append every authenticated entry ``classify`` accepts; see the module invariants.

        ``append`` is the ledger's append. Files that fail authentication, and
        entries ``classify`` rejects, are quarantined and never appended. Stops
        at the first :class:`~clearance.errors.Error` from ``append`` or
        ``classify`` (reported in :attr:`DrainReport.error`; the files stay).
        """
        appended = logged = 0
        quarantined: list[Quarantined] = []
        error: Error | None = None
        try:
            dfd = os.open(self._directory, _DIR_FLAGS)
        except FileNotFoundError:
            return DrainReport()
        except OSError as exc:
            return DrainReport(error=self._unreadable(exc))
        try:
            try:
                names = self._candidates(dfd)
            except OSError as exc:
                return DrainReport(error=self._unreadable(exc))
            for name in names:
                try:
                    entry = self._authenticated(dfd, name)
                    verdict = classify(entry)
                except _Bad as bad:
                    self._quarantine(dfd, name, str(bad), quarantined)
                    continue
                except Error as exc:
                    error = exc
                    break
                if verdict.action is SpoolAction.REJECT:
                    self._quarantine(dfd, name, str(verdict.reason), quarantined)
                    continue
                if verdict.action is SpoolAction.APPEND:
                    try:
                        append(entry)
                    except Error as exc:
                        error = exc
                        break
                    appended += 1
                else:
                    logged += 1
                try:
                    os.unlink(name, dir_fd=dfd)
                    os.fsync(dfd)
                except OSError as exc:
                    # The next drain finds it logged and removes it; stop rather than
                    # pile up files on a spool that cannot change.
                    error = LedgerError(
                        f"spooled outcome {name!r} is logged but its file could not be "
                        f"removed: {exc.strerror}"
                    )
                    break
        finally:
            os.close(dfd)
        return DrainReport(appended, logged, tuple(quarantined), error)

    # -- internals -------------------------------------------------------------------------

    def _unreadable(self, exc: OSError) -> LedgerError:
        # ELOOP here means the spool directory itself is a symbolic link: refused.
        return LedgerError(f"cannot read the spool at {self._directory}: {exc.strerror or exc}")

    @contextlib.contextmanager
    def _open_dir(self) -> Iterator[int]:
        """The spool directory's descriptor (a symbolic link is refused: ELOOP)."""
        dfd = os.open(self._directory, _DIR_FLAGS)
        try:
            yield dfd
        finally:
            os.close(dfd)

    @staticmethod
    def _candidates(dfd: int) -> list[str]:
        """Names ending in ``.json`` directly in the directory, oldest first."""
        found: list[tuple[int, str]] = []
        with os.scandir(dfd) as listing:
            for item in listing:
                if item.name.endswith(".json"):
                    try:
                        mtime = item.stat(follow_symlinks=False).st_mtime_ns
                    except OSError:
                        continue  # gone since the listing
                    found.append((mtime, item.name))
        return [name for _, name in sorted(found)]

    def _authenticated(self, dfd: int, name: str) -> dict[str, Any]:
        """The entry in spool file ``name``; raises _Bad with the reason when it fails."""
        try:
            # O_NONBLOCK: a FIFO planted under a .json name must not hang the drain.
            fd = os.open(
                name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd
            )
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # what O_NOFOLLOW answers for a symbolic link
                raise _Bad("a symbolic link, not a spool file") from None
            raise _Bad(f"cannot be opened: {exc.strerror}") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise _Bad("not a regular file")
            with os.fdopen(fd, "rb", closefd=False) as handle:
                data = handle.read(self._max + 1)
        except OSError as exc:
            raise _Bad(f"cannot be read: {exc.strerror}") from None
        finally:
            os.close(fd)
        if len(data) > self._max:
            raise _Bad(f"larger than {self._max} bytes")
        try:
            document = strict_json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise _Bad(f"not strict JSON: {exc}") from None
        if not isinstance(document, dict) or set(document) != {"entry", "seal"}:
            raise _Bad('not a spool file: expected exactly {"entry": {...}, "seal": "<hex>"}')
        entry, tag = document["entry"], document["seal"]
        if not isinstance(entry, dict) or not isinstance(tag, str) or not _SEAL.fullmatch(tag):
            raise _Bad("not a spool file: 'entry' must be an object and 'seal' 64 hex digits")
        try:
            sealed = sealing.check_seal(self._key, canonical_json(entry), tag)
        except InputError:
            sealed = False
        if not sealed:
            raise _Bad("its seal does not verify: it was not written by this home's gate")
        if entry.get("type") != "execution" or not isinstance(entry.get("request_id"), str):
            raise _Bad(f"a sealed entry of type {entry.get('type')!r}, not an execution outcome")
        return entry

    def _quarantine(self, dfd: int, name: str, reason: str, moved: list[Quarantined]) -> None:
        """Move ``name`` into ``quarantine/`` (never over another file) and warn."""
        try:
            with contextlib.suppress(FileExistsError):
                os.mkdir(QUARANTINE_DIR, 0o700, dir_fd=dfd)
            qfd = os.open(QUARANTINE_DIR, _DIR_FLAGS, dir_fd=dfd)
            try:
                target = name
                # Keep the name unless it is taken (say, planted twice): never overwrite evidence.
                with contextlib.suppress(FileNotFoundError):
                    os.stat(target, dir_fd=qfd, follow_symlinks=False)
                    target = f"{name}.{secrets.token_hex(4)}"
                os.rename(name, target, src_dir_fd=dfd, dst_dir_fd=qfd)
                os.fsync(qfd)
                os.fsync(dfd)
            finally:
                os.close(qfd)
        except OSError as exc:
            log.warning(
                "spool file %r failed authentication (%s) and could not be quarantined (%s); "
                "it was left in %s and not appended",
                name,
                reason,
                exc.strerror or exc,
                self._directory,
            )
            return
        moved.append(Quarantined(target, reason))
        log.warning(
            "quarantined spool file %r: %s (moved to %s)", name, reason, self.quarantine_dir
        )
