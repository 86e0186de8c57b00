"""Copying a whole log between stores (SQLite ↔ PostgreSQL), proven equal.

``clearance migrate --from SOURCE --to TARGET`` moves a log to the scale-out store, or
takes one offline for audit. A copy is only useful if it is *the same log*, so
:func:`copy_log` proves it instead of trusting the copy:

* The source is audited first (:func:`clearance._internal.ledger.audit.verify`: every
  leaf, node and checkpoint against the log's trusted vkey); a source that does not
  verify is not copied.
* Rows are copied byte for byte (leaf, stored Merkle nodes, derived columns) with the
  signed checkpoint notes and the log's ``meta`` (origin, vkey, layout version), in one
  transaction on the target, which must hold no log yet (nothing is ever merged or
  overwritten).
* Then the target is audited with the same vkey, its root is recomputed from its own
  leaves and must equal the source's, and it must hold exactly the source's checkpoint
  notes (the audit proves its tree reproduces each one's root). Any difference is
  TamperError.

Nothing is signed during a copy: the target has exactly the checkpoints the log
already signed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clearance._internal.ledger import merkle
from clearance._internal.ledger.audit import verify
from clearance._internal.postgres import connect, is_postgres_url, redact
from clearance.errors import InputError, LedgerError, TamperError

Row = tuple[int, bytes, str, str | None, str | None, bytes]
"""An ``entries`` row: idx, hashes, type, ref, trace_id, leaf."""
_CHUNK = 2000


@dataclass(frozen=True)
class Copied:
    """What a copy proved."""

    source: str
    target: str
    size: int
    root: bytes
    checkpoints: int


def parse_location(value: str) -> str | Path:
    """A ``postgresql://`` URL as is, or the path of a SQLite file (``sqlite:///PATH`` or a
    plain path). InputError for anything else."""
    if is_postgres_url(value):
        return value
    if value.startswith("sqlite://"):
        rest = value[len("sqlite://") :]
        if not rest.startswith("/"):
            raise InputError(f"{value!r}: write sqlite:///ABSOLUTE/PATH (three slashes)")
        return Path(rest)
    if "://" in value:
        raise InputError(f"{redact(value)!r}: use sqlite:///PATH or postgresql://...")
    return Path(value)


def _shown(location: str | Path) -> str:
    return redact(location) if isinstance(location, str) else str(location)


@contextmanager
def _read(location: str | Path) -> Iterator[tuple[dict[str, str], list[Row], list[Any]]]:
    """The meta, rows and checkpoints of the log at ``location``."""
    if isinstance(location, Path):
        if not location.is_file():
            raise InputError(f"no ledger at {location}")
        with closing(sqlite3.connect(f"file:{location}?mode=ro", uri=True)) as conn:
            meta = dict(conn.execute("SELECT key, value FROM meta"))
            rows = conn.execute(
                "SELECT idx, hashes, type, ref, trace_id, leaf FROM entries ORDER BY idx"
            ).fetchall()
            notes = conn.execute(
                "SELECT size, root, note FROM checkpoints ORDER BY size"
            ).fetchall()
        yield meta, rows, notes
        return
    with connect(location) as conn:
        found = conn.execute("SELECT to_regclass('meta') IS NOT NULL").fetchone()
        if not found or not found[0]:
            raise InputError(f"no ledger in {redact(location)}")
        meta = {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM meta")}
        rows = [
            (int(r[0]), bytes(r[1]), r[2], r[3], r[4], bytes(r[5]))
            for r in conn.execute(
                "SELECT idx, hashes, type, ref, trace_id, leaf FROM entries ORDER BY idx"
            )
        ]
        notes = [
            (int(r[0]), bytes(r[1]), r[2])
            for r in conn.execute("SELECT size, root, note FROM checkpoints ORDER BY size")
        ]
        conn.rollback()
    yield meta, rows, notes


def _write_sqlite(path: Path, meta: dict[str, str], rows: list[Row], notes: list[Any]) -> None:
    from clearance._internal.ledger.sqlite_db import SCHEMA

    if path.exists():
        raise InputError(f"{path} exists: the target must be a new file (nothing is merged)")
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN IMMEDIATE")
        for statement in SCHEMA:
            conn.execute(statement)
        conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", meta.items())
        conn.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?)", rows)
        conn.executemany("INSERT INTO checkpoints VALUES (?, ?, ?)", notes)
        conn.execute("COMMIT")
    except BaseException:
        conn.close()
        path.unlink(missing_ok=True)
        raise
    conn.close()


def _write_postgres(url: str, meta: dict[str, str], rows: list[Row], notes: list[Any]) -> None:
    from clearance._internal.ledger.postgres_schema import COMPONENT, MIGRATIONS
    from clearance._internal.migrations import apply

    with connect(url) as conn:
        conn.autocommit = True
        apply(conn, COMPONENT, MIGRATIONS)
        conn.autocommit = False
        with conn.transaction():
            held = conn.execute("SELECT count(*) FROM meta").fetchone()
            if held and held[0]:
                raise InputError(
                    f"{redact(url)} already holds a log: the target must be empty (nothing is "
                    "merged or overwritten)"
                )
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO meta (key, value) VALUES (%s, %s)", list(meta.items()))
                for start in range(0, len(rows), _CHUNK):
                    cur.executemany(
                        "INSERT INTO entries (idx, hashes, type, ref, trace_id, leaf) "
                        "VALUES (%s, %s, %s, %s, %s, %s)",
                        rows[start : start + _CHUNK],
                    )
                cur.executemany(
                    "INSERT INTO checkpoints (size, root, note) VALUES (%s, %s, %s)", notes
                )


def copy_log(source: str | Path, target: str | Path, *, vkey: str) -> Copied:
    """Copy the log at ``source`` to the empty ``target`` and prove them equal (see the
    module docstring). ``vkey`` is the log's trusted verifier key."""
    if isinstance(source, type(target)) and str(source) == str(target):
        raise InputError("the source and the target are the same")
    before = verify(source, vkey=vkey)
    if not before.ok:
        raise TamperError(f"the source log does not verify, so it is not copied: {before.message}")
    with _read(source) as (meta, rows, notes):
        if meta.get("vkey") != vkey:
            raise LedgerError(f"the source log was created with another key ({meta.get('vkey')})")
        if isinstance(target, Path):
            _write_sqlite(target, meta, rows, notes)
        else:
            _write_postgres(target, meta, rows, notes)
        leaves = [merkle.leaf_hash(row[5]) for row in rows]
    with _read(target) as (copied_meta, copied_rows, copied_notes):
        copied_leaves = [merkle.leaf_hash(row[5]) for row in copied_rows]
    root = merkle.root_of(leaves)
    if copied_meta != meta or copied_leaves != leaves or merkle.root_of(copied_leaves) != root:
        raise TamperError(f"the copy in {_shown(target)} differs from the source")
    if [note for _, _, note in copied_notes] != [note for _, _, note in notes]:
        raise TamperError(f"the copy in {_shown(target)} holds other checkpoints")
    after = verify(target, vkey=vkey)  # also: each checkpoint's root is the copy's tree
    if not after.ok:
        raise TamperError(f"the copy does not verify: {after.message}")
    return Copied(_shown(source), _shown(target), len(rows), root, len(copied_notes))
