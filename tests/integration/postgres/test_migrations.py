"""One migration mechanism for both stores: versions recorded, newer schemas refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from clearance._internal.migrations import Migration, apply, current, pending
from clearance._internal.postgres import check_url, connect, redact
from clearance.errors import InputError, LedgerError

STEPS = (
    Migration(1, "a table", ("CREATE TABLE widgets (id INTEGER PRIMARY KEY, name TEXT)",)),
    Migration(2, "a column", ("ALTER TABLE widgets ADD COLUMN colour TEXT",)),
)


def test_postgres_migrates_once_and_records_the_version(pg_url: str) -> None:
    with connect(pg_url, autocommit=True) as conn:
        assert current(conn, "widgets") == 0
        assert [s.version for s in pending(conn, "widgets", STEPS)] == [1, 2]
        assert apply(conn, "widgets", STEPS[:1]) == 1
        assert apply(conn, "widgets", STEPS) == 2
        assert apply(conn, "widgets", STEPS) == 2  # nothing pending: nothing runs
        conn.execute("INSERT INTO widgets (id, name, colour) VALUES (1, 'a', 'red')")
        assert pending(conn, "widgets", STEPS) == []


def test_postgres_refuses_a_newer_schema_and_changes_nothing(pg_url: str) -> None:
    with connect(pg_url, autocommit=True) as conn:
        apply(conn, "widgets", STEPS)
        with pytest.raises(
            LedgerError, match="version in this database is 2, newer than this clearance knows"
        ):
            apply(conn, "widgets", STEPS[:1])
        assert current(conn, "widgets") == 2


def test_a_failed_step_leaves_the_old_version(pg_url: str) -> None:
    broken = (*STEPS, Migration(3, "broken", ("ALTER TABLE nowhere ADD COLUMN x INT",)))
    with connect(pg_url, autocommit=True) as conn:
        apply(conn, "widgets", STEPS[:1])
        with pytest.raises(psycopg.errors.UndefinedTable):
            apply(conn, "widgets", broken)
        assert current(conn, "widgets") == 1
        columns = conn.execute(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'widgets' "
            "AND table_schema = current_schema()"
        ).fetchone()
        assert columns == (2,)  # step 2 rolled back with step 3


def test_sqlite_uses_the_same_mechanism(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    try:
        assert apply(conn, "widgets", STEPS) == 2
        assert current(conn, "widgets") == 2
        with pytest.raises(LedgerError, match="newer than this clearance knows"):
            apply(conn, "widgets", STEPS[:1])
    finally:
        conn.close()


def test_an_unreachable_server_is_a_clear_ledger_error() -> None:
    with pytest.raises(LedgerError, match=r"unreachable.*pg_isready"):
        connect("postgresql://nobody:secret@127.0.0.1:1/none")


def test_urls_are_checked_and_passwords_never_shown() -> None:
    assert redact("postgresql://u:hunter2@db:5432/x") == "postgresql://u:***@db:5432/x"
    with pytest.raises(InputError, match="unsupported database URL"):
        check_url("mysql://u:hunter2@db/x")
    with pytest.raises(InputError) as info:
        check_url("mysql://u:hunter2@db/x")
    assert "hunter2" not in str(info.value)


def test_every_sqlite_store_records_its_version_with_the_same_mechanism(tmp_path: Path) -> None:
    from clearance._internal.apikeys import ApiKeyStore, db
    from clearance._internal.grants import jti_store
    from clearance._internal.grants.jti_store import SQLiteReplayGuard
    from clearance._internal.ledger import sqlite_db

    assert len(db.SQLITE_MIGRATIONS) == db.SCHEMA_VERSION
    assert len(jti_store.MIGRATIONS) == jti_store.SCHEMA_VERSION
    ApiKeyStore.open(tmp_path / "apikeys.db").close()
    SQLiteReplayGuard.open(tmp_path / "replay.db").close()
    for name, steps, component in (
        ("apikeys.db", db.SQLITE_MIGRATIONS, db.COMPONENT),
        ("replay.db", jti_store.MIGRATIONS, jti_store.COMPONENT),
    ):
        conn = sqlite3.connect(tmp_path / name)
        try:
            assert current(conn, component) == len(steps)
            assert pending(conn, component, steps) == []
        finally:
            conn.close()
    assert [s.version for s in sqlite_db.SQLITE_MIGRATIONS] == [1]
