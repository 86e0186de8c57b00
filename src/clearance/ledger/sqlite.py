"""The embedded ledger: an RFC 9162 Merkle log in one SQLite file (WAL mode).

Durability modes (DESIGN §7; both survive ``kill -9`` of the writing process):

* ``durable`` — ``PRAGMA synchronous = FULL``: every commit fsyncs the write-ahead
  log before :meth:`SQLiteLedger.append` returns, so an acknowledged entry also
  survives a power cut or an OS crash.
* ``relaxed`` — ``PRAGMA synchronous = NORMAL``: a commit reaches the OS page cache
  before the append returns and the WAL is fsynced only when SQLite checkpoints it.
  An acknowledged entry survives the process being killed, not a power cut.

Invariants (see also :mod:`clearance.ledger.store`):

* Leaf ``i`` is the RFC 8785 canonical JSON of the ``i``-th appended entry. Each row
  carries its leaf hash and the perfect-subtree hashes it completes (:mod:`.sqlite_db`),
  and a group of appends is one INSERT statement (one transaction), so a crash
  leaves a prefix of the log, never a hole or a leaf without its hashes.
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
  that a log never signs two inconsistent checkpoints.
* Opening reads O(log n) rows: the size, the frontier, and the latest checkpoint,
  whose signature is verified and to which the stored tree must be consistent.
  A full recomputation is :func:`clearance.ledger.audit.verify`'s job.
* One process appends to a ledger file at a time. A second writer cannot corrupt
  it: leaf indices are the primary key, so an append at an index another process
  already used fails, and the failed store reloads its tree from the file.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from clearance.errors import Error, InputError, LedgerError, ProofError, TamperError
from clearance.ledger import merkle
from clearance.ledger.checkpoint import NoteSigner, parse_checkpoint, sign_checkpoint
from clearance.ledger.groupcommit import GroupCommit
from clearance.ledger.sqlite_db import (
    MAX_ROWS_PER_INSERT,
    Prepared,
    Tree,
    connect,
    extend,
    initialise,
    insert_entries,
    load_tree,
    prepare,
    translate,
)
from clearance.ledger.sqlite_reader import LedgerReader, range_hashes
from clearance.ledger.store import Checkpoint, Durability, StoredEntry

_SYNCHRONOUS: dict[str, str] = {"durable": "FULL", "relaxed": "NORMAL"}
_INSERT_CHECKPOINT = "INSERT INTO checkpoints (size, root, note) VALUES (?, ?, ?)"


class SQLiteLedger:
    """A :class:`~clearance.ledger.store.LedgerStore` in one SQLite file. Use :meth:`open`."""

    def __init__(
        self,
        path: Path,
        conn: sqlite3.Connection,
        *,
        signer: NoteSigner,
        origin: str,
        checkpoint_interval: float,
    ) -> None:
        """Wrap an open, initialised write connection; :meth:`open` is the public constructor."""
        self._path = path
        self._conn = conn
        self._signer = signer
        self._verifier = signer.verifier()
        self._vkey = self._verifier.vkey()
        self._origin = origin
        self._interval = checkpoint_interval
        self._reads = LedgerReader(path)
        self._closed = False
        self._broken: LedgerError | None = None
        self._tree = Tree(0, ())
        self._latest: Checkpoint | None = None
        self._last_signed = float("-inf")
        self._group: GroupCommit[Prepared, int] = GroupCommit(self._commit)
        self._stop = threading.Event()
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
        checkpoint_interval: float = 0.2,
    ) -> SQLiteLedger:
        """Open (creating if needed) the ledger at ``path``.

        Raises LedgerError when the file cannot be opened or belongs to another log, and
        TamperError when the latest stored checkpoint does not verify with ``signer``'s
        key or the stored tree is not consistent with it.
        """
        if durability not in _SYNCHRONOUS:
            raise InputError(f"durability must be 'durable' or 'relaxed', not {durability!r}")
        if not checkpoint_interval > 0:
            raise InputError("checkpoint_interval must be a positive number of seconds")
        path = Path(path)
        with translate(path, "opening the ledger"):
            conn = connect(path, read_only=False)
        try:
            with translate(path, "opening the ledger"):
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise LedgerError(f"ledger at {path} cannot use WAL mode (got {mode!r})")
                conn.execute(f"PRAGMA synchronous = {_SYNCHRONOUS[durability]}")
                initialise(conn, path, origin, signer.vkey())
            store = cls(
                path, conn, signer=signer, origin=origin, checkpoint_interval=checkpoint_interval
            )
            store._load()
        except BaseException:
            conn.close()
            raise
        store._ticker.start()
        return store

    def _load(self) -> None:
        """Load the tree and the latest checkpoint, and check they agree (O(log n) reads)."""
        with translate(self._path, "loading the ledger"):
            size, frontier = load_tree(self._conn)
            self._tree = Tree(size, frontier)
            row = self._conn.execute(
                "SELECT size, root, note FROM checkpoints ORDER BY size DESC LIMIT 1"
            ).fetchone()
            if row is None:
                return
            size, root, note = int(row[0]), bytes(row[1]), str(row[2])
            try:
                cp = parse_checkpoint(note, self._verifier, origin=self._origin)
            except ProofError as exc:
                raise TamperError(
                    f"the latest checkpoint in {self._path} (size {size}) does not verify with "
                    f"this log's key {self.vkey}: {exc}"
                ) from exc
            if cp.size != size or cp.root != root:
                raise TamperError(f"checkpoint row {size} in {self._path} differs from its note")
            self._check_extends(cp, self._tree)
        self._latest = cp

    def _check_extends(self, cp: Checkpoint, tree: Tree) -> None:
        """TamperError unless ``tree`` is a consistent extension of checkpoint ``cp``.

        Reads through the write connection, which sees every committed row.
        """
        if cp.size > tree.size:
            raise TamperError(
                f"the ledger at {self._path} holds {tree.size} entries but a checkpoint of "
                f"size {cp.size} was signed: entries were removed",
                index=tree.size,
            )
        if cp.size == tree.size:
            if cp.root != tree.root:
                raise TamperError(
                    f"the ledger's root at size {cp.size} differs from its signed checkpoint"
                )
            return
        proof = range_hashes(self._conn, merkle.consistency_ranges(cp.size, tree.size))
        try:
            merkle.verify_consistency(cp.size, tree.size, cp.root, tree.root, proof)
        except ProofError as exc:
            raise TamperError(
                f"the ledger at size {tree.size} is not consistent with its signed checkpoint "
                f"at size {cp.size} ({exc}): stored hashes were altered"
            ) from exc

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

    # --- appending ---------------------------------------------------------------------

    def append(self, entry: Mapping[str, Any]) -> int:
        """Append one entry durably and return its leaf index (see :meth:`append_many`)."""
        self._check_usable()
        return self._group.submit(prepare((entry,)))

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
        """Commit a group of prepared appends in one transaction (the group's leader runs it)."""
        self._check_usable()
        old = self._tree
        new, flat, starts = extend(old, batch)
        count = new.size - old.size
        conn = self._conn
        try:
            with translate(self._path, "appending to the ledger"):
                if count <= MAX_ROWS_PER_INSERT:
                    insert_entries(conn, flat, 0, count)  # one statement: its own transaction
                else:
                    conn.execute("BEGIN IMMEDIATE")
                    for first in range(0, count, MAX_ROWS_PER_INSERT):
                        insert_entries(conn, flat, first, min(MAX_ROWS_PER_INSERT, count - first))
                    conn.execute("COMMIT")
        except BaseException:
            self._reload_after_failure()
            raise
        self._tree = new
        if time.monotonic() - self._last_signed >= self._interval:
            try:
                self._sign(new)
            except TamperError:
                raise  # fail closed: the log no longer extends what it signed
            except LedgerError:
                pass  # the entries are committed; the ticker retries the checkpoint
        return starts

    def _reload_after_failure(self) -> None:
        """Roll back, then reload the tree from disk, or mark the store unusable."""
        try:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            size, frontier = load_tree(self._conn)
            self._tree = Tree(size, frontier)
        except (sqlite3.Error, Error) as exc:
            self._broken = LedgerError(
                f"ledger at {self._path} is in an unknown state after a failed commit "
                f"({exc}); close and reopen it"
            )

    def _check_usable(self) -> None:
        if self._closed:
            raise LedgerError(f"ledger at {self._path} is closed")
        if self._broken is not None:
            raise self._broken

    # --- checkpoints ---------------------------------------------------------------------

    def _sign(self, tree: Tree) -> Checkpoint | None:
        """Sign and store a checkpoint for ``tree`` after proving it extends the latest one.

        Runs with the commit role held; None for an empty tree. On TamperError (``tree``
        is not consistent with the latest checkpoint, which C2SP tlog-checkpoint forbids
        signing) the store also refuses every later append.
        """
        latest = self._latest
        if tree.size == 0:
            return None
        if latest is not None and latest.size >= tree.size:
            return latest
        now = time.monotonic()
        try:
            with translate(self._path, "signing a checkpoint"):
                if latest is not None:
                    self._check_extends(latest, tree)
                try:
                    cp = sign_checkpoint(self._signer, self._origin, tree.size, tree.root)
                except Error as exc:
                    raise LedgerError(f"cannot sign a checkpoint for {self._path}: {exc}") from exc
                self._conn.execute(_INSERT_CHECKPOINT, (cp.size, cp.root, cp.note))
        except TamperError as exc:
            self._broken = TamperError(f"ledger refuses further appends: {exc}", index=exc.index)
            raise
        self._latest, self._last_signed = cp, now
        return cp

    def _sign_now(self, covering: int) -> Checkpoint:
        """Sign a checkpoint of the current tree unless one already covers ``covering``."""
        with self._group.exclusive():
            self._check_usable()
            latest = self._latest
            if latest is not None and latest.size > covering:
                return latest
            tree = self._tree
            cp = self._sign(tree)
            if cp is None or cp.size <= covering:
                raise LedgerError(f"no entry {covering} in a ledger of {tree.size} entries")
            return cp

    def _tick(self) -> None:
        """Background: sign a checkpoint when appends have stopped short of one."""
        while not self._stop.wait(self._interval):
            tree, latest = self._tree, self._latest
            pending = tree.size > (latest.size if latest is not None else 0)
            if pending and time.monotonic() - self._last_signed >= self._interval:
                try:
                    self._sign_now(tree.size - 1)
                except Error:
                    continue  # appends report the failure; try again next tick

    def latest_checkpoint(self) -> Checkpoint | None:
        """The newest signed checkpoint, if any."""
        return self._latest

    def checkpoint_covering(self, index: int, timeout: float = 2.0) -> Checkpoint:
        """A signed checkpoint whose size exceeds ``index``, waiting up to ``timeout`` seconds.

        Signs one for the current tree at once when ``index`` is committed but not yet
        covered; waits for ``index`` to be committed otherwise.
        """
        self._check_usable()
        if index < 0:
            raise LedgerError(f"leaf index must be non-negative, got {index}")
        latest = self._latest
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

    # --- reading ---------------------------------------------------------------------------

    def size(self) -> int:
        """The number of committed entries."""
        return self._tree.size

    def _check_size(self, size: int) -> None:
        self._check_usable()
        current = self._tree.size
        if not 0 <= size <= current:
            raise LedgerError(f"no tree of size {size}: the ledger has {current} entries")

    def get(self, index: int) -> StoredEntry:
        """The entry at ``index``; LedgerError when out of range."""
        self._check_usable()
        size = self._tree.size
        if not 0 <= index < size:
            raise LedgerError(f"no entry {index}: the ledger has {size} entries")
        return self._reads.entry(index)

    def scan(self, start: int = 0, stop: int | None = None) -> Iterator[StoredEntry]:
        """Entries with ``start <= index < stop`` in index order (read in chunks)."""
        self._check_usable()
        if start < 0:
            raise LedgerError(f"scan start must be non-negative, got {start}")
        size = self._tree.size
        return self._reads.scan(start, size if stop is None else min(stop, size))

    def find(self, kind: str, ref: str) -> list[StoredEntry]:
        """Entries of ``type == kind`` whose :func:`index_ref` is ``ref``, in index order."""
        self._check_usable()
        return self._reads.find(kind, ref, self._tree.size)

    def trace(self, trace_id: str) -> list[StoredEntry]:
        """Every entry whose ``trace_id`` is ``trace_id``, in index order."""
        self._check_usable()
        return self._reads.trace(trace_id, self._tree.size)

    def root(self, size: int | None = None) -> bytes:
        """The RFC 9162 root hash of the first ``size`` leaves (default: all)."""
        self._check_usable()
        tree = self._tree
        if size is None or size == tree.size:
            return tree.root
        self._check_size(size)
        return self._reads.root(size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 §2.1.3 inclusion proof of leaf ``index`` in the tree of ``size``."""
        self._check_size(size)
        if not 0 <= index < size:
            raise LedgerError(f"leaf index {index} is outside a tree of size {size}")
        return self._reads.inclusion_proof(index, size)

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """RFC 9162 §2.1.4 consistency proof from ``size1`` to ``size2``."""
        self._check_size(size2)
        if not 0 < size1 <= size2:
            raise LedgerError(f"no consistency proof from size {size1} to size {size2}")
        return self._reads.consistency_proof(size1, size2)

    # --- closing ---------------------------------------------------------------------------

    def close(self) -> None:
        """Sign a final checkpoint if entries are not yet covered, then release the file.

        Idempotent. Raises LedgerError if the final checkpoint cannot be written (the
        file is released all the same; the next open signs it).
        """
        if self._closed:
            return
        self._stop.set()
        if self._ticker.is_alive():
            self._ticker.join()
        try:
            tree, latest = self._tree, self._latest
            if self._broken is None and tree.size > (latest.size if latest else 0):
                self._sign_now(tree.size - 1)
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
