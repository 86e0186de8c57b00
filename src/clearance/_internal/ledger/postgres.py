"""The scale-out ledger: one RFC 9162 Merkle log in PostgreSQL, appended to by many processes.

Any number of processes (gateways, CLIs) holding the same log signing key may open one
database and append concurrently; together they write exactly one log: no gap, no fork,
no index handed out twice, every checkpoint consistent with the one before it
(docs/design.md §7). Rows, hashes, roots and checkpoint notes are byte for byte what
:class:`~clearance._internal.ledger.sqlite.SQLiteLedger` writes for the same entries
(:mod:`.layout`). Schema: :mod:`.postgres_schema`; reads: :mod:`.postgres_reader`.

Sequencing. The threads of one process are batched (:mod:`.groupcommit`). Each batch is
one transaction that takes the log's sequencer, an advisory lock every process takes
(:mod:`.postgres_sequencer`), reads the head of the log and, when another process
appended since this store last looked, *adopts* those rows only once they prove to
extend this store's tree (:func:`~.postgres_trust.adopt`). The batch is then laid out
on the true right edge, inserted with one statement and committed.

Invariants (see also :mod:`clearance._internal.ledger.store`):

* An index is returned only after its transaction committed. A failed transaction raises
  :class:`~clearance.errors.LedgerError` for every append of the batch and leaves nothing
  of it (also when its connection is cut mid-batch). The in-memory tree is not advanced
  by a failed batch; the next transaction adopts whatever the log holds, so a batch whose
  commit reached the server although the client saw an error is adopted then (its
  appends reported failure: the gate denied, the safe direction).
* Tampering found while adopting rows or signing is a
  :class:`~clearance.errors.TamperError`, after which the store refuses every append.
* A checkpoint is signed only in a transaction holding the sequencer, after adopting
  every stored row and the newest stored checkpoint and proving the tree consistent with
  it: no process signs a tree it has not proven to extend the latest signed one, and
  checkpoints only grow across processes. Two processes signing one tree produce one
  note (one key, deterministic Ed25519); a different note at a stored size is a fork
  (TamperError). Checkpoints are signed after a commit when the newest is older than
  ``checkpoint_interval`` (one another process signed counts: the processes of a log
  share the interval), by a background ticker, on close, and on demand.
* Opening proves the log before trusting it, as SQLite does
  (:func:`~.postgres_trust.prove_log`), and ``meta`` must name this log's origin and key
  (another log: LedgerError). Leaf bytes are proven when read (:meth:`prove`).
* Reads are bounded by the store's proven size. :meth:`refresh` adopts what other
  processes committed; :meth:`trace_lock`, a per-trace lock every process honours,
  adopts before its body runs, so a gate reading a trace under it sees every decision
  any process made in that trace.

Durability: ``durable`` commits with ``synchronous_commit = on`` (the server flushes its
write-ahead log before the commit returns); ``relaxed`` sets it off for the session: an
acknowledged entry survives this process being killed, but a crash of the PostgreSQL
server may lose the last few hundred milliseconds of commits (the store then refuses to
append, its proven tree being no longer stored; reopening adopts the log as it is). In
``durable`` mode a batch made only of ``append(sync=False)`` entries commits with
``synchronous_commit`` off: the next durable commit or checkpoint flushes past it.

Failure: every error is a LedgerError naming the server (never its password). While the
server is down, appends fail at once or within the connection timeout; the writer
connection and the pools are made again once it answers, with no restart of the store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from clearance._internal import postgres
from clearance._internal.ledger import trust
from clearance._internal.ledger.anchor import AnchorKeeper, CheckpointAnchor
from clearance._internal.ledger.bounded_reads import BoundedReads
from clearance._internal.ledger.checkpoint import NoteSigner, sign_checkpoint
from clearance._internal.ledger.checkpoint_book import CheckpointBook
from clearance._internal.ledger.groupcommit import GroupCommit
from clearance._internal.ledger.layout import Prepared, Tree, extend
from clearance._internal.ledger.postgres_db import (
    PostgresTree,
    initialise,
    insert_rows,
    prepare_rows,
    scalar,
)
from clearance._internal.ledger.postgres_locks import TraceLocks
from clearance._internal.ledger.postgres_reader import PostgresReader
from clearance._internal.ledger.postgres_sequencer import Head, Sequencer, read_head
from clearance._internal.ledger.postgres_trust import adopt, prove_log
from clearance._internal.ledger.store import Checkpoint
from clearance._internal.limits import DEFAULT_LIMITS, DURABILITIES, Durability
from clearance._internal.postgres import redact
from clearance.errors import Error, InputError, LedgerError, TamperError

if TYPE_CHECKING:
    import psycopg_pool

TRACE_LOCK_CONNECTIONS: Final = 16
"""Most connections one store holds for trace locks at once (one per trace being decided)."""

_POLL: Final = 0.05
"""Seconds between looks for another process's commit while waiting for an index."""


class PostgresLedger(BoundedReads):
    """A :class:`~clearance._internal.ledger.store.LedgerStore` in a PostgreSQL database.

    Reads: :class:`~.bounded_reads.BoundedReads`. Use :meth:`open`."""

    shared = True
    """Other processes append to this log: state derived from reads is never cached."""

    _reads: PostgresReader

    def __init__(
        self,
        url: str,
        sequencer: Sequencer,
        reads: PostgresReader,
        *,
        signer: NoteSigner,
        origin: str,
        checkpoint_interval: float,
        anchor: CheckpointAnchor | None,
        durability: Durability,
    ) -> None:
        """Wrap an initialised writer and reader; :meth:`open` is the public constructor."""
        self._url = url
        self._where = redact(url)
        self._sequencer = sequencer
        self._reads = reads
        self._durable = durability == "durable"
        self._signer = signer
        self._verifier = signer.verifier()
        self._vkey = self._verifier.vkey()
        self._origin = origin
        self._interval = checkpoint_interval
        self._anchor = anchor
        self._book = CheckpointBook(self._where, interval=checkpoint_interval)
        self._tree = Tree(0, ())
        self._generation = 0
        self._closed = False
        self._broken: LedgerError | None = None
        self._group: GroupCommit[Prepared, int] = GroupCommit(self._commit)
        self._locks: tuple[psycopg_pool.ConnectionPool[Any], TraceLocks] | None = None
        self._locks_guard = threading.Lock()
        self._stop = threading.Event()
        self._ticker = threading.Thread(
            target=self._tick, name="clearance-checkpoints", daemon=True
        )

    # --- opening -------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        url: str,
        *,
        signer: NoteSigner,
        origin: str,
        durability: Durability = "durable",
        checkpoint_interval: float = DEFAULT_LIMITS.checkpoint_interval,
        anchor: CheckpointAnchor | None = None,
        grace: float | None = None,
        clock: Callable[[], float] | None = None,
    ) -> PostgresLedger:
        """Open (creating and migrating if needed) the ledger in the database at ``url``.

        The options mean what they mean for
        :meth:`~clearance._internal.ledger.sqlite.SQLiteLedger.open`. Raises LedgerError
        when the server cannot be reached or the database holds another log (another
        origin or key) or a newer schema, and TamperError when the log does not prove
        itself (module docstring).
        """
        if durability not in DURABILITIES:
            raise InputError(f"durability must be 'durable' or 'relaxed', not {durability!r}")
        if not checkpoint_interval > 0:
            raise InputError("checkpoint_interval must be a positive number of seconds")
        if grace is not None and not (grace > 0 and clock is not None):
            raise InputError("grace must be a positive number of seconds, given with a clock")
        postgres.check_url(url)
        sequencer = Sequencer(url, origin, durable=durability == "durable")
        try:
            initialise(sequencer.connection(), url, origin, signer.vkey())
            reads = PostgresReader(url)
        except BaseException:
            sequencer.drop()
            raise
        store = cls(
            url,
            sequencer,
            reads,
            signer=signer,
            origin=origin,
            checkpoint_interval=checkpoint_interval,
            anchor=anchor,
            durability=durability,
        )
        try:
            store._load(grace, clock() if clock is not None and grace is not None else None)
        except BaseException:
            reads.close()
            sequencer.drop()
            raise
        store._ticker.start()
        return store

    def _load(self, grace: float | None, now: float | None) -> None:
        """Prove the stored log before trusting it (:func:`~.postgres_trust.prove_log`)."""
        with self._reads.connection("loading the ledger") as reads:
            tree, latest, anchored = prove_log(
                reads, self._verifier, self._origin, self._anchor, grace, now
            )
        if self._anchor is not None:
            self._book.keeper = AnchorKeeper(self._anchor, self._verifier, anchored)
        self._tree, self._book.latest = tree, latest

    # --- properties ----------------------------------------------------------------------

    @property
    def origin(self) -> str:
        """The log's origin line (C2SP tlog-checkpoint), also its key name."""
        return self._origin

    @property
    def vkey(self) -> str:
        """The C2SP verifier key of the log's checkpoint signer."""
        return self._vkey

    @property
    def url(self) -> str:
        """The database URL (with its password, if it has one: show :attr:`where`)."""
        return self._url

    @property
    def where(self) -> str:
        """The database URL without its password, as messages show it."""
        return self._where

    @property
    def commits(self) -> int:
        """How many group commits (transactions of appended entries) this store ran."""
        return self._group.batches

    @property
    def generation(self) -> int:
        """How many times this store adopted rows another process (or anyone) appended.

        Anything derived from earlier reads, such as cached trace facts, is stale once it
        changes; a shared store's gate caches nothing anyway (:attr:`shared`).
        """
        return self._generation

    @property
    def writer_pid(self) -> int | None:
        """The server process of the writer connection (``pg_stat_activity.pid``), if any."""
        return self._sequencer.backend_pid

    # --- appending -----------------------------------------------------------------------

    def append(self, entry: Mapping[str, Any], *, sync: bool = True) -> int:
        """Append one entry and return its leaf index (see :meth:`append_many`).

        ``sync`` False defers the server's flush in ``durable`` mode (module docstring).
        """
        self._check_usable()
        return self._group.submit(prepare_rows((entry,), sync))

    def append_many(self, entries: Sequence[Mapping[str, Any]]) -> list[int]:
        """Append several entries in one commit; indices are consecutive.

        InputError for an entry that is not an object with ``type``, ``v`` and ``at``;
        LedgerError when the commit fails (then none of ``entries`` is acknowledged);
        TamperError when the stored log no longer extends what this store proved, after
        which the store refuses every append (fail closed).
        """
        self._check_usable()
        if not entries:
            return []
        start = self._group.submit(prepare_rows(entries, True))
        return list(range(start, start + len(entries)))

    def _commit(self, batch: Sequence[Prepared]) -> list[int]:
        """Commit a group of prepared appends in one transaction holding the sequencer."""
        self._check_usable()
        deferred = self._durable and not any(prepared[2] for prepared in batch)
        with self._refusing_on_tamper("while appending"):
            with self._sequencer.locked("appending to the ledger", fsync=not deferred) as (
                reads,
                head,
            ):
                tree = self._catch_up(reads, head, locked=True)
                new, flat, starts = extend(tree, batch)
                insert_rows(reads.conn, flat)
            self._tree = new
        if not deferred and self._book.due():
            try:
                self._sign(force=False)
            except TamperError:
                raise  # fail closed: the log no longer extends what it signed
            except LedgerError as exc:
                self._book.failed(exc, new.size)  # committed; the ticker retries the checkpoint
        return starts

    @contextmanager
    def _refusing_on_tamper(self, doing: str) -> Iterator[None]:
        """Mark the store unusable (fail closed) when the block finds tampering."""
        try:
            yield
        except TamperError as exc:
            if self._broken is None:
                self._broken = TamperError(
                    f"ledger refuses further appends: {exc} (found {doing})", index=exc.index
                )
            raise

    def _catch_up(self, reads: PostgresTree, head: Head, *, locked: bool) -> Tree:
        """Adopt what other processes committed since this store last looked (:func:`adopt`);
        returns the true tree. TamperError when it does not prove (see the module docstring)."""
        old = self._tree
        tree, checkpoint = adopt(
            reads, head, old, self._book.latest, self._verifier, self._origin, locked=locked
        )
        if checkpoint is not None:
            self._book.adopt(checkpoint)
        if tree is not old:
            self._tree = tree
            self._generation += 1
        return tree

    def _check_usable(self) -> None:
        if self._closed:
            raise LedgerError(f"ledger at {self._where} is closed")
        if self._broken is not None:
            raise self._broken

    # --- checkpoints ---------------------------------------------------------------------

    def _sign(self, *, force: bool) -> Checkpoint | None:
        """Sign a checkpoint of the whole stored log, with the commit role held.

        In one transaction holding the sequencer: adopt every stored row and the newest
        stored checkpoint, prove the tree consistent with it, sign, store. Unless
        ``force``, nothing is signed when a checkpoint was adopted within the interval.
        Returns the newest checkpoint (None for an empty log).
        """
        with (
            self._refusing_on_tamper("while signing a checkpoint"),
            self._sequencer.locked("signing a checkpoint") as (reads, head),
        ):
            tree = self._catch_up(reads, head, locked=True)
            latest = self._book.latest
            if tree.size == 0:
                return None
            if latest is not None:
                if latest.size >= tree.size or not (force or self._book.due()):
                    return latest
                trust.check_extends(reads, latest.size, latest.root, tree, "its signed checkpoint")
            try:
                cp = sign_checkpoint(self._signer, self._origin, tree.size, tree.root)
            except Error as exc:
                raise LedgerError(f"cannot sign a checkpoint for {self._where}: {exc}") from exc
            now = time.monotonic()
            stored = reads.conn.execute(
                "INSERT INTO checkpoints (size, root, note) VALUES (%s, %s, %s) "
                "ON CONFLICT (size) DO NOTHING RETURNING size",
                (cp.size, cp.root, cp.note),
            ).fetchone()
            if stored is None:  # another process signed this very tree first
                note = scalar(
                    reads.conn, "SELECT note FROM checkpoints WHERE size = %s", (cp.size,)
                )
                self._book.check_same(cp, note)
        self._book.signed(cp, now)
        return cp

    def _sign_now(self, covering: int) -> Checkpoint:
        """Sign a checkpoint of the whole log unless one already covers ``covering``."""
        with self._group.exclusive():
            self._check_usable()
            latest = self._book.latest
            if latest is not None and latest.size > covering:
                return latest
            cp = self._sign(force=True)
            if cp is None or cp.size <= covering:
                raise LedgerError(f"no entry {covering} in a ledger of {self._tree.size} entries")
            return cp

    def _tick(self) -> None:
        """Background: adopt what other processes appended; sign a checkpoint when appends
        stopped short of one; anchor.

        Adopting here means a live process signs the tail another process left unsigned
        (it was killed before its next checkpoint) within about one interval, so the log
        is not left to fail the grace rule; while that process is alive and signing, its
        checkpoints are adopted and count for the shared interval instead.
        """
        book = self._book
        while not self._stop.wait(self._interval):
            try:
                self.refresh()
            except Error as exc:
                book.failed(exc, self._tree.size)
                continue
            tree, latest = self._tree, book.latest
            if tree.size > (latest.size if latest is not None else 0) and book.due():
                try:
                    with self._group.exclusive():
                        self._check_usable()
                        self._sign(force=False)
                except Error as exc:
                    book.failed(exc, tree.size)
                    continue  # appends report the failure too; try again next tick
            if self._broken is None:
                book.anchor_quietly()

    def latest_checkpoint(self) -> Checkpoint | None:
        """The newest signed checkpoint this store knows (signed or adopted by it)."""
        return self._book.latest

    def checkpoint_covering(self, index: int, timeout: float = 2.0) -> Checkpoint:
        """A signed checkpoint whose size exceeds ``index``, waiting up to ``timeout`` seconds.

        Signs one for the whole log at once when ``index`` is committed (by any process)
        but not yet covered; waits for ``index`` to be committed otherwise.
        """
        self._check_usable()
        if index < 0:
            raise LedgerError(f"leaf index must be non-negative, got {index}")
        latest = self._book.latest
        if latest is not None and latest.size > index:
            return latest
        deadline = time.monotonic() + timeout
        while self._tree.size <= index:
            self.refresh()  # the entry may be another process's
            remaining = deadline - time.monotonic()
            if self._tree.size > index:
                break
            if remaining <= 0:
                raise LedgerError(
                    f"entry {index} was not committed within {timeout}s "
                    f"(the ledger has {self._tree.size} entries)"
                )
            self._group.wait_until(lambda: self._tree.size > index, min(remaining, _POLL))
        return self._sign_now(index)

    def checkpoints(self) -> Iterator[Checkpoint]:
        """Every stored checkpoint, oldest first (as stored; the audit verifies them)."""
        self._check_usable()
        return self._reads.checkpoints(self._origin)

    def ping(self) -> None:
        """One read of the database: LedgerError when it cannot be reached (``/readyz``)."""
        self._check_usable()
        self._reads.stored_size()

    # --- other processes -----------------------------------------------------------------

    def refresh(self) -> bool:
        """Adopt entries other processes committed; True when there were any.

        One read when nothing changed. Otherwise, with the commit role held, the stored
        tree must extend this store's (RFC 9162 §2.1.4) and the new rows' derived columns
        must match their leaves, as when a batch adopts rows; a newer stored checkpoint is
        adopted too once the tree extends it. :attr:`generation` rises. TamperError
        otherwise, and the store then refuses every append.
        """
        self._check_usable()
        if self._reads.stored_size() <= self._tree.size:
            return False
        with self._group.exclusive():
            self._check_usable()
            before = self._generation
            with (
                self._refusing_on_tamper("while adopting entries another process appended"),
                self._reads.connection("adopting entries another process appended") as reads,
            ):
                self._catch_up(reads, read_head(reads.conn), locked=False)
            return self._generation != before

    @contextmanager
    def trace_lock(self, trace_id: str) -> Iterator[None]:
        """Hold the lock of ``trace_id`` that every process on this log honours.

        An advisory lock on a pooled connection (:class:`~.postgres_locks.TraceLocks`),
        released when the block ends, or by the server if this process dies. Once it is
        held the store adopts what other processes committed (:meth:`refresh`), so reads
        inside see every entry of the trace that any process appended under the lock
        before. LedgerError when the lock cannot be had within
        :data:`~.postgres_locks.DEFAULT_TIMEOUT` seconds (the gate then denies).
        """
        self._check_usable()
        with self._trace_locks().hold(trace_id):
            self.refresh()
            yield

    def _trace_locks(self) -> TraceLocks:
        with self._locks_guard:
            if self._locks is None:
                pool = postgres.open_pool(
                    self._url, max_size=TRACE_LOCK_CONNECTIONS, name="clearance-trace-locks"
                )
                self._locks = (pool, TraceLocks(pool, self._url))
            return self._locks[1]

    # --- closing -------------------------------------------------------------------------

    def close(self) -> None:
        """Sign a final checkpoint if entries are not yet covered, anchor it, disconnect.

        Idempotent. Raises LedgerError if the final checkpoint cannot be written or
        anchored (the connections are released all the same).
        """
        if self._closed:
            return
        self._stop.set()
        if self._ticker.is_alive():
            self._ticker.join()
        try:
            tree, latest = self._tree, self._book.latest
            if self._broken is None and tree.size > (latest.size if latest else 0):
                self._sign_now(tree.size - 1)
            if self._broken is None:
                self._book.anchor()
        finally:
            with self._group.exclusive():
                self._closed = True
                self._reads.close()
                self._sequencer.drop()
                with self._locks_guard:
                    if self._locks is not None:
                        self._locks[0].close()

    def __enter__(self) -> PostgresLedger:
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
