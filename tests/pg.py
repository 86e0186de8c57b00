"""The real PostgreSQL server of the machine, for the PostgreSQL store's tests.

The server is ``$CLEARANCE_TEST_PG`` (default ``postgresql://postgres@127.0.0.1:5432``,
trust auth; ``.ci/run`` starts it when it is down). Every test gets its own schema in
the database ``clearance_test`` (made on first use) and a URL whose ``search_path`` is
that schema, and the schema is dropped afterwards. An unreachable server fails the test,
naming the fix: these tests never skip.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import psycopg
import pytest

SERVER = os.environ.get("CLEARANCE_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
DATABASE = "clearance_test"


def _admin(database: str) -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(f"{SERVER}/{database}", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL at {SERVER} is unreachable ({exc}); start it "
            "(pg_ctlcluster --skip-systemctl-redirect 15 main start) or set CLEARANCE_TEST_PG",
            pytrace=False,
        )


def _ensure_database() -> None:
    with _admin("postgres") as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
        if found is None:
            # Another worker may make it first (either error, depending on the race).
            with contextlib.suppress(
                psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation
            ):
                conn.execute(f'CREATE DATABASE "{DATABASE}"')


def schema_url(schema: str) -> str:
    """The URL of ``schema`` in the test database (its ``search_path``)."""
    return f"{SERVER}/{DATABASE}?options={quote(f'-csearch_path={schema}', safe='')}"


@contextmanager
def fresh_schema() -> Iterator[str]:
    """A new empty schema's URL, dropped (with everything in it) afterwards."""
    _ensure_database()
    schema = f"t_{secrets.token_hex(6)}"
    with _admin(DATABASE) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema_url(schema)
    finally:
        with _admin(DATABASE) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
