"""Read access to a PostgreSQL ledger: entries, historical roots and RFC 9162 proofs.

The PostgreSQL twin of :mod:`.sqlite_reader`, with the same answers for the same log.
Every read borrows a connection from a pool (autocommit, so a read is one statement),
never the writer's: readers do not queue behind a batch being sequenced, and a
committed row is visible to every statement that starts after its commit.

Proofs and historical roots are planned by :mod:`.merkle`, fetched with one query of
O(log n) rows and folded (:class:`~.postgres_db.PostgresTree`). A missing row or hash
is a :class:`~clearance.errors.TamperError`, as is a stored leaf that is not a JSON
object. Lookups by a derived column check that each row they return really has the
looked-up values in its leaf, since no hash covers those columns. Reads do not prove
leaf bytes against the tree; :meth:`PostgresLedger.prove` does, in O(log n).

Invariant: every failure is a :class:`~clearance.errors.LedgerError` (psycopg and pool
errors are translated); the pool's connections are checked before use, so reads recover
by themselves once a restarted server answers again.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

from clearance._internal import postgres
from clearance._internal.ledger import merkle
from clearance._internal.ledger.layout import mislabelled, stored_entry
from clearance._internal.ledger.postgres_db import PostgresTree, translate
from clearance._internal.ledger.store import Checkpoint, StoredEntry, index_ref
from clearance._internal.postgres import redact
from clearance.errors import LedgerError, TamperError

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool

_CHUNK: Final = 512
"""Rows per query when streaming, so no connection is held across yields."""

READ_CONNECTIONS: Final = 8
"""Most connections one store's readers hold at once."""


def _autocommit(conn: psycopg.Connection[Any]) -> None:
    conn.autocommit = True


class PostgresReader:
    """Reads one PostgreSQL ledger at tree sizes the caller knows to be committed."""

    def __init__(self, url: str) -> None:
        """Open the read pool on ``url`` (one connection at once); LedgerError when unreachable."""
        self._url = url
        self._where = redact(url)
        self._pool: psycopg_pool.ConnectionPool[Any] = postgres.open_pool(
            url,
            min_size=1,
            max_size=READ_CONNECTIONS,
            name="clearance-ledger-reads",
            configure=_autocommit,
        )

    @contextmanager
    def connection(self, doing: str = "reading the ledger") -> Iterator[PostgresTree]:
        """A pooled connection as a :class:`PostgresTree`; psycopg errors become LedgerError."""
        with translate(self._url, doing), self._pool.connection() as conn:
            yield PostgresTree(conn, self._url)

    def _rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with translate(self._url, "reading the ledger"), self._pool.connection() as conn:
            rows: list[tuple[Any, ...]] = conn.execute(sql, params).fetchall()
        return rows

    def entry(self, index: int) -> StoredEntry:
        """Entry ``index`` (which the caller knows was committed)."""
        rows = self._rows("SELECT leaf FROM entries WHERE idx = %s", (index,))
        if not rows:
            raise TamperError(f"entry {index} is missing from {self._where}", index=index)
        return stored_entry(index, rows[0][0])

    def scan(self, start: int, stop: int) -> Iterator[StoredEntry]:
        """Entries ``start <= index < stop``, in order, read in chunks; a gap is TamperError."""
        expected = start
        while expected < stop:
            rows = self._rows(
                "SELECT idx, leaf FROM entries WHERE idx >= %s AND idx < %s ORDER BY idx LIMIT %s",
                (expected, stop, _CHUNK),
            )
            if not rows or rows[0][0] != expected:
                raise TamperError(f"entry {expected} is missing from {self._where}", index=expected)
            for idx, leaf in rows:
                if idx != expected:
                    raise TamperError(
                        f"entry {expected} is missing from {self._where}", index=expected
                    )
                yield stored_entry(idx, leaf)
                expected += 1

    def find(self, kind: str, ref: str, size: int) -> list[StoredEntry]:
        """Entries below ``size`` of type ``kind`` indexed under ``ref``, in order."""
        rows = self._rows(
            "SELECT idx, leaf FROM entries WHERE type = %s AND ref = %s AND idx < %s ORDER BY idx",
            (kind, ref, size),
        )
        found = [stored_entry(int(idx), leaf) for idx, leaf in rows]
        for stored in found:
            if stored.entry.get("type") != kind or index_ref(stored.entry) != ref:
                raise mislabelled(stored, f"{kind} {ref!r}")
        return found

    def stored_size(self) -> int:
        """How many rows the log holds now (one past the largest index), whoever wrote them.

        May exceed the size a store has proven (another process appended); nothing read
        here is trusted until the store adopted and proved it.
        """
        with self.connection() as reads:
            return reads.size()

    def of_type(self, kind: str, start: int, stop: int) -> Iterator[StoredEntry]:
        """Entries ``start <= index < stop`` of type ``kind`` with a lookup ref, in order.

        Walks the ``(type, ref, idx)`` index in chunks; a row whose leaf does not have that
        type is a TamperError (an edited derived column). Not proven.
        """
        after = start
        while after < stop:
            rows = self._rows(
                "SELECT idx, leaf FROM entries WHERE type = %s AND ref IS NOT NULL "
                "AND idx >= %s AND idx < %s ORDER BY idx LIMIT %s",
                (kind, after, stop, _CHUNK),
            )
            for idx, leaf in rows:
                stored = stored_entry(int(idx), leaf)
                if stored.entry.get("type") != kind:
                    raise mislabelled(stored, f"a {kind} entry")
                yield stored
            if len(rows) < _CHUNK:
                return
            after = int(rows[-1][0]) + 1

    def trace(self, trace_id: str, size: int) -> list[StoredEntry]:
        """Entries below ``size`` whose ``trace_id`` is ``trace_id``, in order."""
        rows = self._rows(
            "SELECT idx, leaf FROM entries WHERE trace_id = %s AND idx < %s ORDER BY idx",
            (trace_id, size),
        )
        found = [stored_entry(int(idx), leaf) for idx, leaf in rows]
        for stored in found:
            if stored.entry.get("trace_id") != trace_id:
                raise mislabelled(stored, f"part of trace {trace_id!r}")
        return found

    def last_in_trace(self, trace_id: str, kind: str, size: int) -> StoredEntry | None:
        """The newest entry below ``size`` of type ``kind`` in trace ``trace_id``.

        One backward seek in ``entries_by_trace_type``. The row's leaf must really have
        that type and trace id (TamperError otherwise); its bytes are not proven here.
        """
        rows = self._rows(
            "SELECT idx, leaf FROM entries WHERE trace_id = %s AND type = %s AND idx < %s "
            "ORDER BY idx DESC LIMIT 1",
            (trace_id, kind, size),
        )
        if not rows:
            return None
        stored = stored_entry(int(rows[0][0]), rows[0][1])
        if stored.entry.get("type") != kind or stored.entry.get("trace_id") != trace_id:
            raise mislabelled(stored, f"a {kind} entry of trace {trace_id!r}")
        return stored

    def root(self, size: int) -> bytes:
        """RFC 9162 §2.1.1 root of the first ``size`` leaves."""
        if size == 0:
            return merkle.EMPTY_ROOT
        with self.connection() as reads:
            return reads.range_hashes([(0, size)])[0]

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 §2.1.3 inclusion proof (``0 <= index < size``, checked by the caller)."""
        with self.connection() as reads:
            return reads.range_hashes(merkle.inclusion_ranges(index, size))

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """RFC 9162 §2.1.4 consistency proof (``0 < size1 <= size2``, checked by the caller)."""
        with self.connection() as reads:
            return reads.range_hashes(merkle.consistency_ranges(size1, size2))

    def checkpoints(self, origin: str) -> Iterator[Checkpoint]:
        """Every stored checkpoint of ``origin``, oldest first, as stored (unverified)."""
        after = -1
        while True:
            rows = self._rows(
                "SELECT size, root, note FROM checkpoints WHERE size > %s ORDER BY size LIMIT %s",
                (after, _CHUNK),
            )
            for size, root, note in rows:
                yield Checkpoint(origin, int(size), bytes(root), str(note))
            if len(rows) < _CHUNK:
                return
            after = int(rows[-1][0])

    def close(self) -> None:
        """Close the pool (connections in use are closed when returned)."""
        try:
            self._pool.close()
        except Exception as exc:  # pragma: no cover - closing never fails in practice
            raise LedgerError(f"closing the ledger's readers at {self._where}: {exc}") from None
