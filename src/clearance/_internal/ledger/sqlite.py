"""The embedded ledger: an RFC 9162 Merkle log in one SQLite file (WAL mode).

Durability modes (docs/design.md §7; both survive ``kill -9`` of the writing process):

* ``durable`` — ``PRAGMA synchronous = FULL``: every commit fsyncs the write-ahead
  log before :meth:`SQLiteLedger.append` returns, so an acknowledged entry also
  survives a power cut or an OS crash.
* ``relaxed`` — ``PRAGMA synchronous = NORMAL``: a commit reaches the OS page cache
  before the append returns and the WAL is fsynced only when SQLite checkpoints it.
  An acknowledged entry survives the process being killed, not a power cut.

An append may ask for a *deferred fsync* (``append(entry, sync=False)``; the gate does
this for execution outcomes, which it records after the body ran): in ``durable`` mode
a batch made only of such appends commits with ``synchronous = NORMAL``, so it is
acknowledged once it reaches the OS (it survives ``kill -9``) and becomes power-cut
durable at the next fsync of the write-ahead log: the next ordinary commit (every
decision is one), or the next signed checkpoint, whichever comes first. Such a batch
never signs a checkpoint itself; the background ticker signs one within one or two
``checkpoint_interval`` periods (0.2 s each by default), and every checkpoint is committed with
``synchronous = FULL``, which fsyncs the log first. So a power cut can lose at most the
outcomes committed in the last two checkpoint intervals, never a decision, and never
an entry that a signed checkpoint or an anchor covers.

Invariants (see also :mod:`clearance._internal.ledger.store`):

* Leaf ``i`` is the RFC 8785 canonical JSON of the ``i``-th appended entry. Each row
  carries its leaf hash and the perfect-subtree hashes it completes (:mod:`.sqlite_db`),
  and a group of appends is one INSERT statement (one transaction), so a crash
  leaves a prefix of the log, never a hole or a leaf without its hashes.
* In ``relaxed`` mode the write-ahead log is checkpointed by a thread of its own
  (:mod:`clearance._internal.sqlite_wal`): a commit there never fsyncs, so the
  automatic checkpoint's fsyncs (of the log, of the file, then of the log's header when
  it rewinds), which SQLite runs inside whichever commit takes the log past 1,000 pages,
  were the only ones a caller ever waited for (the relaxed governed call's p99 was 4-6×
  its p50). In ``durable`` mode every commit already waits
  for an fsync of the log, and a checkpoint running beside it slowed those down more
  than it saved at the tail (``clearance bench``, one thread: p50 295 → 440 µs), so
  SQLite's own checkpoint stays.
* Concurrent appends share one transaction and one fsync (:mod:`.groupcommit`). An
  index is returned only after its transaction committed; when a commit fails,
  every append in it raises :class:`~clearance.errors.LedgerError` and the
  in-memory tree (size and right-edge frontier) is reloaded from the database, so
  the store never hands out an index that was not committed. (When SQLite reports
  a failed commit whose data did reach the disk, the entries exist but their
  appends reported failure: the gate then denies, which is the safe direction.)
* A checkpoint is signed after a commit when the previous one is older than
  ``checkpoint_interval`` (so at most one per interval under load), by a background
  ticker when appends stop, on :meth:`~SQLiteLedger.close`, and on demand by
  :meth:`~SQLiteLedger.checkpoint_covering`. Before signing, the store proves the new
  tree consistent with the previous checkpoint (RFC 9162 §2.1.4) and refuses with
  :class:`~clearance.errors.TamperError` otherwise; C2SP tlog-checkpoint requires
  that a log never signs two inconsistent checkpoints (:mod:`.sqlite_checkpoints`,
  which also logs a checkpoint that could not be signed or anchored).
* Opening proves the file before the tree is trusted (:mod:`.sqlite_trust`): the
  latest stored checkpoint verifies and the stored tree extends it; the tree extends
  every anchored checkpoint (:mod:`.anchor`, fail-closed rule 12); no derived
  column (``type``, ``ref``, ``trace_id``) differs from its leaf; and entries no
  checkpoint covers are younger than the grace period. All of it reads O(log n)
  rows except the derived-column pass, one SQL statement over every row. Leaf bytes
  are proven when read (:meth:`SQLiteLedger.prove`); a full recomputation is
  :func:`clearance._internal.ledger.audit.verify`'s job.
* The anchor follows the signed checkpoints off the append path: the ticker writes
  the newest one when it is newer than the last anchored, and :meth:`close` writes it
  synchronously, so the anchor lags the database by about one checkpoint interval.
* One process appends to a ledger file at a time. A second writer cannot corrupt
  it: leaf indices are the primary key, so an append at an index another process
  already used fails, and the failed store reloads its tree from the file, after
  proving the file's tree extends its own and checking the new rows' derived
  columns; :attr:`SQLiteLedger.generation` then rises, and the batch is committed
  once more after the adopted rows (so a CLI appending an ``apikey`` entry while a
  server runs costs the server no request). (Rows appended that way are
  adopted and later signed: within one checkpoint interval, nothing distinguishes
  another clearance process from someone else who can write the file.)
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from clearance._internal.ledger.anchor import AnchorKeeper, CheckpointAnchor
from clearance._internal.ledger.bounded_reads import BoundedReads
from clearance._internal.ledger.checkpoint import NoteSigner
from clearance._internal.ledger.groupcommit import GroupCommit
from clearance._internal.ledger.layout import Prepared, Tree, extend, prepare
from clearance._internal.ledger.sqlite_checkpoints import Checkpoints
from clearance._internal.ledger.sqlite_db import (
    MAX_ROWS_PER_INSERT,
    SYNCHRONOUS,
    insert_entries,
    load_tree,
    open_writer,
    translate,
)
from clearance._internal.ledger.sqlite_reader import LedgerReader
from clearance._internal.ledger.sqlite_trust import (
    check_anchors,
    check_extends,
    check_grace,
    check_rows,
    extension_on_disk,
    latest_stored_checkpoint,
)
from clearance._internal.ledger.store import Checkpoint
from clearance._internal.limits import DEFAULT_LIMITS, DURABILITIES, Durability
from clearance._internal.sqlite_wal import WalCheckpointer, defer_checkpoints
from clearance.errors import Error, InputError, LedgerError, TamperError

_ADOPTING_ATTEMPTS = 4
"""Commits one batch may try when each failed one met rows another process appended."""


class SQLiteLedger(BoundedReads):
    """A :class:`~clearance._internal.ledger.store.LedgerStore` in one SQLite file.

    Use :meth:`open`."""

    shared = False
    """One process appends to the file at a time (another writer is adopted, rarely)."""

    _reads: LedgerReader
    """The reads of :class:`~.bounded_reads.BoundedReads`, over this file."""

    def __init__(
        self,
        path: Path,
        conn: sqlite3.Connection,
        *,
        signer: NoteSigner,
        origin: str,
        checkpoint_interval: float,
        anchor: CheckpointAnchor | None = None,
        durability: Durability = "durable",
    ) -> None:
        """Wrap an open, initialised write connection; :meth:`open` is the public constructor."""
        self._path = path
        self._conn = conn
        self._durable = durability == "durable"
        self._fsyncing = self._durable
        """Whether the connection's next commit fsyncs (``synchronous`` FULL, not NORMAL)."""
        self._verifier = signer.verifier()
        self._vkey = self._verifier.vkey()
        self._origin = origin
        self._interval = checkpoint_interval
        self._reads = LedgerReader(path)
        self._where = str(path)
        self._closed = False
        self._broken: LedgerError | None = None
        self._tree = Tree(0, ())
        self._checkpoints = Checkpoints(
            conn, path, signer=signer, origin=origin, interval=checkpoint_interval
        )
        self._group: GroupCommit[Prepared, int] = GroupCommit(self._commit)
        self._anchor = anchor
        self._generation = 0
        self._stop = threading.Event()
        self._wal: WalCheckpointer | None = None
        """Checkpoints the write-ahead log off the committing thread (:mod:`..sqlite_wal`)."""
        self._ticker = threading.Thread(
            target=self._tick, name="clearance-checkpoints", daemon=True
        )

    # --- opening -------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        signer: NoteSigner,
        origin: str,
        durability: Durability = "durable",
        checkpoint_interval: float = DEFAULT_LIMITS.checkpoint_interval,
        anchor: CheckpointAnchor | None = None,
        grace: float | None = None,
        clock: Callable[[], float] | None = None,
    ) -> SQLiteLedger:
        """Open (creating if needed) the ledger at ``path``.

        ``anchor`` names the files outside the database that hold its newest signed
        checkpoint (:mod:`.anchor`): the ledger must extend every one of them, and the
        store keeps them up to date. ``grace`` (seconds, with ``clock`` returning the
        current POSIX time) refuses a ledger whose first entry not covered by a signed
        checkpoint is older than that. Checks: :mod:`.sqlite_trust`.

        Raises LedgerError when the file cannot be opened or belongs to another log, and
        TamperError when it does not prove itself: the latest stored checkpoint does not
        verify with ``signer``'s key, the stored tree does not extend it or an anchored
        checkpoint, an anchored file is missing, a derived column was edited, or
        unsigned entries are older than ``grace``.
        """
        if durability not in DURABILITIES:
            raise InputError(f"durability must be 'durable' or 'relaxed', not {durability!r}")
        if not checkpoint_interval > 0:
            raise InputError("checkpoint_interval must be a positive number of seconds")
        if grace is not None and not (grace > 0 and clock is not None):
            raise InputError("grace must be a positive number of seconds, given with a clock")
        path = Path(path)
        conn = open_writer(path, durability, origin, signer.vkey())
        try:
            store = cls(
                path,
                conn,
                signer=signer,
                origin=origin,
                checkpoint_interval=checkpoint_interval,
                anchor=anchor,
                durability=durability,
            )
            now = clock() if clock is not None and grace is not None else None
            try:
                store._load(grace, now)
            except BaseException:
                store._reads.close()  # the row check opened read connections
                raise
        except BaseException:
            conn.close()
            raise
        try:
            if durability == "relaxed":  # see the module docstring
                with translate(path, "opening the ledger"):
                    defer_checkpoints(conn)
                    store._wal = WalCheckpointer(
                        path, synchronous=SYNCHRONOUS[durability], quiesce=store._group.exclusive
                    )
        except BaseException:
            store._reads.close()
            conn.close()
            raise
        store._ticker.start()
        return store

    def _load(self, grace: float | None, now: float | None) -> None:
        """Load the tree and prove the file before trusting it (:mod:`.sqlite_trust`)."""
        conn, path = self._conn, self._path
        with translate(path, "loading the ledger"):
            size, frontier = load_tree(conn)
            tree = Tree(size, frontier)
            latest = latest_stored_checkpoint(conn, path, self._verifier, self._origin)
            if latest is not None:
                check_extends(conn, path, latest.size, latest.root, tree, "its signed checkpoint")
            if self._anchor is not None:
                anchored = check_anchors(
                    conn, path, tree, latest, self._anchor, self._verifier, self._origin
                )
                self._checkpoints.keeper = AnchorKeeper(self._anchor, self._verifier, anchored)
            check_rows(self._reads, tree.size)
            if grace is not None and now is not None:
                check_grace(conn, tree, latest, now, grace)
        self._tree, self._checkpoints.latest = tree, latest

    # --- properties ----------------------------------------------------------------

    @property
    def origin(self) -> str:
        """The log's origin line (C2SP tlog-checkpoint), also its key name."""
        return self._origin

    @property
    def vkey(self) -> str:
        """The C2SP verifier key of the log's checkpoint signer."""
        return self._vkey

    @property
    def path(self) -> Path:
        """The SQLite file."""
        return self._path

    @property
    def commits(self) -> int:
        """How many group commits (transactions of appended entries) have run."""
        return self._group.batches

    @property
    def generation(self) -> int:
        """How many times the store reloaded its tree from the file after a failed commit.

        A reload means another writer (or someone else) may have changed the file:
        anything derived from earlier reads, such as cached trace facts, is stale.
        """
        return self._generation

    # --- appending ---------------------------------------------------------------------

    def append(self, entry: Mapping[str, Any], *, sync: bool = True) -> int:
        """Append one entry and return its leaf index (see :meth:`append_many`).

        ``sync`` False defers the fsync in ``durable`` mode (module docstring): the
        entry is committed when this returns, and power-cut durable within two
        checkpoint intervals. Use it only for what may be lost in a power cut.
        """
        self._check_usable()
        return self._group.submit(prepare((entry,), sync))

    def append_many(self, entries: Sequence[Mapping[str, Any]]) -> list[int]:
        """Append several entries in one commit; indices are consecutive.

        InputError for an entry that is not an object with ``type``, ``v`` and ``at``;
        LedgerError when the commit fails (then none of ``entries`` is acknowledged);
        TamperError when the stored tree no longer extends the latest checkpoint, after
        which the store refuses every append (fail closed).
        """
        self._check_usable()
        if not entries:
            return []
        start = self._group.submit(prepare(entries))
        return list(range(start, start + len(entries)))

    def _commit(self, batch: Sequence[Prepared]) -> list[int]:
        """Commit a group of prepared appends in one transaction (the group's leader runs it).

        When the commit fails because another process appended to the file (a CLI
        creating an API key while a server runs), the store adopts those rows, proven
        to extend its tree (:meth:`_reload_after_failure`), and lays the batch out after
        them again, up to :data:`_ADOPTING_ATTEMPTS` commits in all while the other
        writer keeps getting in first. Any other failure is the callers' LedgerError.
        """
        self._check_usable()
        deferred = self._durable and not any(prepared[2] for prepared in batch)
        attempts = 0
        while True:
            attempts += 1
            old = self._tree
            new, flat, starts = extend(old, batch)
            try:
                self._insert(flat, new.size - old.size, fsync=self._durable and not deferred)
            except Exception:
                self._reload_after_failure()
                if (
                    attempts >= _ADOPTING_ATTEMPTS
                    or self._broken is not None
                    or self._tree.size == old.size
                ):
                    raise
                continue  # another writer's rows, proven and adopted: go again after them
            except BaseException:
                self._reload_after_failure()
                raise
            break
        self._tree = new
        if self._wal is not None:
            self._wal.note(new.size - old.size)
        if not deferred and self._checkpoints.due():
            try:
                self._sign(new)
            except TamperError:
                raise  # fail closed: the log no longer extends what it signed
            except LedgerError as exc:
                # The entries are committed; the ticker retries the checkpoint.
                self._checkpoints.failed(exc, new.size)
        return starts

    def _insert(self, flat: list[Any], count: int, *, fsync: bool) -> None:
        """Insert ``count`` laid-out rows in one transaction; LedgerError on failure."""
        conn = self._conn
        with translate(self._path, "appending to the ledger"):
            self._fsync_commits(fsync)
            if count <= MAX_ROWS_PER_INSERT:
                insert_entries(conn, flat, 0, count)  # one statement: its own transaction
            else:
                conn.execute("BEGIN IMMEDIATE")
                for first in range(0, count, MAX_ROWS_PER_INSERT):
                    insert_entries(conn, flat, first, min(MAX_ROWS_PER_INSERT, count - first))
                conn.execute("COMMIT")

    def _reload_after_failure(self) -> None:
        """Roll back, then reload the tree from disk, or mark the store unusable.

        The file's tree must extend the one this store proved (RFC 9162 §2.1.4) and
        the rows another writer added must have honest derived columns; otherwise
        the store refuses every later append (TamperError).
        """
        try:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            tree = extension_on_disk(self._conn, self._path, self._tree)
            self._adopt_stored_checkpoint(tree)
            self._tree = tree
            self._generation += 1
        except TamperError as exc:
            self._broken = TamperError(
                f"ledger refuses further appends: after a failed commit, {exc}", index=exc.index
            )
        except (sqlite3.Error, Error) as exc:
            self._broken = LedgerError(
                f"ledger at {self._path} is in an unknown state after a failed commit "
                f"({exc}); close and reopen it"
            )

    def _adopt_stored_checkpoint(self, tree: Tree) -> None:
        """Adopt a newer checkpoint another process stored, once ``tree`` proves it extends it.

        So that this store never tries to sign a size that process already signed.
        TamperError when the stored checkpoint verifies but ``tree`` does not extend it.
        """
        conn, path = self._conn, self._path
        stored = latest_stored_checkpoint(conn, path, self._verifier, self._origin)
        latest = self._checkpoints.latest
        if (
            stored is not None
            and stored.size <= tree.size
            and (latest is None or stored.size > latest.size)
        ):
            check_extends(conn, path, stored.size, stored.root, tree, "a checkpoint")
            self._checkpoints.latest = stored

    def _check_usable(self) -> None:
        if self._closed:
            raise LedgerError(f"ledger at {self._path} is closed")
        if self._broken is not None:
            raise self._broken

    # --- checkpoints ---------------------------------------------------------------------

    def _sign(self, tree: Tree) -> Checkpoint | None:
        """Sign a checkpoint for ``tree`` (:meth:`Checkpoints.sign`), with the commit role held.

        On TamperError (``tree`` is not consistent with the latest checkpoint, which C2SP
        tlog-checkpoint forbids signing) the store also refuses every later append.
        """
        try:
            with translate(self._path, "signing a checkpoint"):
                self._fsync_commits(self._durable)  # the checkpoint row covers deferred ones
            return self._checkpoints.sign(tree)
        except TamperError as exc:
            self._broken = TamperError(f"ledger refuses further appends: {exc}", index=exc.index)
            raise

    def _fsync_commits(self, fsync: bool) -> None:
        """Make the connection's next commit fsync the log or not (with the commit role held)."""
        if fsync != self._fsyncing:
            self._conn.execute(f"PRAGMA synchronous = {'FULL' if fsync else 'NORMAL'}")
            self._fsyncing = fsync

    def _sign_now(self, covering: int) -> Checkpoint:
        """Sign a checkpoint of the current tree unless one already covers ``covering``."""
        with self._group.exclusive():
            self._check_usable()
            latest = self._checkpoints.latest
            if latest is not None and latest.size > covering:
                return latest
            tree = self._tree
            cp = self._sign(tree)
            if cp is None or cp.size <= covering:
                raise LedgerError(f"no entry {covering} in a ledger of {tree.size} entries")
            return cp

    def _tick(self) -> None:
        """Background: sign a checkpoint when appends have stopped short of one."""
        checkpoints = self._checkpoints
        while not self._stop.wait(self._interval):
            tree, latest = self._tree, checkpoints.latest
            pending = tree.size > (latest.size if latest is not None else 0)
            if pending and checkpoints.due():
                try:
                    self._sign_now(tree.size - 1)
                except Error as exc:
                    checkpoints.failed(exc, tree.size)
                    continue  # appends report the failure too; try again next tick
            # Anchoring happens here, off the append path: the anchor lags by a tick.
            if self._broken is None:
                checkpoints.anchor_quietly()

    def latest_checkpoint(self) -> Checkpoint | None:
        """The newest signed checkpoint, if any."""
        return self._checkpoints.latest

    def checkpoint_covering(self, index: int, timeout: float = 2.0) -> Checkpoint:
        """A signed checkpoint whose size exceeds ``index``, waiting up to ``timeout`` seconds.

        Signs one for the current tree at once when ``index`` is committed but not yet
        covered; waits for ``index`` to be committed otherwise.
        """
        self._check_usable()
        if index < 0:
            raise LedgerError(f"leaf index must be non-negative, got {index}")
        latest = self._checkpoints.latest
        if latest is not None and latest.size > index:
            return latest
        if not self._group.wait_until(lambda: self._tree.size > index, timeout):
            raise LedgerError(
                f"entry {index} was not committed within {timeout}s "
                f"(the ledger has {self._tree.size} entries)"
            )
        return self._sign_now(index)

    def checkpoints(self) -> Iterator[Checkpoint]:
        """Every stored checkpoint, oldest first (as stored; :mod:`.audit` verifies them)."""
        self._check_usable()
        return self._reads.checkpoints(self._origin)

    # --- reading (the rest is BoundedReads) ------------------------------------------------

    def refresh(self) -> bool:
        """Adopt entries another process committed to the file; True when there were any.

        One read when nothing changed. Otherwise, with the commit role held, the file's
        tree must extend this store's (RFC 9162 §2.1.4) and the new rows' derived columns
        must match their leaves, exactly as after a failed commit; the newest stored
        checkpoint is adopted too when it verifies and the tree extends it (so this store
        never tries to sign a size another process already signed). :attr:`generation`
        rises. TamperError otherwise, and the store then refuses every append.
        """
        self._check_usable()
        if self._reads.stored_size() <= self._tree.size:
            return False
        with self._group.exclusive():
            self._check_usable()
            conn, path, old = self._conn, self._path, self._tree
            try:
                with translate(path, "adopting entries another process appended"):
                    (last,) = conn.execute("SELECT max(idx) FROM entries").fetchone()
                    if (0 if last is None else int(last) + 1) <= old.size:
                        return False  # our own commit, in flight when we looked
                    tree = extension_on_disk(conn, path, old)
                    self._adopt_stored_checkpoint(tree)
            except TamperError as exc:
                self._broken = TamperError(
                    f"ledger refuses further appends: adopting another writer's entries, {exc}",
                    index=exc.index,
                )
                raise self._broken from exc
            self._tree = tree
            self._generation += 1
            return True

    # --- closing ---------------------------------------------------------------------------

    def close(self) -> None:
        """Sign a final checkpoint if entries are not yet covered, anchor it, release the file.

        Idempotent. Raises LedgerError if the final checkpoint cannot be written or
        anchored (the file is released all the same; the next open signs it, and a
        missing anchor is refused then).
        """
        if self._closed:
            return
        self._stop.set()
        if self._ticker.is_alive():
            self._ticker.join()
        if self._wal is not None:
            self._wal.close()
        try:
            tree, latest = self._tree, self._checkpoints.latest
            if self._broken is None and tree.size > (latest.size if latest else 0):
                self._sign_now(tree.size - 1)
            if self._broken is None:
                self._checkpoints.anchor()
        finally:
            with self._group.exclusive(), translate(self._path, "closing the ledger"):
                self._closed = True
                self._reads.close()
                self._conn.close()

    def __enter__(self) -> SQLiteLedger:
        """Use the store as a context manager that closes it."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the store."""
        self.close()
