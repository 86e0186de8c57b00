"""Shared helpers for the PostgreSQL ledger tests: opening a store, raw (attacker) access."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from clearance._internal.ledger.checkpoint import NoteSigner
from clearance._internal.ledger.postgres import PostgresLedger
from clearance._internal.limits import Durability
from tests.integration.ledger.support import ORIGIN


def open_pg(
    url: str,
    signer: NoteSigner,
    *,
    durability: Durability = "relaxed",
    interval: float = 0.2,
) -> PostgresLedger:
    """Open the test ledger in the schema of ``url``."""
    return PostgresLedger.open(
        url, signer=signer, origin=ORIGIN, durability=durability, checkpoint_interval=interval
    )


@contextmanager
def raw(url: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    """A plain autocommit connection to the test schema, as another program would use."""
    with psycopg.connect(url, autocommit=True) as conn:
        yield conn


@contextmanager
def attacker(url: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    """A connection of the tables' owner that disabled the append-only triggers."""
    with raw(url) as conn:
        for table in ("entries", "checkpoints", "meta"):
            conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only")
        yield conn
