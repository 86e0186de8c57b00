"""The SQLite ledger's on-disk schema and the low-level reads the store and the auditor
share (rows are laid out by :mod:`clearance._internal.ledger.layout`, as in every store).

Tables (schema version 1):

* ``meta(key, value)`` — ``version``, ``origin`` and the ``vkey`` the log was created with;
* ``entries(idx, hashes, type, ref, trace_id, leaf)`` — ``leaf`` holds the RFC 8785
  canonical bytes of entry ``idx``; ``ref`` is :func:`~clearance._internal.ledger.store.index_ref`
  of it (indexed with ``type``), ``trace_id`` is indexed with ``type``
  (``entries_by_trace_type``; files created before it have ``entries_by_trace`` on
  ``trace_id`` alone, which a writer replaces when it opens them: an index changes no
  stored byte, so the schema version stays 1);
* ``checkpoints(size, root, note)`` — every signed C2SP tlog-checkpoint, by tree size.

``type``, ``ref`` and ``trace_id`` are *derived* columns: a function of the leaf
(:func:`~clearance._internal.ledger.layout.derived_columns`) that no hash covers. They
exist only to find rows, so nothing may trust them:
:func:`~clearance._internal.ledger.sqlite_rows.first_bad_row` recomputes all of them from the leaves
(one SQL pass) when a store opens, the auditor does the same, and readers check that
every row a lookup returns really has the looked-up values.

``hashes`` stores the RFC 9162 §2.1 tree: the leaf hash of ``idx`` followed by the
hash of every perfect subtree that leaf ``idx`` completes, level by level. Node
``(level, k)`` (leaves ``[k * 2**level, (k + 1) * 2**level)``) is therefore bytes
``[32 * level, 32 * level + 32)`` of row ``(k + 1) * 2**level - 1``, and a row holds
``1 + (trailing one bits of idx)`` hashes, two on average. Any inclusion or
consistency proof (RFC 9162 §2.1.3-2.1.4) and any historical root is a fold of
O(log n) such nodes, fetched with one query.

Why the nodes live in the entries row rather than a ``nodes`` table: a group of
appends is then a single INSERT statement, one implicit transaction. Python's
sqlite3 module releases the GIL around every statement, and with eight writer
threads busy canonicalising entries, taking it back cost about 130 µs per
statement; the five statements of BEGIN/INSERT/INSERT/COMMIT made group commit
about a third slower than one INSERT in our measurements on a 2-core machine.

Invariant: rows are only ever inserted. Nothing in clearance issues an UPDATE or a
DELETE against these tables, and triggers abort any that another program attempts
through SQLite (an attacker with the file can drop the triggers; the Merkle tree and
the signed checkpoints are what detect that, see :mod:`clearance._internal.ledger.audit`).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from clearance._internal.ledger.layout import frontier, node_rows, nodes_in
from clearance._internal.migrations import Migration, apply, pending
from clearance.errors import LedgerError

SCHEMA_VERSION = "1"

_APPEND_ONLY = ("entries", "checkpoints", "meta")

TRACE_TYPE_INDEX = """CREATE INDEX IF NOT EXISTS entries_by_trace_type
    ON entries (trace_id, type) WHERE trace_id IS NOT NULL"""
"""The newest entry of one type in a trace (``last_in_trace``) is one seek however
long the trace: within equal keys the index is ordered by rowid (= ``idx``), so
``ORDER BY idx DESC LIMIT 1`` reads a single index entry. A whole trace (``trace``)
is a range of it, sorted by ``idx`` afterwards. It replaced the single-column
``entries_by_trace`` rather than joining it, so an append still updates two
indexes; :func:`initialise` migrates older files."""

COMPONENT = "ledger"
"""The ledger's component name (:mod:`clearance._internal.migrations`)."""

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS meta (
        key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS entries (
        idx INTEGER PRIMARY KEY, hashes BLOB NOT NULL, type TEXT NOT NULL,
        ref TEXT, trace_id TEXT, leaf BLOB NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS entries_by_ref ON entries (type, ref) WHERE ref IS NOT NULL",
    TRACE_TYPE_INDEX,
    """CREATE TABLE IF NOT EXISTS checkpoints (
        size INTEGER PRIMARY KEY, root BLOB NOT NULL, note TEXT NOT NULL)""",
    *(
        f"""CREATE TRIGGER IF NOT EXISTS {table}_no_{verb.lower()} BEFORE {verb} ON {table}
            BEGIN SELECT RAISE(ABORT, 'the clearance ledger is append-only'); END"""
        for table in _APPEND_ONLY
        for verb in ("UPDATE", "DELETE")
    ),
)
SQLITE_MIGRATIONS = (
    Migration(1, "entries with their Merkle nodes, checkpoints, append-only triggers", SCHEMA),
)
"""The file's schema history (its ``user_version``); ``meta.version`` names the row
layout, which is the same on PostgreSQL."""

# SQLite primary result codes (https://www.sqlite.org/rescode.html).
_SQLITE_PERM = 3
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_READONLY = 8
_SQLITE_IOERR = 10
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14
_SQLITE_CONSTRAINT = 19
_SQLITE_NOTADB = 26


def describe(exc: sqlite3.Error, path: Path) -> str:
    """An actionable sentence for a SQLite failure on the ledger at ``path``."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary in (_SQLITE_READONLY, _SQLITE_PERM):
        return (
            f"ledger at {path} is read-only ({exc}); check the permissions of the file, "
            "its -wal/-shm companions and its directory, and that the filesystem is writable"
        )
    if primary == _SQLITE_FULL:
        return f"disk full while writing the ledger at {path} ({exc}); free space and retry"
    if primary in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return f"ledger at {path} is locked by another connection or process ({exc})"
    if primary == _SQLITE_CANTOPEN:
        if _read_only_filesystem(path):
            return (
                f"ledger at {path} is read-only: its filesystem is mounted read-only, and "
                "SQLite needs to write the -wal/-shm files next to it; remount it read-write"
            )
        return (
            f"cannot open the ledger at {path} ({exc}); check that the directory exists "
            "and is writable"
        )
    if primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return f"ledger at {path} is corrupt or not a SQLite database ({exc})"
    if primary == _SQLITE_IOERR:
        return f"I/O error on the ledger at {path} ({exc}); check the disk and its free space"
    if primary == _SQLITE_CONSTRAINT:
        return (
            f"ledger at {path} refused a write ({exc}); another process may be appending "
            "to it, or something tried to modify stored rows"
        )
    return f"ledger at {path}: {exc}"


def _read_only_filesystem(path: Path) -> bool:
    try:
        return bool(os.statvfs(path.parent).f_flag & os.ST_RDONLY)
    except OSError:
        return False


@contextmanager
def translate(path: Path, doing: str) -> Iterator[None]:
    """Turn any ``sqlite3.Error`` raised inside into a :class:`LedgerError`."""
    try:
        yield
    except sqlite3.Error as exc:
        raise LedgerError(f"{doing}: {describe(exc, path)}") from exc


def connect(path: Path, *, read_only: bool, busy_timeout: float = 10.0) -> sqlite3.Connection:
    """Open ``path`` in autocommit mode (transactions are explicit), usable from any thread.

    Raises sqlite3.Error; callers wrap it with :func:`translate`.
    """
    if read_only:
        target, uri = f"file:{quote(str(path))}?mode=ro", True
    else:
        target, uri = str(path), False
    conn = sqlite3.connect(
        target, uri=uri, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    if read_only:
        conn.execute("PRAGMA query_only = ON")
    return conn


SYNCHRONOUS: dict[str, str] = {"durable": "FULL", "relaxed": "NORMAL"}
"""``durable`` fsyncs every commit; ``relaxed`` only at WAL checkpoints (see :mod:`.sqlite`)."""


def open_writer(path: Path, durability: str, origin: str, vkey: str) -> sqlite3.Connection:
    """The write connection of the ledger at ``path``: WAL mode, ``durability``, initialised.

    Creates the schema of a new file, or checks that an existing one belongs to
    ``origin`` (:func:`initialise`). LedgerError otherwise; nothing stays open.
    """
    with translate(path, "opening the ledger"):
        conn = connect(path, read_only=False)
    try:
        with translate(path, "opening the ledger"):
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise LedgerError(f"ledger at {path} cannot use WAL mode (got {mode!r})")
            conn.execute(f"PRAGMA synchronous = {SYNCHRONOUS[durability]}")
            initialise(conn, path, origin, vkey)
    except BaseException:
        conn.close()
        raise
    return conn


def read_meta(conn: sqlite3.Connection) -> dict[str, str]:
    """The ``meta`` table as a dict (empty for a database that is not a ledger yet)."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
    ).fetchone()
    if exists is None:
        return {}
    return {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM meta")}


ENTRY_COLUMNS = 6
"""Values per row of :data:`entries`, in :func:`insert_entries` order."""

MAX_ROWS_PER_INSERT = 4096
"""Rows one INSERT statement carries (6 values each, under SQLite's 32766 variables)."""

_INSERT_SQL: dict[int, str] = {}


def insert_entries(conn: sqlite3.Connection, flat: list[Any], start: int, rows: int) -> None:
    """Insert ``rows`` entries from ``flat`` (``(idx, hashes, type, ref, trace_id, leaf)``
    values, row after row, beginning at row ``start``) with a single statement.

    Raises sqlite3.Error.
    """
    sql = _INSERT_SQL.get(rows)
    if sql is None:
        values = ",".join(["(?,?,?,?,?,?)"] * rows)
        sql = f"INSERT INTO entries (idx, hashes, type, ref, trace_id, leaf) VALUES {values}"  # noqa: S608
        if rows <= 64:  # keep the cache small; large batches are rare
            _INSERT_SQL[rows] = sql
    first = start * ENTRY_COLUMNS
    conn.execute(sql, flat[first : first + rows * ENTRY_COLUMNS])


_FETCH_SQL: dict[int, str] = {}


def fetch_nodes(
    conn: sqlite3.Connection, keys: Sequence[tuple[int, int]]
) -> dict[tuple[int, int], bytes]:
    """Fetch the stored hashes of ``keys`` (``(level, idx)`` pairs) with one query.

    Keys whose row is missing or too short are left out of the result (:func:`nodes_in`).
    """
    rows = node_rows(keys)
    if not rows:
        return {}
    sql = _FETCH_SQL.get(len(rows))
    if sql is None:
        marks = ",".join("?" * len(rows))
        sql = f"SELECT idx, hashes FROM entries WHERE idx IN ({marks})"  # noqa: S608
        _FETCH_SQL[len(rows)] = sql
    return nodes_in({int(idx): blob for idx, blob in conn.execute(sql, rows)}, keys)


def load_tree(conn: sqlite3.Connection) -> tuple[int, list[tuple[int, bytes]]]:
    """The committed tree size and its right edge (``perfect_subtrees(0, size)`` hashes).

    O(log n) reads: the size comes from the primary key's maximum, the frontier
    from the rows that store it. TamperError when a frontier node is missing.
    """
    (last,) = conn.execute("SELECT max(idx) FROM entries").fetchone()
    size = 0 if last is None else int(last) + 1
    return size, frontier(lambda keys: fetch_nodes(conn, keys), size)


def initialise(conn: sqlite3.Connection, path: Path, origin: str, vkey: str) -> None:
    """Create the schema of a new ledger, or check an existing one belongs to ``origin``.

    The schema is :data:`SQLITE_MIGRATIONS`, applied by the mechanism every store uses
    (:mod:`clearance._internal.migrations`: the file's ``user_version``); a file whose
    version is newer than this code knows is refused. Files written before that
    mechanism have ``user_version`` 0 and ``meta.version`` 1: they are read as they are
    (nothing is written to an existing ledger just to open it).
    """
    meta = read_meta(conn)
    if not meta:
        # Only a new file takes the write lock here, so an existing ledger on a
        # read-only medium still opens (appends then fail with LedgerError).
        apply(conn, COMPONENT, SQLITE_MIGRATIONS)
        conn.execute("BEGIN IMMEDIATE")
        try:
            meta = read_meta(conn)  # another process may have created it meanwhile
            if not meta:
                meta = {"version": SCHEMA_VERSION, "origin": origin, "vkey": vkey}
                conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", meta.items())
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    pending(conn, COMPONENT, SQLITE_MIGRATIONS)  # LedgerError when the file is newer
    if meta.get("version") != SCHEMA_VERSION:
        raise LedgerError(
            f"ledger at {path} has schema version {meta.get('version')!r}; "
            f"this clearance reads version {SCHEMA_VERSION}"
        )
    if meta.get("origin") != origin:
        raise LedgerError(f"ledger at {path} belongs to log {meta.get('origin')!r}, not {origin!r}")
    _add_missing_indexes(conn)


def _add_missing_indexes(conn: sqlite3.Connection) -> None:
    """Give a file created before :data:`TRACE_TYPE_INDEX` existed that index instead of
    ``entries_by_trace``, in one transaction.

    Skipped when the file cannot be written now (read-only, or locked by a writer):
    every query still works with the old index, only ``last_in_trace`` then reads
    the trace's rows backwards until it finds the type.
    """
    present = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'entries_by_trace_type'"
    ).fetchone()
    if present is not None:
        return
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(TRACE_TYPE_INDEX)
            conn.execute("DROP INDEX IF EXISTS entries_by_trace")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except sqlite3.OperationalError as exc:
        code = getattr(exc, "sqlite_errorcode", None)
        primary = code & 0xFF if isinstance(code, int) else None
        if primary not in (_SQLITE_READONLY, _SQLITE_PERM, _SQLITE_BUSY, _SQLITE_LOCKED):
            raise
