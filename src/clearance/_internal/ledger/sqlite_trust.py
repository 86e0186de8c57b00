"""What a SQLite ledger file must prove before a store trusts its in-memory tree.

:class:`~clearance._internal.ledger.sqlite.SQLiteLedger` runs these checks when it opens a
file (and, for the rows another writer added, when it reloads after a failed
commit). Together they are fail-closed rule 12 (docs/design.md §4): a ledger that does not
extend the last anchored checkpoint — rolled back, rewritten and re-hashed, with
deleted checkpoints or edited derived columns — is refused with a
:class:`~clearance.errors.TamperError` naming the problem and, where known, the
first affected leaf index.

In order:

1. The newest stored checkpoint verifies with the log's key (C2SP signed-note) and
   the stored tree extends it (RFC 9162 §2.1.4), as before anchors existed.
2. For every anchored file (:mod:`clearance._internal.ledger.anchor`): it is present whenever
   the database holds any checkpoint ("anchor missing"), its note verifies with the
   log's key and origin, the tree holds at least that many entries, a consistency
   proof from the anchored size to the current tree verifies against the anchored
   root, and the database still holds a checkpoint row with exactly that size and
   root.
3. Every row's leaf and hashes are BLOBs, every leaf is a JSON object, and the
   derived columns ``type``, ``ref`` and ``trace_id`` equal what the writer computes
   from the leaf (:func:`~clearance._internal.ledger.sqlite_rows.first_bad_row`). This is the
   one O(n) step: no hash covers those columns, and a cleared ``trace_id`` would hide
   an entry from its trace. It runs in SQLite's JSON parser, split over up to
   :data:`ROW_CHECK_THREADS` read connections (SQLite releases the GIL), at about
   1.5 µs per small entry and 4 µs per 1 KiB decision entry on one core.
4. Grace: when entries follow the newest checkpoint (or none exists), the first of
   them must be dated within ``grace`` seconds of now
   (:func:`~clearance._internal.ledger.anchor.stale_problem`).

Steps 1, 2 and 4 read O(log n) rows and are the backend-neutral checks of
:mod:`clearance._internal.ledger.trust`, run through :class:`SQLiteTree`. Leaf *bytes*
are not hashed here: a leaf edited in place is caught when read
(:func:`~clearance._internal.ledger.trust.prove_stored`, behind
:meth:`SQLiteLedger.prove`) and by the full audit. After a failed commit,
:func:`extension_on_disk` applies the same rules to whatever another writer added.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from clearance._internal.ledger import merkle, trust
from clearance._internal.ledger.anchor import CheckpointAnchor
from clearance._internal.ledger.checkpoint import NoteVerifier
from clearance._internal.ledger.layout import Tree
from clearance._internal.ledger.sqlite_db import load_tree
from clearance._internal.ledger.sqlite_reader import LedgerReader, range_hashes
from clearance._internal.ledger.sqlite_rows import first_bad_row
from clearance._internal.ledger.store import Checkpoint

ROW_CHECK_THREADS = min(4, os.cpu_count() or 1)
"""Read connections that check rows in parallel when a large ledger opens."""

_ROWS_PER_THREAD = 100_000
"""Below this many rows per thread, one connection checks them all."""


class SQLiteTree:
    """:class:`~clearance._internal.ledger.trust.StoredTree` over one SQLite connection."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        """Read the ledger at ``path`` through ``conn`` (sqlite3 errors propagate)."""
        self._conn = conn
        self.where = str(path)

    def range_hashes(self, ranges: Sequence[merkle.LeafRange]) -> list[bytes]:
        """The stored hashes of leaf ranges (one query)."""
        return range_hashes(self._conn, ranges)

    def checkpoint_rows(self, at_most: int | None, limit: int) -> list[trust.CheckpointRow]:
        """Up to ``limit`` checkpoint rows of size ``<= at_most``, newest first."""
        if at_most is None:
            rows = self._conn.execute(
                "SELECT size, root, note FROM checkpoints ORDER BY size DESC LIMIT ?", (limit,)
            )
        else:
            rows = self._conn.execute(
                "SELECT size, root, note FROM checkpoints WHERE size <= ? "
                "ORDER BY size DESC LIMIT ?",
                (at_most, limit),
            )
        return [(size, root, note) for size, root, note in rows.fetchall()]

    def leaf(self, index: int) -> object | None:
        """The stored leaf of entry ``index``, or None."""
        row = self._conn.execute("SELECT leaf FROM entries WHERE idx = ?", (index,)).fetchone()
        return None if row is None else row[0]


def latest_stored_checkpoint(
    conn: sqlite3.Connection, path: Path, verifier: NoteVerifier, origin: str
) -> Checkpoint | None:
    """The newest checkpoint row, verified; TamperError when it does not verify."""
    return trust.latest_stored_checkpoint(SQLiteTree(conn, path), verifier, origin)


def check_extends(
    conn: sqlite3.Connection, path: Path, size: int, root: bytes, tree: Tree, what: str
) -> None:
    """TamperError unless ``tree`` extends the tree of ``size`` leaves with ``root``.

    RFC 9162 §2.1.4, with the proof read from the stored nodes through ``conn``.
    ``what`` names the older tree in messages ("its signed checkpoint").
    """
    trust.check_extends(SQLiteTree(conn, path), size, root, tree, what)


def check_anchors(
    conn: sqlite3.Connection,
    path: Path,
    tree: Tree,
    latest: Checkpoint | None,
    anchor: CheckpointAnchor,
    verifier: NoteVerifier,
    origin: str,
) -> int:
    """Step 2 of the module docstring; returns the smallest anchored size (0: some file absent)."""
    return trust.check_anchors(SQLiteTree(conn, path), tree, latest, anchor, verifier, origin)


def check_grace(
    conn: sqlite3.Connection, tree: Tree, latest: Checkpoint | None, now: float, grace: float
) -> None:
    """Step 4: the first entry no signed checkpoint covers is no older than ``grace`` seconds."""
    trust.check_grace(SQLiteTree(conn, Path()), tree, latest, now, grace)


def check_rows(reads: LedgerReader, size: int) -> None:
    """Step 3 over rows ``[0, size)``: TamperError naming the first bad row.

    Contiguous ranges are checked in parallel; when several hold a bad row, the
    lowest range's error is raised, so the index named is the first bad one.
    """
    threads = max(1, min(ROW_CHECK_THREADS, size // _ROWS_PER_THREAD))
    step = -(-size // threads) if size else 0

    def check(start: int) -> None:
        with reads.connection() as conn:
            first_bad_row(conn, start, min(size, start + step))

    if threads == 1:
        check(0)
        return
    with ThreadPoolExecutor(threads, thread_name_prefix="clearance-rows") as pool:
        futures = [pool.submit(check, start) for start in range(0, size, step)]
    for future in futures:  # in range order: the first failure has the lowest index
        error = future.exception()
        if error is not None:
            raise error


def extension_on_disk(conn: sqlite3.Connection, path: Path, old: Tree) -> Tree:
    """The tree in the file, proven to extend ``old`` with honest derived columns.

    For a store whose commit failed: another writer may have appended meanwhile.
    TamperError when the file's tree does not extend ``old`` (RFC 9162 §2.1.4) or
    a row added since has a derived column that differs from its leaf.
    """
    size, frontier = load_tree(conn)
    new = Tree(size, frontier)
    check_extends(conn, path, old.size, old.root, new, "the tree it had")
    first_bad_row(conn, old.size, new.size)
    return new
