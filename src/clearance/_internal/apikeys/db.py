"""The API key store's SQLite file: creating it private, its schema, and reading rows.

:class:`SQLiteKeyRows` is the SQLite side of the :class:`~clearance._internal.apikeys.rows.KeyRows`
seam; :data:`COLUMNS` and :func:`to_key` (the row layout and its decoding) serve the
PostgreSQL side (:mod:`clearance._internal.apikeys.pg_db`) too.

Layout (``PRAGMA user_version`` 1)::

    api_keys(name PRIMARY KEY, key_id UNIQUE, digest, scopes, principal,
             created_at, expires_at, revoked_at, last_used_at,
             created_index, revoked_index)

``digest`` is :func:`~clearance._internal.apikeys.tokens.digest` of the token (never
the token); ``scopes`` is the sorted scope names joined by spaces; times are POSIX
seconds; ``created_index`` and ``revoked_index`` are the ledger indexes of the
``apikey`` entries that record the events (NULL without a ledger, or while a
revocation's entry is still to be written).

Invariants:

* The file is created with mode 0600 before SQLite opens it (SQLite gives its
  ``-wal`` and ``-shm`` files the database's mode), and a file other users may read
  or write is refused: it could hand out a key by inserting a row.
* A file whose schema version is newer than :data:`SCHEMA_VERSION` is refused, never
  downgraded; a version 0 file that already has tables is not an API key store.
* WAL mode with ``synchronous = FULL``: a created or revoked key survives a power cut
  once the call returns. Readers never wait for writers.
* Every failure is a :class:`~clearance.errors.LedgerError` (the storage is
  unavailable: the runtime API answers 503), never a ``sqlite3`` exception; a row that
  does not hold what this module writes is one too, naming the row.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from clearance._internal.apikeys.model import NAME_PATTERN, SCOPES, ApiKey
from clearance._internal.apikeys.rows import Column, KeyWrites, Row
from clearance._internal.intent import PRINCIPAL_PATTERN
from clearance._internal.migrations import Migration, apply, current
from clearance.errors import LedgerError

COMPONENT: Final = "apikeys"
"""The API key store's component name (:mod:`clearance._internal.migrations`)."""
SCHEMA_VERSION: Final = 1
BUSY_TIMEOUT: Final = 5.0
"""Seconds a write waits for another connection's write transaction (a CLI, a server)."""

_SCHEMA: Final = """CREATE TABLE api_keys (
    name TEXT PRIMARY KEY,
    key_id TEXT NOT NULL UNIQUE,
    digest BLOB NOT NULL,
    scopes TEXT NOT NULL,
    principal TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL,
    revoked_at REAL,
    last_used_at REAL,
    created_index INTEGER,
    revoked_index INTEGER)"""

SQLITE_MIGRATIONS: Final = (Migration(1, "API keys as salted digests", (_SCHEMA,)),)
"""The file's whole schema history; :data:`SCHEMA_VERSION` is its length (a unit test checks)."""

COLUMNS: Final = (
    "name, key_id, digest, scopes, principal, created_at, expires_at, revoked_at, "
    "last_used_at, created_index, revoked_index"
)

POSITION: Final[dict[str, int]] = {name: i for i, name in enumerate(COLUMNS.split(", "))}
"""Each column's index in a row."""

UPDATABLE: Final[frozenset[str]] = frozenset(
    {"revoked_at", "last_used_at", "created_index", "revoked_index"}
)
"""The columns :class:`~clearance._internal.apikeys.rows.Column` names (checked at run
time too: a column name becomes part of an SQL statement)."""

KEY_ID_PATTERN: Final = re.compile(r"[0-9a-f]{16}")


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the store at ``path``, private and at the current schema."""
    _create_private(path)
    try:
        conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot open the API key store {path}: {exc}") from None
    try:
        with translate(path, "opening"):
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise LedgerError(f"API key store {path} cannot use WAL mode (got {mode!r})")
            conn.execute("PRAGMA synchronous = FULL")
            _initialise(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def _create_private(path: Path) -> None:
    """Create ``path`` with mode 0600 if absent; refuse a file others may read or write."""
    if not path.parent.is_dir():
        raise LedgerError(
            f"cannot open the API key store {path}: {path.parent} is not a directory "
            "(is this a clearance home? run `clearance init`)"
        )
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise LedgerError(
            f"cannot open the API key store {path}: {exc.strerror or exc}"
            + (" (it is a symbolic link)" if path.is_symlink() else "")
        ) from None
    try:
        info = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(info.st_mode):
        raise LedgerError(f"API key store {path} is not a regular file")
    loose = stat.S_IMODE(info.st_mode) & 0o077
    if loose:
        raise LedgerError(
            f"API key store {path} has mode {stat.S_IMODE(info.st_mode):04o}: other users "
            f"could read or add keys. Make it private: chmod 600 {path}"
        )


def _initialise(conn: sqlite3.Connection, path: Path) -> None:
    """Create the schema of a new file, or check the version of an existing one
    (:mod:`clearance._internal.migrations` on the file's ``user_version``)."""
    _refuse_newer(current(conn, COMPONENT), path)
    if current(conn, COMPONENT) == 0:
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        # Another process creating the store commits its tables and version together,
        # so tables seen with version 0 still read after them are someone else's.
        if tables and current(conn, COMPONENT) == 0:
            raise LedgerError(
                f"{path} is a SQLite database but not a clearance API key store "
                "(it has tables and no schema version); move it away"
            )
    apply(conn, COMPONENT, SQLITE_MIGRATIONS)


def _refuse_newer(version: int, path: Path) -> None:
    if version > SCHEMA_VERSION or version < 0:
        raise LedgerError(
            f"API key store {path} has schema version {version}; this clearance reads "
            f"version {SCHEMA_VERSION} only. Upgrade clearance (the file is left untouched)"
        )


@contextlib.contextmanager
def translate(path: Path, doing: str) -> Iterator[None]:
    """Turn a ``sqlite3.Error`` raised while ``doing`` into a LedgerError naming the file."""
    try:
        yield
    except sqlite3.Error as exc:
        raise LedgerError(f"API key store {path}: {doing} failed: {exc}") from None


class _BadRow(Exception):
    """A column does not hold what this module writes."""


def _text(value: object, pattern: re.Pattern[str] | None = None) -> str:
    if not isinstance(value, str) or (pattern is not None and not pattern.fullmatch(value)):
        raise _BadRow
    return value


def _time(value: object, *, optional: bool = True) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _BadRow
    return float(value)


def to_key(row: Row, path: Path | str) -> tuple[ApiKey, bytes]:
    """The key a row holds and its stored digest; LedgerError for a row clearance did not write.

    ``path`` is what the message names: the file, or the redacted database URL.
    """
    name, key_id, digest, scopes, principal, created, expires, revoked, used = row[:9]
    try:
        scope_set = frozenset(_text(scopes).split(" "))
        if not scope_set <= SCOPES or not isinstance(digest, bytes) or len(digest) != 32:
            raise _BadRow
        key = ApiKey(
            name=_text(name, NAME_PATTERN),
            key_id=_text(key_id, KEY_ID_PATTERN),
            scopes=scope_set,
            principal=_text(principal, PRINCIPAL_PATTERN),
            created_at=_time(created, optional=False) or 0.0,
            expires_at=_time(expires),
            revoked_at=_time(revoked),
            last_used_at=_time(used),
        )
    except _BadRow:
        raise LedgerError(
            f"API key store {path}: the row of key {str(name)[:80]!r} does not hold what "
            "clearance writes (it was edited outside clearance); revoke or remove it"
        ) from None
    return key, digest


def update_statement(column: Column, placeholder: str) -> str:
    """``UPDATE api_keys SET <column> = ... WHERE name = ...`` for an updatable ``column``."""
    if column not in UPDATABLE:
        raise ValueError(f"not an updatable API key column: {column!r}")
    return f"UPDATE api_keys SET {column} = {placeholder} WHERE name = {placeholder}"  # noqa: S608


class SQLiteKeyRows:
    """API key rows in one SQLite file, on one connection.

    Not thread-safe by itself: :class:`~clearance._internal.apikeys.store.ApiKeyStore`
    calls it under its lock. ``BEGIN IMMEDIATE`` serializes :meth:`write` across
    processes. It is its own :class:`~clearance._internal.apikeys.rows.KeyWrites`: in a
    write, the same statements run inside the transaction.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        """Wrap a connection from :func:`connect`; use :meth:`open`."""
        self.path = path
        self._conn = conn

    @classmethod
    def open(cls, path: Path) -> SQLiteKeyRows:
        """Open (creating if needed) the file at ``path``; see :func:`connect`."""
        return cls(path, connect(path))

    @property
    def location(self) -> str:
        """The file."""
        return str(self.path)

    def translate(self, doing: str) -> contextlib.AbstractContextManager[None]:
        """See :func:`translate`."""
        return translate(self.path, doing)

    @contextlib.contextmanager
    def write(self) -> Iterator[KeyWrites]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; ``ROLLBACK`` on any exception."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def by_name(self, name: str) -> Row | None:
        """The row of the key named ``name``, if any."""
        row: Row | None = self._conn.execute(
            f"SELECT {COLUMNS} FROM api_keys WHERE name = ?",  # noqa: S608
            (name,),
        ).fetchone()
        return row

    def by_key_id(self, key_id: str) -> Row | None:
        """The row whose public id is ``key_id``, if any."""
        row: Row | None = self._conn.execute(
            f"SELECT {COLUMNS} FROM api_keys WHERE key_id = ?",  # noqa: S608
            (key_id,),
        ).fetchone()
        return row

    def key_id_taken(self, key_id: str) -> bool:
        """Whether some row has ``key_id``."""
        found = self._conn.execute("SELECT 1 FROM api_keys WHERE key_id = ?", (key_id,))
        return found.fetchone() is not None

    def all(self) -> list[Row]:
        """Every row, oldest first."""
        return self._conn.execute(
            f"SELECT {COLUMNS} FROM api_keys ORDER BY created_at, name"  # noqa: S608
        ).fetchall()

    def insert(self, row: Row) -> None:
        """Insert a new row."""
        self._conn.execute(
            f"INSERT INTO api_keys ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",  # noqa: S608
            row,
        )

    def update(self, name: str, column: Column, value: float | None) -> None:
        """Set one column of the row named ``name``."""
        self._conn.execute(update_statement(column, "?"), (value, name))

    def touch(self, key_id: str, now: float, wait: float) -> None:
        """Set ``last_used_at``, waiting at most ``wait`` seconds for another writer."""
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout = {int(wait * 1000)}")
        try:
            conn.execute("UPDATE api_keys SET last_used_at = ? WHERE key_id = ?", (now, key_id))
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()
