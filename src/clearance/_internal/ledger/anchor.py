"""The latest signed checkpoint, anchored outside the ledger file, and its witnesses.

Why (docs/design.md §7): a database file is not its own witness. Whoever can write
``ledger.db`` can rewrite an entry, recompute every stored hash with clearance's
own functions and delete the checkpoint rows that no longer match; what is left
is a smaller, self-consistent, validly signed log. What that attacker cannot do
without the log's private key is sign a checkpoint. So the newest signed
checkpoint is also kept *outside* the database, and a store opens (and ``clearance
log verify`` passes) only on a ledger that extends every anchored checkpoint
(RFC 9162 §2.1.4 consistency; fail-closed rule 12).

Files (**contract**; the content of each is a C2SP tlog-checkpoint signed note,
verbatim, UTF-8, nothing before or after it):

* ``HOME/checkpoints/latest`` — the home's own anchor (:attr:`Home.anchor_dir`);
* ``WITNESS_DIR/<origin>`` — one file in every configured witness directory, named
  by :func:`witness_file_name`: the log origin percent-encoded (RFC 3986, every
  byte but ``A-Z a-z 0-9 - . _ ~``; a leading ``.`` too), so an origin such as
  ``clearance.local/host/ab12`` becomes the single file name
  ``clearance.local%2Fhost%2Fab12`` and several logs can share one witness;
* ``.<name>.lock`` beside each file: the ``flock`` that serializes writers.

Invariants:

* An anchored file only ever advances. A writer takes the file's lock, reads what
  is there, and replaces it only with a *larger* checkpoint of the same log; a
  different root at the same size is a fork that C2SP tlog-checkpoint forbids
  (TamperError), and a file that no longer verifies is never silently replaced
  (TamperError; recovery is the deliberate ``clearance log anchor --adopt``).
* Writes are atomic: a temporary file in the same directory, ``fsync``, ``rename``
  over the old file, ``fsync`` of the directory. In ``relaxed`` durability the two
  fsyncs are skipped: the rename is still atomic against a killed process, but a
  power cut may leave the previous checkpoint or an empty file (an empty file then
  refuses to open, and needs ``--adopt``).
* The anchor lags the database by about one checkpoint interval. The store writes
  it off the append path: its background ticker anchors the newest signed
  checkpoint when it is newer than what it anchored last, and ``close()`` anchors
  synchronously. (The very first checkpoint of a log is anchored at once, so that a
  crash seconds after a home's first entry does not leave checkpoint rows without
  an anchor, which is refused as "anchor missing".) A background anchoring that
  fails is retried every tick and logged once per distinct problem on the
  ``clearance.ledger`` logger at WARNING.
* A witness directory is never created by clearance: a missing one may be an
  unmounted volume, and writing into the mount point would hide that.

Limitations (what a local anchor cannot catch):

* Rolling back *both* ``ledger.db`` and ``checkpoints/latest`` to an older, mutually
  consistent pair (say, from a backup) is undetectable from inside the home: the
  attacker of this threat model writes every file there. Only a witness the
  attacker cannot write (another host, another user's directory, a transparency
  witness) remembers the newer checkpoint and catches it.
* Entries appended after the newest anchored (or signed) checkpoint are protected
  only by the grace rule (:func:`stale_problem`): within ``checkpoint_grace``
  seconds, unsigned entries at the tail cannot be told from forged ones.
* A rollback to a copy taken within the anchor's lag (about one checkpoint
  interval) removes only entries the anchor did not cover yet.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from clearance._internal.files import write_atomic
from clearance._internal.ledger.checkpoint import MAX_NOTE_SIZE, NoteVerifier, parse_checkpoint
from clearance._internal.ledger.store import Checkpoint
from clearance.errors import Error, InputError, LedgerError, ProofError, TamperError

__all__ = [
    "ANCHOR_FILE",
    "AnchorFile",
    "AnchorKeeper",
    "CheckpointAnchor",
    "stale_problem",
    "witness_file_name",
]

_log = logging.getLogger("clearance.ledger")
"""Operators watch one logger per subsystem: a checkpoint not anchored is a ledger matter."""

ANCHOR_FILE = "latest"
"""The home anchor's file name inside ``HOME/checkpoints/``."""

_MAX_NAME = 200
"""Longest witness file name we write (bytes); most filesystems allow 255."""

_MAX_FILE = 4 * MAX_NOTE_SIZE
"""Largest anchor file (bytes) we read: a note of MAX_NOTE_SIZE characters in UTF-8."""

Role = Literal["anchor", "witness"]


def witness_file_name(origin: str) -> str:
    """The file name a witness directory keeps ``origin``'s checkpoint under.

    Percent-encoding (python-tuf does the same for role names) turns any origin into
    one safe path component: ``/`` and control characters are encoded, a leading
    ``.`` is encoded so the name is never ``.``, ``..`` or hidden, and an origin too
    long for a file name keeps a prefix plus the SHA-256 of the whole origin.
    """
    if not isinstance(origin, str) or not origin:
        raise InputError("a log origin must be a non-empty string")
    name = quote(origin, safe="")
    if name.startswith("."):
        name = "%2E" + name[1:]
    if len(name) > _MAX_NAME:  # quote() output is ASCII: characters are bytes
        digest = hashlib.sha256(origin.encode("utf-8")).hexdigest()
        name = f"{name[: _MAX_NAME - len(digest) - 1]}-{digest}"
    return name


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed, never followed if a link)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@dataclass(frozen=True)
class AnchorFile:
    """One file that holds an anchored checkpoint: the home's own, or a witness's."""

    path: Path
    role: Role

    def describe(self) -> str:
        """``anchor <path>`` or ``witness <path>``, for messages."""
        return f"{self.role} {self.path}"

    @property
    def lock_path(self) -> Path:
        """The lock file that serializes writers of :attr:`path`."""
        return self.path.with_name(f".{self.path.name}.lock")

    def read(self, verifier: NoteVerifier, origin: str) -> Checkpoint | None:
        """The checkpoint anchored here, verified with ``verifier`` for ``origin``.

        None when the file does not exist. TamperError when it is not a checkpoint
        of this log signed by its key (or is a symbolic link, or not UTF-8);
        LedgerError when it exists but cannot be read.
        """
        note = self._read_text()
        if note is None:
            return None
        try:
            return parse_checkpoint(note, verifier, origin=origin)
        except ProofError as exc:
            raise TamperError(
                f"the checkpoint anchored in {self.describe()} does not verify with this "
                f"log's key ({exc.step}: {exc})"
            ) from None

    def _read_text(self) -> str | None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise TamperError(f"{self.describe()} is a symbolic link, not a file") from None
            raise LedgerError(f"cannot read {self.describe()}: {exc.strerror or exc}") from None
        try:
            with os.fdopen(fd, "rb") as handle:
                data = handle.read(_MAX_FILE + 1)
        except OSError as exc:  # EISDIR and friends
            raise TamperError(f"{self.describe()} is not a readable file: {exc.strerror}") from None
        if len(data) > _MAX_FILE:
            raise TamperError(f"{self.describe()} is larger than any checkpoint note")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise TamperError(f"{self.describe()} is not UTF-8 text") from None

    def missing(self, latest_size: int | None = None) -> TamperError:
        """The refusal for this file being absent while the ledger holds checkpoints."""
        hint = ""
        if self.role == "witness" and not self.path.parent.is_dir():
            hint = f" (the witness directory {self.path.parent} does not exist: is it mounted?)"
        upto = f" (up to size {latest_size})" if latest_size is not None else ""
        return TamperError(
            f"anchor missing: {self.describe()} does not exist{hint}, but the ledger holds "
            f"signed checkpoints{upto}. Deleting the anchor would undo "
            "its protection, so the ledger is refused; if you know why it is missing (a "
            "newly configured witness, a restored home), check the ledger and run "
            "`clearance log anchor --adopt`"
        )

    def _prepare_directory(self) -> None:
        directory = self.path.parent
        if self.role == "anchor":
            directory.mkdir(mode=0o755, exist_ok=True)
        elif not directory.is_dir():
            raise LedgerError(
                f"witness directory {directory} does not exist (is it mounted?); "
                "clearance never creates a witness directory"
            )

    def advance(self, checkpoint: Checkpoint, verifier: NoteVerifier, *, sync: bool) -> bool:
        """Anchor ``checkpoint`` here unless an equal or larger one already is.

        Returns True when the file was written. TamperError when the file holds a
        different root at the same size (a fork) or something that does not verify
        (it is never silently replaced); LedgerError on I/O failure.
        """
        try:
            self._prepare_directory()
            with _locked(self.lock_path):
                current = self.read(verifier, checkpoint.origin)
                if current is not None and current.size >= checkpoint.size:
                    if current.size == checkpoint.size and current.root != checkpoint.root:
                        raise TamperError(
                            f"{self.describe()} anchors a different root at size "
                            f"{checkpoint.size}: two inconsistent checkpoints of one log",
                            index=None,
                        )
                    return False  # only ever advance
                write_atomic(self.path, checkpoint.note.encode("utf-8"), mode=0o644, sync=sync)
                return True
        except OSError as exc:
            raise LedgerError(
                f"cannot write {self.describe()}: {exc.strerror or exc}"
                + (f" ({exc.filename})" if exc.filename else "")
            ) from None

    def replace(self, checkpoint: Checkpoint, *, sync: bool) -> None:
        """Anchor ``checkpoint`` whatever the file holds (``clearance log anchor --adopt``)."""
        try:
            self._prepare_directory()
            with _locked(self.lock_path):
                write_atomic(self.path, checkpoint.note.encode("utf-8"), mode=0o644, sync=sync)
        except OSError as exc:
            raise LedgerError(f"cannot write {self.describe()}: {exc.strerror or exc}") from None


@dataclass(frozen=True)
class CheckpointAnchor:
    """The files outside a ledger that hold its newest signed checkpoint.

    ``sync`` False skips the fsyncs (``relaxed`` durability, see the module docstring).
    """

    files: tuple[AnchorFile, ...]
    sync: bool = True

    @classmethod
    def for_home(
        cls,
        anchor_dir: Path,
        witness_dirs: Sequence[Path] = (),
        *,
        origin: str,
        sync: bool = True,
    ) -> CheckpointAnchor:
        """``anchor_dir/latest`` plus ``<dir>/<witness_file_name(origin)>`` per witness."""
        name = witness_file_name(origin)
        files = [AnchorFile(Path(anchor_dir) / ANCHOR_FILE, "anchor")]
        files += [AnchorFile(Path(d) / name, "witness") for d in witness_dirs]
        return cls(tuple(files), sync=sync)

    def advance(self, checkpoint: Checkpoint, verifier: NoteVerifier) -> None:
        """Advance every file to ``checkpoint`` (see :meth:`AnchorFile.advance`).

        Every file is tried even when one fails, so one unreachable witness does not
        hold back the others; then the first TamperError, else a LedgerError naming
        every failure, is raised.
        """
        tamper: TamperError | None = None
        failures: list[str] = []
        for file in self.files:
            try:
                file.advance(checkpoint, verifier, sync=self.sync)
            except TamperError as exc:
                tamper = tamper or exc
            except LedgerError as exc:
                failures.append(str(exc))
        if tamper is not None:
            raise tamper
        if failures:
            raise LedgerError(
                f"checkpoint {checkpoint.size} could not be anchored: " + "; ".join(failures)
            )

    def adopt(self, checkpoint: Checkpoint) -> None:
        """Write ``checkpoint`` to every file, replacing whatever is there.

        Only ``clearance log anchor --adopt`` calls this: a deliberate operator step.
        """
        for file in self.files:
            file.replace(checkpoint, sync=self.sync)
            _log.info("adopted checkpoint %d into %s", checkpoint.size, file.describe())


class AnchorKeeper:
    """A store's side of its anchor: what it anchored last, and advancing it once per checkpoint.

    ``anchored`` starts as the smallest size the anchor files held when the store
    opened (0 when one is absent), so a lagging witness is brought up to date by the
    next advance. Thread-safe: the ticker, the commit path (the first checkpoint) and
    ``close`` may call it.
    """

    def __init__(self, anchor: CheckpointAnchor, verifier: NoteVerifier, anchored: int) -> None:
        """Keep ``anchor`` for a log checked with ``verifier``, holding ``anchored`` now."""
        self._anchor = anchor
        self._verifier = verifier
        self._anchored = anchored
        self._lock = threading.Lock()
        self._first_tried = False
        self._failure: str | None = None  # the last failure logged, so as not to repeat it

    def advance(self, checkpoint: Checkpoint) -> None:
        """Anchor ``checkpoint`` unless it already is (see :meth:`CheckpointAnchor.advance`)."""
        if checkpoint.size <= self._anchored:
            return  # the ticker's usual case, without the lock
        with self._lock:
            if checkpoint.size <= self._anchored:
                return
            self._anchor.advance(checkpoint, self._verifier)
            self._anchored, self._failure = checkpoint.size, None

    def advance_quietly(self, checkpoint: Checkpoint) -> None:
        """:meth:`advance` for background callers: a failure is logged once and retried later."""
        try:
            self.advance(checkpoint)
        except Error as exc:
            if str(exc) != self._failure:
                self._failure = str(exc)
                _log.warning("checkpoint %d is not anchored: %s", checkpoint.size, exc)

    def first(self, checkpoint: Checkpoint) -> None:
        """Anchor a log's very first checkpoint at once (tried once, on the append path).

        Checkpoint rows with no anchor at all are refused as "anchor missing", and a
        crash before the ticker's first run would otherwise leave exactly that.
        """
        if self._anchored == 0 and not self._first_tried:
            self._first_tried = True
            self.advance_quietly(checkpoint)


def stale_problem(index: int, entry: Mapping[str, Any], now: float, grace: float) -> str | None:
    """Why entry ``index``, the first one no signed checkpoint covers, is refused, or None.

    An entry that stayed unsigned longer than ``grace`` seconds is indistinguishable
    from one an attacker appended (or rewrote, re-hashed and left unsigned): the
    writer signs a checkpoint within about one interval, and on close. One dated more
    than ``grace`` seconds in the *future* is refused too, or a forger could postpone
    the rule indefinitely by dating forged entries ahead.
    """
    at = entry.get("at")
    try:
        moment = datetime.fromisoformat(str(at).replace("Z", "+00:00"))
        if moment.tzinfo is None:
            raise ValueError("no time zone")
        logged = moment.timestamp()
    except (ValueError, OverflowError):
        return (
            f"entry {index}, which no signed checkpoint covers, has no valid 'at' time "
            f"({str(at)[:40]!r})"
        )
    if logged < now - grace:
        return (
            f"entries from index {index} on are covered by no signed checkpoint, and entry "
            f"{index} was logged at {at}, more than {grace:g} s before now "
            f"({datetime.fromtimestamp(now, UTC).isoformat(timespec='seconds')}): entries "
            "left unsigned longer than the grace period are indistinguishable from forged "
            "ones. If they are genuine (a writer crashed and stayed down), check them and "
            "run `clearance log anchor --adopt`"
        )
    if logged > now + grace:
        return (
            f"entry {index}, which no signed checkpoint covers, is dated {at}, more than "
            f"{grace:g} s in the future"
        )
    return None
