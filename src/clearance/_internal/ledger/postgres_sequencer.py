"""Sequencing one PostgreSQL log among many processes: the writer connection, the lock and
the head of the log.

Invariants:

* The sequencer is ``pg_advisory_xact_lock(sequencer_key(origin))``: every process that
  appends to the log or signs a checkpoint takes it first in that transaction, so such
  transactions run one at a time across all processes, and the server releases it with
  the commit, the rollback or the session (a process that dies releases it at once; one
  that hangs inside a transaction, after
  :data:`~.postgres_db.IDLE_IN_TRANSACTION_TIMEOUT` seconds).
* The head of the log (:class:`Head`) is read by a statement after the lock was granted,
  on a READ COMMITTED session (:func:`~.postgres_db.open_writer`), so it counts every
  batch any process committed before.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from clearance._internal.ledger.postgres_db import (
    PostgresTree,
    open_writer,
    sequencer_key,
    translate,
)

if TYPE_CHECKING:
    import psycopg


_HEAD: Final = "SELECT (SELECT max(idx) FROM entries), (SELECT max(size) FROM checkpoints)"


@dataclass(frozen=True)
class Head:
    """What the log holds: its size and the size of its newest checkpoint (None: none)."""

    size: int
    checkpoint: int | None

    @staticmethod
    def of(row: Sequence[Any] | None) -> Head:
        """The head from a row of ``(max(idx), max(checkpoint size))``."""
        last, newest = row if row is not None else (None, None)
        return Head(0 if last is None else int(last) + 1, None if newest is None else int(newest))


def _start(conn: psycopg.Connection[tuple[Any, ...]], sql: str) -> Head:
    """Run ``BEGIN; ...; <head>`` (one round trip) and return the head it read last."""
    cursor = conn.execute(sql)
    while cursor.nextset():
        pass  # to the last statement's rows: the head
    return Head.of(cursor.fetchone())


def read_head(conn: psycopg.Connection[tuple[Any, ...]]) -> Head:
    """The log's :class:`Head` now (one statement; committed rows only)."""
    return Head.of(conn.execute(_HEAD).fetchone())


class Sequencer:
    """One store's writer connection and the transactions that hold the log's sequencer.

    The sequencer is ``pg_advisory_xact_lock(sequencer_key(origin))``: every process
    appending to the log takes it first in each transaction that appends or signs, so
    exactly one such transaction runs at a time across all processes, and it is released
    by the commit or rollback (or by the server, when the session ends). The connection
    is made again on first use after it broke (a restarted server, a terminated backend);
    while the server is down each use fails at once, or within
    :data:`~clearance._internal.postgres.CONNECT_TIMEOUT` seconds.
    """

    def __init__(self, url: str, origin: str, *, durable: bool) -> None:
        """Sequence appends to log ``origin`` at ``url``; connects on first use."""
        self._url = url
        self._key = sequencer_key(origin)
        self._durable = durable
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None

    def connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        """The writer connection, made (again) if there is none or it broke."""
        conn = self._conn
        if conn is not None and (conn.closed or conn.broken):
            self.drop()
            conn = None
        if conn is None:
            conn = self._conn = open_writer(self._url, durable=self._durable)
        return conn

    def drop(self) -> None:
        """Close the writer connection (the next use makes a new one)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    @property
    def backend_pid(self) -> int | None:
        """The server process of the writer connection, if connected (for operators)."""
        conn = self._conn
        return None if conn is None or conn.closed else int(conn.info.backend_pid)

    @contextmanager
    def locked(self, doing: str, *, fsync: bool = True) -> Iterator[tuple[PostgresTree, Head]]:
        """One transaction that holds the sequencer, committed when the block ends.

        Yields the connection (as a :class:`PostgresTree`) and the :class:`Head` of the
        log read right after the sequencer was granted. ``BEGIN``, the lock and that read
        are one round trip; a connection found dead there (the server restarted, the
        backend was terminated while idle) is made again and the transaction tried once
        more, since nothing of it ran. ``fsync`` False commits with ``synchronous_commit``
        off (a deferred flush: the next durable commit flushes the write-ahead log past
        it). An exception inside rolls everything back; psycopg errors become LedgerError
        naming ``doing``; a connection that broke, or was interrupted, is dropped.
        """
        with translate(self._url, doing):
            conn, head = self._begin(fsync)
            try:
                # Pipeline mode: a statement whose rows the block reads costs a round trip,
                # the others (the batch's INSERT) travel with the COMMIT.
                with conn.pipeline():
                    yield PostgresTree(conn, self._url), head
                    conn.execute("COMMIT")
            except BaseException as exc:
                self._abandon(conn, exc)
                raise

    def _begin(self, fsync: bool) -> tuple[psycopg.Connection[tuple[Any, ...]], Head]:
        import psycopg

        deferred = "SET LOCAL synchronous_commit = off; " if self._durable and not fsync else ""
        # READ COMMITTED whatever the server's default: the head is read by a statement
        # that starts after the lock was granted, so it sees the previous holder's rows.
        sql = (
            f"BEGIN ISOLATION LEVEL READ COMMITTED; {deferred}"
            f"SELECT pg_advisory_xact_lock({self._key:d}); {_HEAD}"
        )
        conn = self.connection()
        try:
            return conn, _start(conn, sql)
        except psycopg.OperationalError as exc:
            if not conn.broken:
                self._abandon(conn, exc)
                raise
            self.drop()  # it died while idle: nothing of this transaction ran; once more
        except BaseException as exc:
            self._abandon(conn, exc)
            raise
        conn = self.connection()
        try:
            return conn, _start(conn, sql)
        except BaseException as exc:
            self._abandon(conn, exc)
            raise

    def _abandon(self, conn: psycopg.Connection[tuple[Any, ...]], exc: BaseException) -> None:
        """Roll back after ``exc``; drop the connection when that is not possible."""
        import psycopg

        if conn.closed or conn.broken or not isinstance(exc, Exception):
            self.drop()  # broken, or interrupted mid-statement: its state is unknown
            return
        try:
            conn.execute("ROLLBACK")
        except psycopg.Error:
            self.drop()
