"""Read access to a SQLite ledger file: entries, historical roots and RFC 9162 proofs.

Reading needs no signing key. Every read runs on a pooled read-only connection: in
WAL mode readers never block the writer and see only committed transactions, so a
read at a tree size the writer has acknowledged always finds its rows.

Proofs (RFC 9162 §2.1.3 inclusion, §2.1.4 consistency) and historical roots are
planned by :mod:`clearance._internal.ledger.merkle` as leaf ranges, split into aligned perfect
subtrees, fetched with one query (:func:`~clearance._internal.ledger.sqlite_db.fetch_nodes`)
and folded. A missing row or hash is a :class:`~clearance.errors.TamperError`, as is
a stored leaf that is not a JSON object stored as a BLOB: the writer never produces
either. Lookups by a derived column (:meth:`LedgerReader.find`, :meth:`~LedgerReader.trace`,
:meth:`~LedgerReader.last_in_trace`) check that each row they return really has the
looked-up values in its leaf, since no hash covers those columns. Reads do not prove
leaf bytes against the tree; :meth:`SQLiteLedger.prove` does, in O(log n).
"""

from __future__ import annotations

import queue
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import cast

from clearance._internal.ledger import layout, merkle
from clearance._internal.ledger.layout import mislabelled, stored_entry, stored_type
from clearance._internal.ledger.sqlite_db import connect, fetch_nodes, translate
from clearance._internal.ledger.store import Checkpoint, StoredEntry, index_ref
from clearance.errors import LedgerError, TamperError

_CHUNK = 512
"""Rows per query when streaming, so no read transaction stays open across yields."""


def range_hashes(conn: sqlite3.Connection, ranges: Sequence[merkle.LeafRange]) -> list[bytes]:
    """The hashes of leaf ranges, from one query over their perfect subtrees."""
    return layout.range_hashes(lambda keys: fetch_nodes(conn, keys), ranges)


class LedgerReader:
    """Reads one ledger file at tree sizes the caller knows to be committed."""

    def __init__(self, path: Path) -> None:
        """Read the ledger at ``path``; connections open lazily."""
        self._path = path
        self._idle: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._closed = False

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """A pooled read-only connection; sqlite3 errors inside become LedgerError."""
        if self._closed:
            raise LedgerError(f"ledger at {self._path} is closed")
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            with translate(self._path, "opening a ledger reader"):
                conn = connect(self._path, read_only=True)
        try:
            with translate(self._path, "reading the ledger"):
                yield conn
        finally:
            if self._closed:
                conn.close()
            else:
                self._idle.put(conn)

    def entry(self, index: int) -> StoredEntry:
        """Entry ``index`` (which the caller knows was committed)."""
        with self.connection() as conn:
            row = conn.execute("SELECT leaf FROM entries WHERE idx = ?", (index,)).fetchone()
        if row is None:
            raise TamperError(f"entry {index} is missing from {self._path}", index=index)
        return stored_entry(index, row[0])

    def scan(self, start: int, stop: int) -> Iterator[StoredEntry]:
        """Entries ``start <= index < stop``, in order, read in chunks; a gap is TamperError."""
        expected = start
        while expected < stop:
            with self.connection() as conn:
                rows = conn.execute(
                    "SELECT idx, leaf FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx LIMIT ?",
                    (expected, stop, _CHUNK),
                ).fetchall()
            if not rows or rows[0][0] != expected:
                raise TamperError(f"entry {expected} is missing from {self._path}", index=expected)
            for idx, leaf in rows:
                if idx != expected:
                    raise TamperError(
                        f"entry {expected} is missing from {self._path}", index=expected
                    )
                yield stored_entry(idx, leaf)
                expected += 1

    def find(self, kind: str, ref: str, size: int) -> list[StoredEntry]:
        """Entries below ``size`` of type ``kind`` indexed under ``ref``, in order."""
        with self.connection() as conn:
            rows = conn.execute(
                "SELECT idx, leaf FROM entries WHERE type = ? AND ref = ? AND idx < ? ORDER BY idx",
                (kind, ref, size),
            ).fetchall()
        found = [stored_entry(int(idx), leaf) for idx, leaf in rows]
        for stored in found:
            if stored.entry.get("type") != kind or index_ref(stored.entry) != ref:
                raise mislabelled(stored, f"{kind} {ref!r}")
        return found

    def stored_size(self) -> int:
        """How many rows the file holds now (one past the largest index), whoever wrote them.

        May exceed the size a store has proven (another process appended); nothing
        read here is trusted until the store adopted and proved it.
        """
        with self.connection() as conn:
            (last,) = conn.execute("SELECT max(idx) FROM entries").fetchone()
        return 0 if last is None else int(last) + 1

    def of_type(self, kind: str, start: int, stop: int) -> Iterator[StoredEntry]:
        """Entries ``start <= index < stop`` of type ``kind`` with a lookup ref, in order.

        A short range is read along the primary key. For a long one the indexes of the
        matching rows come from the ``(type, ref)`` index alone (it covers them), and
        their leaves are then read by primary key: building a view of every
        ``approval`` entry reads those rows only, not the whole log. Leaves are read
        in chunks; a row whose leaf does not have that type is a TamperError (an
        edited derived column). Not proven.
        """
        if stop - start > _CHUNK * 8:
            with self.connection() as conn:
                found = conn.execute(
                    "SELECT idx FROM entries WHERE type = ? AND ref IS NOT NULL "
                    "AND idx >= ? AND idx < ?",
                    (kind, start, stop),
                ).fetchall()
            indexes = sorted(int(idx) for (idx,) in found)
            for first in range(0, len(indexes), _CHUNK):
                chunk = indexes[first : first + _CHUNK]
                marks = ",".join("?" * len(chunk))
                with self.connection() as conn:
                    rows = conn.execute(
                        f"SELECT idx, leaf FROM entries WHERE idx IN ({marks}) ORDER BY idx",  # noqa: S608
                        chunk,
                    ).fetchall()
                yield from self._typed(kind, rows)
            return
        after = start
        while after < stop:
            with self.connection() as conn:
                rows = conn.execute(
                    "SELECT idx, leaf FROM entries WHERE idx >= ? AND idx < ? AND +type = ? "
                    "AND ref IS NOT NULL ORDER BY idx LIMIT ?",
                    (after, stop, kind, _CHUNK),
                ).fetchall()
            yield from self._typed(kind, rows)
            if len(rows) < _CHUNK:
                return
            after = int(rows[-1][0]) + 1

    @staticmethod
    def _typed(kind: str, rows: Sequence[tuple[object, object]]) -> Iterator[StoredEntry]:
        for idx, leaf in rows:
            stored = stored_entry(int(cast(int, idx)), leaf)
            if stored.entry.get("type") != kind:
                raise mislabelled(stored, f"a {kind} entry")
            yield stored

    def trace(self, trace_id: str, size: int) -> list[StoredEntry]:
        """Entries below ``size`` whose ``trace_id`` is ``trace_id``, in order."""
        with self.connection() as conn:
            rows = conn.execute(
                "SELECT idx, leaf FROM entries WHERE trace_id = ? AND idx < ? ORDER BY idx",
                (trace_id, size),
            ).fetchall()
        found = [stored_entry(int(idx), leaf) for idx, leaf in rows]
        for stored in found:
            if stored.entry.get("trace_id") != trace_id:
                raise mislabelled(stored, f"part of trace {trace_id!r}")
        return found

    def last_in_trace(self, trace_id: str, kind: str, size: int) -> StoredEntry | None:
        """The newest entry below ``size`` of type ``kind`` in trace ``trace_id``.

        One seek in ``entries_by_trace_type``. The row's leaf must really have that
        type and trace id (TamperError otherwise); its bytes are not proven here.
        """
        with self.connection() as conn:
            row = conn.execute(
                "SELECT idx, leaf FROM entries WHERE trace_id = ? AND type = ? AND idx < ? "
                "ORDER BY idx DESC LIMIT 1",
                (trace_id, kind, size),
            ).fetchone()
        if row is None:
            return None
        stored = stored_entry(int(row[0]), row[1])
        if stored.entry.get("type") != kind or stored.entry.get("trace_id") != trace_id:
            raise mislabelled(stored, f"a {kind} entry of trace {trace_id!r}")
        return stored

    def root(self, size: int) -> bytes:
        """RFC 9162 §2.1.1 root of the first ``size`` leaves."""
        if size == 0:
            return merkle.EMPTY_ROOT
        with self.connection() as conn:
            return range_hashes(conn, [(0, size)])[0]

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 §2.1.3 inclusion proof (``0 <= index < size``, checked by the caller)."""
        with self.connection() as conn:
            return range_hashes(conn, merkle.inclusion_ranges(index, size))

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """RFC 9162 §2.1.4 consistency proof (``0 < size1 <= size2``, checked by the caller)."""
        with self.connection() as conn:
            return range_hashes(conn, merkle.consistency_ranges(size1, size2))

    def checkpoints(self, origin: str) -> Iterator[Checkpoint]:
        """Every stored checkpoint of ``origin``, oldest first, as stored (unverified)."""
        after = -1
        while True:
            with self.connection() as conn:
                rows = conn.execute(
                    "SELECT size, root, note FROM checkpoints WHERE size > ? ORDER BY size LIMIT ?",
                    (after, _CHUNK),
                ).fetchall()
            for size, root, note in rows:
                if not isinstance(root, bytes) or not isinstance(note, str):
                    raise TamperError(
                        f"checkpoint row {size} stores a {stored_type(root)} root and a "
                        f"{stored_type(note)} note, not a BLOB and TEXT"
                    )
                yield Checkpoint(origin, int(size), root, note)
            if len(rows) < _CHUNK:
                return
            after = int(rows[-1][0])

    def close(self) -> None:
        """Close idle connections; connections in use close when returned."""
        self._closed = True
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return
