"""The API key store in PostgreSQL: one set of keys for every process sharing the database.

:class:`PostgresKeyRows` is the PostgreSQL side of the
:class:`~clearance._internal.apikeys.rows.KeyRows` seam; the decisions (hash-only,
constant-time comparison, cache, ledger entries) stay in
:class:`~clearance._internal.apikeys.store.ApiKeyStore`, the same code on both stores.

Schema (migrations component ``apikeys``): the SQLite file's layout with PostgreSQL
types, ``api_keys(name TEXT PRIMARY KEY, key_id TEXT UNIQUE, digest BYTEA, scopes,
principal, created_at, expires_at, revoked_at, last_used_at DOUBLE PRECISION,
created_index, revoked_index BIGINT)``; ``digest`` must be 32 bytes.

Invariants:

* A write (create, revoke) is one transaction that first takes a transaction-level
  advisory lock keyed by the table's OID: like ``BEGIN IMMEDIATE`` on SQLite, writers
  of this table in every process run one at a time, so a name is checked and inserted
  without a race. Reads and last-use updates never take it.
* Every connection runs with ``synchronous_commit = on``, whatever the server's
  default: a created or revoked key survives a crash of the server once the call
  returns.
* A revocation is committed before :meth:`ApiKeyStore.revoke` returns; every other
  process reads it when its cache entry ages out (at most a second).
* :meth:`PostgresKeyRows.touch` bounds its wait with ``lock_timeout`` for its own
  transaction (a revocation may hold the row briefly); it runs on the request path.
* Every failure is a :class:`~clearance.errors.LedgerError` naming the server (never
  its password) and what was being done: the runtime API answers 503, never an
  authentication.
* Connections come from a small pool, checked before use: the store recovers by
  itself once a restarted server answers again.

Who can write ``api_keys`` can add a key: the database's privileges play the part of
the SQLite file's mode 0600, so grant the table to clearance's role only.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

from clearance._internal.apikeys.db import COLUMNS, update_statement
from clearance._internal.apikeys.rows import Column, KeyWrites, Row
from clearance._internal.migrations import Migration, apply
from clearance._internal.postgres import connect, describe, open_pool, redact
from clearance.errors import LedgerError

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool

COMPONENT: Final = "apikeys"
MIGRATIONS: Final = (
    Migration(
        1,
        "API keys, stored as digests",
        (
            "CREATE TABLE api_keys ("
            " name TEXT PRIMARY KEY,"
            " key_id TEXT NOT NULL UNIQUE,"
            " digest BYTEA NOT NULL CHECK (octet_length(digest) = 32),"
            " scopes TEXT NOT NULL,"
            " principal TEXT NOT NULL,"
            " created_at DOUBLE PRECISION NOT NULL,"
            " expires_at DOUBLE PRECISION,"
            " revoked_at DOUBLE PRECISION,"
            " last_used_at DOUBLE PRECISION,"
            " created_index BIGINT,"
            " revoked_index BIGINT)",
        ),
    ),
)
POOL_SIZE: Final = 2
"""Connections per store (its lock serializes its calls; the second spares a wait on a
connection being checked or replaced)."""

_WRITE_LOCK_BASE: Final = int.from_bytes(
    hashlib.sha256(b"clearance-apikeys-write").digest()[:4], "big", signed=True
) * (1 << 32)
"""High 32 bits of the writers' advisory-lock key; the table's OID is the low 32."""
_WRITE_LOCK: Final = "SELECT pg_advisory_xact_lock(%s::bigint + 'api_keys'::regclass::oid::bigint)"
_BY_NAME: Final = f"SELECT {COLUMNS} FROM api_keys WHERE name = %s"  # noqa: S608
_BY_KEY_ID: Final = f"SELECT {COLUMNS} FROM api_keys WHERE key_id = %s"  # noqa: S608
_ALL: Final = f"SELECT {COLUMNS} FROM api_keys ORDER BY created_at, name"  # noqa: S608
_INSERT: Final = f"INSERT INTO api_keys ({COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"  # noqa: S608


def _configure(conn: psycopg.Connection[Any]) -> None:
    conn.autocommit = True  # reads and single updates: one round trip each
    conn.execute("SET synchronous_commit = on")


class _Writes:
    """The statements of one write transaction, on its connection."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def by_name(self, name: str) -> Row | None:
        row: Row | None = self._conn.execute(_BY_NAME, (name,)).fetchone()
        return row

    def key_id_taken(self, key_id: str) -> bool:
        found = self._conn.execute("SELECT 1 FROM api_keys WHERE key_id = %s", (key_id,))
        return found.fetchone() is not None

    def insert(self, row: Row) -> None:
        self._conn.execute(_INSERT, row)

    def update(self, name: str, column: Column, value: float | None) -> None:
        self._conn.execute(update_statement(column, "%s"), (value, name))


class PostgresKeyRows:
    """API key rows in a PostgreSQL database. Use :meth:`open`."""

    def __init__(self, pool: psycopg_pool.ConnectionPool[Any], url: str) -> None:
        """Internal; use :meth:`open`."""
        import psycopg

        self._driver_error: type[Exception] = psycopg.Error
        self._pool = pool
        self._url = url

    @classmethod
    def open(cls, url: str) -> PostgresKeyRows:
        """Open the store in the database at ``url``, migrating its schema.

        InputError for a URL that is not PostgreSQL; LedgerError when the server
        cannot be reached or the schema is newer than this clearance.
        """
        import psycopg

        try:
            conn = connect(url, autocommit=True)
        except LedgerError as exc:
            raise LedgerError(f"cannot open the API key store: {exc}") from None
        with conn:
            try:
                apply(conn, COMPONENT, MIGRATIONS)
            except psycopg.Error as exc:
                raise LedgerError(
                    f"cannot initialise the API key store: {describe(exc, url)}"
                ) from None
        pool = open_pool(
            url, min_size=1, max_size=POOL_SIZE, name="clearance-apikeys", configure=_configure
        )
        return cls(pool, url)

    @property
    def location(self) -> str:
        """The database URL, password redacted."""
        return redact(self._url)

    @contextlib.contextmanager
    def translate(self, doing: str) -> Iterator[None]:
        """Turn a psycopg (or pool) error raised while ``doing`` into a LedgerError."""
        try:
            yield
        except self._driver_error as exc:
            raise LedgerError(
                f"API key store: {doing} failed: {describe(exc, self._url)}"
            ) from None

    @contextlib.contextmanager
    def write(self) -> Iterator[KeyWrites]:
        """One transaction, alone among this table's writers; rolled back on any exception."""
        with self._pool.connection() as conn, conn.transaction():
            conn.execute(_WRITE_LOCK, (_WRITE_LOCK_BASE,))
            yield _Writes(conn)

    def by_name(self, name: str) -> Row | None:
        """The row of the key named ``name``, if any."""
        with self._pool.connection() as conn:
            row: Row | None = conn.execute(_BY_NAME, (name,)).fetchone()
        return row

    def by_key_id(self, key_id: str) -> Row | None:
        """The row whose public id is ``key_id``, if any."""
        with self._pool.connection() as conn:
            row: Row | None = conn.execute(_BY_KEY_ID, (key_id,)).fetchone()
        return row

    def all(self) -> list[Row]:
        """Every row, oldest first."""
        with self._pool.connection() as conn:
            return list(conn.execute(_ALL).fetchall())

    def update(self, name: str, column: Column, value: float | None) -> None:
        """Set one column of the row named ``name`` (its own transaction)."""
        with self._pool.connection() as conn:
            conn.execute(update_statement(column, "%s"), (value, name))

    def touch(self, key_id: str, now: float, wait: float) -> None:
        """Set ``last_used_at``, waiting at most ``wait`` seconds for a row lock."""
        with self._pool.connection(timeout=max(wait, 0.001)) as conn, conn.transaction():
            conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{int(wait * 1000)}ms",))
            conn.execute("UPDATE api_keys SET last_used_at = %s WHERE key_id = %s", (now, key_id))

    def close(self) -> None:
        """Close the pool."""
        self._pool.close()
