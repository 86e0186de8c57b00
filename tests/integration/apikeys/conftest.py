"""Fixtures for API key tests: real SQLite stores, real homes and ledgers, a fixed clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from clearance._internal.apikeys import ApiKeyStore, api_keys_path
from clearance._internal.home import Home, init_home
from clearance._internal.ledger.store import LedgerStore
from clearance._internal.wiring import open_ledger

T0 = 1_795_000_000.0  # a fixed instant in 2026


class FixedClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return init_home(tmp_path / "home", now=T0)


@pytest.fixture
def store(tmp_path: Path, clock: FixedClock) -> Iterator[ApiKeyStore]:
    """A store without a ledger, on the fixed clock."""
    with ApiKeyStore.open(tmp_path / "apikeys.db", clock=clock) as opened:
        yield opened


@pytest.fixture
def ledger(home: Home) -> Iterator[LedgerStore]:
    with open_ledger(home, durability="relaxed") as opened:
        yield opened


@pytest.fixture
def logged_store(home: Home, ledger: LedgerStore) -> Iterator[ApiKeyStore]:
    """The home's store, logging to the home's ledger (real clock: the ledger checks dates)."""
    with ApiKeyStore.open(api_keys_path(home.path), ledger=ledger) as opened:
        yield opened
