"""Versioned schemas: one migration mechanism for every store, on SQLite and PostgreSQL.

Each store (the ledger, the replay store, the API keys, ...) is a *component* with an
ordered list of :class:`Migration` steps, versions 1, 2, 3... Where the version is
recorded depends on the backend, the steps and their rules do not:

* PostgreSQL holds several components in one database, so it records each one's version
  in ``clearance_schema(component, version, applied_at)``;
* on SQLite every store is its own file, so the file's ``PRAGMA user_version`` is that
  component's version (the header field SQLite keeps for exactly this).

Invariants:

* :func:`apply` brings a component from its recorded version to the newest one it knows,
  every pending step and the version row in one transaction, so a crash leaves the old
  version or the new one, never half. On PostgreSQL the transaction first takes a
  transaction-level advisory lock per component, so processes starting together migrate
  once; on SQLite ``BEGIN IMMEDIATE`` serializes them. An up-to-date schema is only
  read, so opening one never takes a write lock (a store on a read-only medium opens).
* A database whose recorded version is newer than the newest step known here is refused
  (:class:`~clearance.errors.LedgerError`): this code must not write a schema it does not
  understand. Nothing is changed then.
* Steps are append-only: a released step is never edited, a change is a new step.
* :func:`pending` reads and never writes (what ``clearance migrate --dry-run`` shows).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from clearance.errors import LedgerError

TABLE: Final = "clearance_schema"
_CREATE_POSTGRES: Final = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (component TEXT PRIMARY KEY, "
    "version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
)


@dataclass(frozen=True)
class Migration:
    """One step of a component's schema: ``version`` is its position (1, 2, ...)."""

    version: int
    summary: str
    statements: tuple[str, ...]


def _check_steps(component: str, migrations: Sequence[Migration]) -> int:
    for position, step in enumerate(migrations, start=1):
        if step.version != position:
            raise ValueError(f"{component}: migration {step.version} is at position {position}")
    return len(migrations)


def _advisory_key(component: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``component``."""
    digest = hashlib.sha256(b"clearance-migrate\x00" + component.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _refuse_newer(component: str, found: int, newest: int, where: str) -> None:
    if found > newest:
        raise LedgerError(
            f"the {component} schema version in {where} is {found}, newer than this "
            f"clearance knows ({newest}); upgrade clearance before using this database"
        )


def current(conn: Any, component: str) -> int:
    """The recorded version of ``component`` (0: never migrated). Reads only."""
    if isinstance(conn, sqlite3.Connection):
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    row = conn.execute("SELECT to_regclass(%s)", (TABLE,)).fetchone()
    if row is None or row[0] is None:
        return 0
    row = conn.execute(
        f"SELECT version FROM {TABLE} WHERE component = %s",  # noqa: S608
        (component,),
    ).fetchone()
    return int(row[0]) if row else 0


def pending(conn: Any, component: str, migrations: Sequence[Migration]) -> list[Migration]:
    """The steps :func:`apply` would run; LedgerError when the database is newer."""
    newest = _check_steps(component, migrations)
    found = current(conn, component)
    _refuse_newer(component, found, newest, "this database")
    return list(migrations[found:])


def apply(conn: Any, component: str, migrations: Sequence[Migration]) -> int:
    """Run the pending steps of ``component`` on ``conn`` (sqlite3 or psycopg, not in a
    transaction); returns the version the schema is at afterwards.

    LedgerError when the recorded version is newer than ``migrations`` know.
    """
    newest = _check_steps(component, migrations)
    if isinstance(conn, sqlite3.Connection):
        return _apply_sqlite(conn, component, migrations, newest)
    return _apply_postgres(conn, component, migrations, newest)


def _apply_sqlite(
    conn: sqlite3.Connection, component: str, migrations: Sequence[Migration], newest: int
) -> int:
    if current(conn, component) == newest:
        return newest  # the common case: no write lock taken
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = current(conn, component)  # again, under the lock: another opener may be done
        _refuse_newer(component, found, newest, "this database")
        for step in migrations[found:]:
            for statement in step.statements:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {int(newest)}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return newest


def _apply_postgres(conn: Any, component: str, migrations: Sequence[Migration], newest: int) -> int:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_advisory_key(component),))
        conn.execute(_CREATE_POSTGRES)
        found = current(conn, component)
        _refuse_newer(component, found, newest, "this database")
        for step in migrations[found:]:
            for statement in step.statements:
                conn.execute(statement)
        if found != newest:
            conn.execute(
                f"INSERT INTO {TABLE} (component, version) VALUES (%s, %s) "  # noqa: S608
                "ON CONFLICT (component) DO UPDATE SET version = excluded.version, "
                "applied_at = now()",
                (component, newest),
            )
    return newest
