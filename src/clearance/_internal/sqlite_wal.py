"""Checkpoint a SQLite write-ahead log on a thread of its own, not inside a caller's commit.

In WAL mode, SQLite's automatic checkpoint runs inside the COMMIT that takes the log
past ``wal_autocheckpoint`` pages (1,000 by default): that one commit copies the log's
pages back into the database file and fsyncs the log and the file, so the caller whose
append happened to cross the line waits tens of milliseconds under load while every
other caller waits microseconds. With ``synchronous = NORMAL`` those are the only
fsyncs a committing thread ever makes, and they were the tail of ``clearance bench``'s
relaxed governed call (p99 4-6× its p50). A :class:`WalCheckpointer` moves the work
off the committing threads (measured, relaxed, 1,000-call repeats: p99 496-668 →
394-500 µs, 13% more calls per second; what remains of the tail is the checkpoint's
own I/O slowing the commits that run beside it):

* the store tells it how many rows each commit added (:meth:`WalCheckpointer.note`, an
  integer addition on the committing thread); every :data:`CHECKPOINT_EVERY_ROWS`
  rows, and at least every ``idle`` seconds, its own thread, on its own connection,
  runs ``PRAGMA wal_checkpoint(PASSIVE)`` (https://www.sqlite.org/pragma.html#pragma_wal_checkpoint),
  which copies the committed frames without waiting for any reader or writer;
* a log is only rewound to its start (and so stops growing) by the first write after a
  checkpoint that copied *every* frame while no reader was using the log
  (https://www.sqlite.org/wal.html, "WAL File Reset"), which a passive checkpoint
  racing a busy writer never achieves (measured: the log grew to the fallback, 80 MB).
  So a second pass, ``wal_checkpoint(RESTART)``, runs while the store's commit role is
  held (``quiesce``): it copies only the frames committed during the first pass, and
  the next commit rewinds the log. Writers wait for those few frames and two fsyncs,
  not for the whole log. The connection has no busy timeout, so a reader still on the
  log makes the pass return at once instead of waiting; the next round catches up;
* the writer's connection keeps an automatic checkpoint at :data:`FALLBACK_PAGES`
  (:func:`defer_checkpoints`), far above what the thread lets the log reach, so the
  log stays bounded even if the thread falls behind or a checkpoint keeps failing.

What stays on the writer's thread: the first commit after a rewind writes the log's
new header and fsyncs it (SQLite does at ``synchronous = NORMAL`` too, so that recovery
never mistakes old frames for new ones): one small fsync per rewind, where SQLite's own
checkpoint made three there.

Invariants: no commit's durability changes. A checkpoint only copies frames that are
already committed (and, with ``synchronous`` NORMAL or FULL on the checkpointing
connection, syncs the log before and the file after, as SQLite's own checkpoint
does: https://www.sqlite.org/wal.html#ckpt). Python's sqlite3 releases the GIL while a
statement runs, so the thread's fsyncs do not hold up the interpreter. A failed
checkpoint is logged on ``clearance.ledger`` and tried again; it never fails a commit.
:meth:`WalCheckpointer.close` stops and joins the thread before the caller closes its
own connection, and SQLite checkpoints the log when its last connection closes.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

CHECKPOINT_EVERY_ROWS = 1_000
"""Rows committed between background checkpoints: a ledger row (an entry, its Merkle
nodes and two index entries) dirties one to four pages, so the log stays within a few
thousand pages (a few MB). Writers wait for the catch-up pass once per this many rows
(2-3 ms, one governed call in about 500), and the commits that run beside the passive
pass are slowed by its I/O (about 30 calls in 500 at 3-4× their median: that, not the
catch-up, is the relaxed p99 that remains). Passes every 100 or 200 rows measured the
same."""

FALLBACK_PAGES = 20_000
"""The writer's own automatic checkpoint (about 80 MB of log at 4 KiB pages): only
reached when the background thread has fallen far behind or cannot checkpoint."""

IDLE_SECONDS = 1.0
"""A quiet log is checkpointed at least this often, so it does not keep frames the
background thread was never asked to copy."""

_log = logging.getLogger("clearance.ledger")


def defer_checkpoints(conn: sqlite3.Connection) -> None:
    """Raise the automatic checkpoint of ``conn`` to :data:`FALLBACK_PAGES`; sqlite3.Error."""
    conn.execute(f"PRAGMA wal_autocheckpoint = {FALLBACK_PAGES}")


class WalCheckpointer:
    """A thread that checkpoints the write-ahead log of one SQLite file (see the module)."""

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str,
        quiesce: Callable[[], AbstractContextManager[object]],
        every_rows: int = CHECKPOINT_EVERY_ROWS,
        idle: float = IDLE_SECONDS,
    ) -> None:
        """Open a connection to ``path`` for checkpoints and start the thread.

        ``synchronous`` is the writer's setting (``FULL`` or ``NORMAL``): the
        checkpoint syncs as that writer's own automatic checkpoint would have.
        ``quiesce()`` holds off the store's commits while the catch-up pass runs.
        Raises sqlite3.Error when the connection cannot be opened.
        """
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
        if every_rows < 1 or not idle > 0:
            raise ValueError("every_rows must be >= 1 and idle > 0")
        self._path = path
        self._quiesce = quiesce
        self._every = every_rows
        self._idle = idle
        self._rows = 0
        self._wake = threading.Event()
        self._stop = False
        self._failed = False
        self._done = 0
        self._conn = sqlite3.connect(
            str(path), isolation_level=None, check_same_thread=False, timeout=0
        )
        try:
            self._conn.execute(f"PRAGMA synchronous = {synchronous}")
        except BaseException:
            self._conn.close()
            raise
        self._thread = threading.Thread(
            target=self._run, name=f"clearance-wal-{path.name}", daemon=True
        )
        self._thread.start()

    @property
    def checkpoints(self) -> int:
        """How many checkpoints the thread has run (for tests and metrics)."""
        return self._done

    def note(self, rows: int) -> None:
        """Count ``rows`` just committed; wake the thread every :data:`CHECKPOINT_EVERY_ROWS`.

        Called on the committing thread with the commit role held (one caller at a time).
        """
        self._rows += rows
        if self._rows >= self._every:
            self._rows = 0
            self._wake.set()

    def close(self) -> None:
        """Stop and join the thread, then close its connection. Idempotent."""
        self._stop = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()
        self._conn.close()

    def _run(self) -> None:
        while True:
            self._wake.wait(self._idle)
            self._wake.clear()
            if self._stop:
                return
            try:
                self._checkpoint("PASSIVE")
                with self._quiesce():
                    self._checkpoint("RESTART")
            except sqlite3.Error as exc:
                if not self._failed:  # once per run of failures, not once per attempt
                    _log.warning("cannot checkpoint the write-ahead log of %s: %s", self._path, exc)
                self._failed = True
                continue
            if self._failed:
                _log.info("checkpointing the write-ahead log of %s again", self._path)
                self._failed = False
            self._done += 1

    def _checkpoint(self, mode: str) -> None:
        """One ``wal_checkpoint``; a busy result (another checkpoint, a reader) waits a round."""
        self._conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
