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

Steps 1, 2 and 4 read O(log n) rows. Leaf *bytes* are not hashed here: a leaf edited
in place is caught when read (:func:`prove_stored`, behind :meth:`SQLiteLedger.prove`)
and by the full audit. After a failed commit, :func:`extension_on_disk` applies the
same rules to whatever another writer added.
"""

from __future__ import annotations

import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from clearance._internal.ledger import merkle
from clearance._internal.ledger.anchor import CheckpointAnchor, stale_problem
from clearance._internal.ledger.checkpoint import NoteVerifier, parse_checkpoint
from clearance._internal.ledger.sqlite_db import Tree, load_tree, sqlite_type
from clearance._internal.ledger.sqlite_reader import LedgerReader, range_hashes
from clearance._internal.ledger.sqlite_rows import first_bad_row, parse_stored_leaf
from clearance._internal.ledger.store import Checkpoint, StoredEntry
from clearance.errors import ProofError, TamperError

_LAST_GOOD_ROWS = 64
"""Stored checkpoints examined when locating where a rewrite begins (failure path only)."""

ROW_CHECK_THREADS = min(4, os.cpu_count() or 1)
"""Read connections that check rows in parallel when a large ledger opens."""

_ROWS_PER_THREAD = 100_000
"""Below this many rows per thread, one connection checks them all."""


def latest_stored_checkpoint(
    conn: sqlite3.Connection, path: Path, verifier: NoteVerifier, origin: str
) -> Checkpoint | None:
    """The newest checkpoint row, verified; TamperError when it does not verify."""
    row = conn.execute(
        "SELECT size, root, note FROM checkpoints ORDER BY size DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    size, root, note = row
    if not isinstance(root, bytes) or not isinstance(note, str):
        raise TamperError(
            f"checkpoint row {size} in {path} stores a {sqlite_type(root)} root and a "
            f"{sqlite_type(note)} note, not a BLOB and TEXT"
        )
    try:
        cp = parse_checkpoint(note, verifier, origin=origin)
    except ProofError as exc:
        raise TamperError(
            f"the latest checkpoint in {path} (size {size}) does not verify with this log's "
            f"key {verifier.vkey()}: {exc}"
        ) from exc
    if cp.size != size or cp.root != root:
        raise TamperError(f"checkpoint row {size} in {path} differs from its note")
    return cp


def check_extends(
    conn: sqlite3.Connection, path: Path, size: int, root: bytes, tree: Tree, what: str
) -> None:
    """TamperError unless ``tree`` extends the tree of ``size`` leaves with ``root``.

    RFC 9162 §2.1.4, with the proof read from the stored nodes through ``conn``.
    ``what`` names the older tree in messages ("its signed checkpoint").
    """
    if size > tree.size:
        raise TamperError(
            f"the ledger at {path} holds {tree.size} entries but {what} has {size}: "
            f"entries from index {tree.size} on were removed",
            index=tree.size,
        )
    if size == 0:
        return  # the empty tree commits to nothing
    if size == tree.size:
        if root != tree.root:
            raise TamperError(f"the ledger's root at size {size} differs from {what}")
        return
    proof = range_hashes(conn, merkle.consistency_ranges(size, tree.size))
    try:
        merkle.verify_consistency(size, tree.size, root, tree.root, proof)
    except ProofError as exc:
        raise TamperError(
            f"the ledger at size {tree.size} is not consistent with {what} at size "
            f"{size} ({exc}): stored hashes were altered"
        ) from exc


def _last_good_size(
    conn: sqlite3.Connection, below: int, verifier: NoteVerifier, origin: str
) -> int:
    """The largest stored checkpoint size ``<= below`` whose signed root the stored tree has.

    Entries before it are still what was signed; a rewrite begins at or after it.
    """
    rows = conn.execute(
        "SELECT size, root, note FROM checkpoints WHERE size <= ? ORDER BY size DESC LIMIT ?",
        (below, _LAST_GOOD_ROWS),
    ).fetchall()
    for size, root, note in rows:
        if not isinstance(root, bytes) or not isinstance(note, str) or size <= 0:
            continue
        try:
            cp = parse_checkpoint(note, verifier, origin=origin)
            if cp.size == size and cp.root == root == range_hashes(conn, [(0, size)])[0]:
                return int(size)
        except (ProofError, TamperError):
            continue
    return 0


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
    smallest: int | None = None
    for file in anchor.files:
        cp = file.read(verifier, origin)
        if cp is None:
            if latest is not None:
                raise file.missing(latest.size)
            smallest = 0
            continue
        where = f"the checkpoint anchored in {file.describe()}"
        if cp.size > tree.size:
            raise TamperError(
                f"the ledger at {path} holds {tree.size} entries but {where} has {cp.size}: "
                f"entries from index {tree.size} on were removed, or the ledger file was "
                "replaced by an older copy (rolled back)",
                index=tree.size,
            )
        try:
            check_extends(conn, path, cp.size, cp.root, tree, where)
        except TamperError as exc:
            good = _last_good_size(conn, cp.size, verifier, origin)
            raise TamperError(
                f"the ledger does not extend {where} (size {cp.size}): entries from index "
                f"{good} on were rewritten and re-hashed ({exc})",
                index=good,
            ) from exc
        row = conn.execute("SELECT root FROM checkpoints WHERE size = ?", (cp.size,)).fetchone()
        if row is None or row[0] != cp.root:
            raise TamperError(
                f"the ledger at {path} holds no checkpoint row of size {cp.size} with the root "
                f"{where} has: signed checkpoints were deleted from the ledger"
            )
        smallest = cp.size if smallest is None else min(smallest, cp.size)
    return smallest or 0


def check_grace(
    conn: sqlite3.Connection, tree: Tree, latest: Checkpoint | None, now: float, grace: float
) -> None:
    """Step 4: the first entry no signed checkpoint covers is no older than ``grace`` seconds."""
    first = latest.size if latest is not None else 0
    if tree.size <= first:
        return
    row = conn.execute("SELECT leaf FROM entries WHERE idx = ?", (first,)).fetchone()
    if row is None:
        raise TamperError(f"entry {first} is missing", index=first)
    problem = stale_problem(first, parse_stored_leaf(first, row[0]), now, grace)
    if problem is not None:
        raise TamperError(problem, index=first)


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


def prove_stored(reads: LedgerReader, path: Path, stored: StoredEntry, tree: Tree) -> StoredEntry:
    """``stored`` once its leaf is proven at its index in ``tree`` (RFC 9162 §2.1.3).

    TamperError(index=stored.index) when the index is outside the tree or the leaf's
    hash and its inclusion proof do not lead to the tree's root.
    """
    index = stored.index
    if not 0 <= index < tree.size or not isinstance(stored.leaf, bytes):
        raise TamperError(
            f"entry {index} is not in this ledger's tree of {tree.size} entries", index=index
        )
    proof = reads.inclusion_proof(index, tree.size)
    try:
        merkle.verify_inclusion(index, tree.size, merkle.leaf_hash(stored.leaf), proof, tree.root)
    except ProofError as exc:
        raise TamperError(
            f"entry {index} as stored in {path} is not the entry the verified tree "
            f"holds at that index ({exc}): the row was altered",
            index=index,
        ) from exc
    return stored


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
