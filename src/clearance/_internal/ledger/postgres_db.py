"""The PostgreSQL ledger's connections and low-level statements, shared by its writer,
its readers and the auditor.

Schema: :mod:`.postgres_schema`. Rows are laid out by :mod:`.layout`, exactly as in
SQLite, so the two stores fed the same entries hold the same bytes and hashes.

Invariants:

* Every psycopg (or pool) failure becomes a :class:`~clearance.errors.LedgerError` with a
  sentence naming the server, never its password (:func:`translate`); no psycopg
  exception escapes the store.
* The writer's transactions are READ COMMITTED whatever the server's default: a
  statement run after ``pg_advisory_xact_lock`` returned sees every batch committed
  before the lock was granted (each statement takes a new snapshot). Under REPEATABLE
  READ the snapshot of the lock statement would hide the previous holder's rows.
* Timeouts bound every wait (:data:`LOCK_TIMEOUT`, :data:`STATEMENT_TIMEOUT`), and the
  server ends a writer session left idle inside a transaction
  (:data:`IDLE_IN_TRANSACTION_TIMEOUT`) or whose peer vanished (TCP keepalives), so a
  process that hangs or dies while holding the sequencer releases it within seconds.
* The database's encoding is UTF-8 (refused otherwise): the derived columns are text
  and the row check reads leaves as UTF-8 JSON.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

from clearance._internal import postgres
from clearance._internal.ledger import layout, merkle
from clearance._internal.ledger.layout import Prepared, prepare
from clearance._internal.ledger.postgres_schema import COMPONENT, MIGRATIONS, SCHEMA_VERSION
from clearance._internal.ledger.trust import CheckpointRow
from clearance._internal.migrations import apply
from clearance._internal.postgres import redact
from clearance.errors import InputError, LedgerError

if TYPE_CHECKING:
    import psycopg

LOCK_TIMEOUT: Final = 10.0
"""Seconds a writer waits for the sequencer (another process's batch) before failing."""
STATEMENT_TIMEOUT: Final = 30.0
"""Seconds any one statement of the writer may run (the checks when a store opens excepted)."""
IDLE_IN_TRANSACTION_TIMEOUT: Final = 10.0
"""Seconds the server waits for the next statement of a writer's open transaction before
ending its session (and releasing the sequencer): a stopped or hung process."""
KEEPALIVE: Final = (10, 5, 3)
"""TCP keepalive idle seconds, interval seconds and probes the server uses on a writer's
connection: a host that vanished releases the sequencer within about 25 s."""
APPLICATION_NAME: Final = "clearance-ledger"
"""The writer's ``application_name`` (what ``pg_stat_activity`` shows)."""


def sequencer_key(origin: str) -> int:
    """The advisory-lock key every process appending to log ``origin`` takes (signed 64 bits)."""
    digest = hashlib.sha256(b"clearance-ledger-sequencer\x00" + origin.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def scalar(conn: psycopg.Connection[tuple[Any, ...]], sql: str, params: Sequence[Any] = ()) -> Any:
    """The first column of the first row ``sql`` returns (None when it returns no row)."""
    row = conn.execute(sql, params).fetchone()
    return None if row is None else row[0]


def _psycopg() -> Any:
    import psycopg

    return psycopg


def failure(exc: BaseException, url: str, doing: str) -> LedgerError:
    """The LedgerError for ``exc`` (a psycopg or pool error) while ``doing``."""
    errors = _psycopg().errors
    where = redact(url)
    if isinstance(exc, errors.LockNotAvailable):
        return LedgerError(
            f"{doing}: another process held the ledger at {where} for more than "
            f"{LOCK_TIMEOUT:g} s (lock timeout)"
        )
    if isinstance(exc, errors.QueryCanceled):
        return LedgerError(f"{doing}: PostgreSQL at {where} cancelled a statement ({exc})")
    if type(exc).__name__ == "PoolTimeout":
        return LedgerError(
            f"{doing}: no connection to PostgreSQL at {where} within "
            f"{postgres.CONNECT_TIMEOUT} s; check that the server runs (pg_isready)"
        )
    return LedgerError(f"{doing}: {postgres.describe(exc, url)}")


@contextmanager
def translate(url: str, doing: str) -> Iterator[None]:
    """Turn any psycopg or pool error raised inside into a :class:`LedgerError`."""
    import psycopg
    from psycopg_pool import PoolTimeout

    try:
        yield
    except (psycopg.Error, PoolTimeout) as exc:
        raise failure(exc, url, doing) from exc


def open_writer(url: str, *, durable: bool) -> psycopg.Connection[tuple[Any, ...]]:
    """A new writer connection to ``url`` (autocommit; transactions are explicit).

    READ COMMITTED, ``synchronous_commit`` on (``durable``) or off, the timeouts of the
    module docstring. LedgerError when the server cannot be reached or is not UTF-8.
    """
    psycopg = _psycopg()
    conn = postgres.connect(url, autocommit=True)
    try:
        with translate(url, "opening the ledger's writer connection"):
            conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
            idle, interval, count = KEEPALIVE
            conn.execute(
                f"SET synchronous_commit = {'on' if durable else 'off'}; "
                f"SET lock_timeout = '{LOCK_TIMEOUT:g}s'; "
                f"SET statement_timeout = '{STATEMENT_TIMEOUT:g}s'; "
                f"SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION_TIMEOUT:g}s'; "
                f"SET tcp_keepalives_idle = {idle}; SET tcp_keepalives_interval = {interval}; "
                f"SET tcp_keepalives_count = {count}; "
                f"SET application_name = '{APPLICATION_NAME}'"
            )
            encoding = scalar(conn, "SHOW server_encoding")
        if str(encoding).upper() not in ("UTF8", "UTF-8"):
            raise LedgerError(
                f"the database at {redact(url)} is encoded in {encoding}; the ledger needs a "
                "UTF8 database (CREATE DATABASE ... ENCODING 'UTF8')"
            )
    except BaseException:
        conn.close()
        raise
    return conn


def initialise(conn: psycopg.Connection[tuple[Any, ...]], url: str, origin: str, vkey: str) -> None:
    """Migrate the schema, then record or check the log's ``origin`` and ``vkey`` in ``meta``.

    LedgerError when the database holds another log (another origin or key) or a schema
    version this code does not read.
    """
    where = redact(url)
    with translate(url, "initialising the ledger"):
        apply(conn, COMPONENT, MIGRATIONS)
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (sequencer_key(origin),))
            meta = {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM meta")}
            if not meta:
                meta = {"version": SCHEMA_VERSION, "origin": origin, "vkey": vkey}
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO meta (key, value) VALUES (%s, %s)", list(meta.items())
                    )
    if meta.get("version") != SCHEMA_VERSION:
        raise LedgerError(
            f"ledger at {where} has schema version {meta.get('version')!r}; "
            f"this clearance reads version {SCHEMA_VERSION}"
        )
    if meta.get("origin") != origin:
        raise LedgerError(
            f"ledger at {where} belongs to log {meta.get('origin')!r}, not {origin!r}"
        )
    if meta.get("vkey") != vkey:
        raise LedgerError(
            f"ledger at {where} was created with the log key {meta.get('vkey')!r}, not "
            f"{vkey!r}: it belongs to another log"
        )


def read_meta(conn: psycopg.Connection[tuple[Any, ...]]) -> dict[str, str]:
    """The ``meta`` table as a dict (empty when the database holds no ledger)."""
    if not scalar(conn, "SELECT to_regclass('meta') IS NOT NULL"):
        return {}
    return {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM meta")}


_INSERT: Final = (
    "INSERT INTO entries (idx, hashes, type, ref, trace_id, leaf) "
    "SELECT * FROM unnest(%s::bigint[], %s::bytea[], %s::text[], %s::text[], %s::text[], "
    "%s::bytea[])"
)


def insert_rows(conn: psycopg.Connection[tuple[Any, ...]], flat: Sequence[Any]) -> None:
    """Insert the rows :func:`~.layout.extend` laid out, with one statement of six arrays."""
    conn.execute(_INSERT, [list(flat[column::6]) for column in range(6)])


_STREAM_ROWS: Final = 2000
"""Rows a server-side cursor fetches per round trip when the whole log is read."""


@contextmanager
def snapshot(url: str, doing: str) -> Iterator[PostgresTree]:
    """A read-only REPEATABLE READ transaction on a new connection to ``url``: one snapshot
    of the whole log for as long as the block runs. Errors become LedgerError."""
    psycopg = _psycopg()
    conn = postgres.connect(url)
    try:
        with translate(url, doing):
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            yield PostgresTree(conn, url)
    finally:
        conn.close()


class PostgresTree:
    """:class:`~clearance._internal.ledger.trust.StoredTree` over one psycopg connection.

    Raises psycopg errors; callers wrap it with :func:`translate`.
    """

    def __init__(self, conn: psycopg.Connection[tuple[Any, ...]], url: str) -> None:
        """Read the ledger at ``url`` through ``conn``."""
        self._conn = conn
        self.conn = conn
        """The connection (for statements of the caller's own)."""
        self.where = redact(url)

    def send_nodes(
        self, keys: Sequence[tuple[int, int]]
    ) -> Callable[[], dict[tuple[int, int], bytes]]:
        """Send the query for the stored hashes of ``keys`` now; the call returns them.

        In pipeline mode statements sent before any answer is read share a round trip.
        """
        rows = layout.node_rows(keys)
        if not rows:
            return dict
        cursor = self._conn.cursor()
        cursor.execute("SELECT idx, hashes FROM entries WHERE idx = ANY(%s::bigint[])", (rows,))
        return lambda: layout.nodes_in({int(idx): blob for idx, blob in cursor.fetchall()}, keys)

    def fetch_nodes(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """The stored hashes of ``keys`` (``(level, idx)`` pairs), with one query."""
        return self.send_nodes(keys)()

    def range_hashes(self, ranges: Sequence[merkle.LeafRange]) -> list[bytes]:
        """The stored hashes of leaf ranges (one query)."""
        return layout.range_hashes(self.fetch_nodes, ranges)

    def send_checkpoint_rows(
        self, at_most: int | None, limit: int
    ) -> Callable[[], list[CheckpointRow]]:
        """Send :meth:`checkpoint_rows`'s query now; the call returns its rows."""
        cursor = self._conn.cursor()
        if at_most is None:
            cursor.execute(
                "SELECT size, root, note FROM checkpoints ORDER BY size DESC LIMIT %s", (limit,)
            )
        else:
            cursor.execute(
                "SELECT size, root, note FROM checkpoints WHERE size <= %s "
                "ORDER BY size DESC LIMIT %s",
                (at_most, limit),
            )
        return lambda: [(size, root, note) for size, root, note in cursor.fetchall()]

    def checkpoint_rows(self, at_most: int | None, limit: int) -> list[CheckpointRow]:
        """Up to ``limit`` checkpoint rows of size ``<= at_most``, newest first."""
        return self.send_checkpoint_rows(at_most, limit)()

    def leaf(self, index: int) -> object | None:
        """The stored leaf of entry ``index``, or None."""
        row = self._conn.execute("SELECT leaf FROM entries WHERE idx = %s", (index,)).fetchone()
        return None if row is None else row[0]

    def meta(self) -> dict[str, str]:
        """The ``meta`` table (empty when the database holds no ledger)."""
        return read_meta(self._conn)

    def all_checkpoint_rows(self) -> list[CheckpointRow]:
        """Every ``(size, root, note)`` checkpoint row, by size."""
        rows = self._conn.execute("SELECT size, root, note FROM checkpoints ORDER BY size")
        return [(size, root, note) for size, root, note in rows]

    def rows(self) -> Iterator[tuple[Any, ...]]:
        """Every entry row ``(idx, hashes, type, ref, trace_id, leaf)`` by index, streamed
        through a server-side cursor (the connection must be inside a transaction)."""
        with self._conn.cursor(name="clearance_ledger_rows") as cursor:
            cursor.itersize = _STREAM_ROWS
            cursor.execute(
                "SELECT idx, hashes, type, ref, trace_id, leaf FROM entries ORDER BY idx"
            )
            yield from cursor

    def size(self) -> int:
        """How many rows the log holds (one past the largest index), whoever wrote them."""
        last = scalar(self._conn, "SELECT max(idx) FROM entries")
        return 0 if last is None else int(last) + 1

    def tree(self, size: int) -> layout.Tree:
        """The stored tree of ``size`` leaves, from its right edge (O(log n) nodes)."""
        return layout.Tree(size, layout.frontier(self.fetch_nodes, size))


def prepare_rows(entries: Sequence[Mapping[str, Any]], sync: bool) -> Prepared:
    """:func:`~.layout.prepare`, refusing what a PostgreSQL text column cannot hold.

    A NUL character in a derived column (a ``trace_id``, a ``request_id``) is valid JSON
    and valid in SQLite, but PostgreSQL text cannot store it: InputError, before anything
    is sent.
    """
    prepared = prepare(entries, sync)
    for _leaf, kind, ref, trace_id in prepared[0]:
        if "\x00" in kind or (ref is not None and "\x00" in ref) or "\x00" in (trace_id or ""):
            raise InputError("an entry's type, lookup id or trace_id contains a NUL character")
    return prepared
