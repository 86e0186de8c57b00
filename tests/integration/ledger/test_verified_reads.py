"""Verified reads for the gate: ``prove``, ``last_in_trace`` and ``generation`` on real files."""

from __future__ import annotations

import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from clearance._internal.canonical import canonical_json
from clearance._internal.ledger import sqlite_trust
from clearance._internal.ledger.checkpoint import NoteSigner
from clearance._internal.ledger.sqlite import SQLiteLedger
from clearance._internal.ledger.store import StoredEntry
from clearance.errors import InputError, LedgerError, TamperError

from .support import ORIGIN, attacker, entry, open_ledger

LONG_TRACE = 10_000
LAST_IN_TRACE = (
    "SELECT idx, leaf FROM entries WHERE trace_id = ? AND type = ? AND idx < ? "
    "ORDER BY idx DESC LIMIT 1"
)


@pytest.fixture
def signer() -> NoteSigner:
    return NoteSigner.generate(ORIGIN)


def _in_trace(i: int, trace: str) -> dict[str, Any]:
    if i == 0:
        return {"type": "trace", "v": 1, "at": "2026-11-28T10:00:00Z", "trace_id": trace}
    return entry(i, trace_id=trace)


def test_prove_returns_honest_entries_and_refuses_others(
    tmp_path: Path, signer: NoteSigner
) -> None:
    with open_ledger(tmp_path / "ledger.db", signer) as store:
        store.append_many([entry(i) for i in range(37)])
        for index in (0, 1, 17, 31, 36):
            stored = store.get(index)
            assert store.prove(stored) is stored
        honest = store.get(12)
        forged = StoredEntry(12, canonical_json(entry(12, effect="allow")), entry(12))
        for bad in (
            forged,
            StoredEntry(13, honest.leaf, honest.entry),  # right bytes, wrong place
            StoredEntry(37, honest.leaf, honest.entry),  # past the end
            StoredEntry(-1, honest.leaf, honest.entry),
        ):
            with pytest.raises(TamperError) as failure:
                store.prove(bad)
            assert failure.value.index == bad.index


def test_last_in_trace_is_one_indexed_seek_in_a_long_trace(
    tmp_path: Path, signer: NoteSigner
) -> None:
    path = tmp_path / "ledger.db"
    with open_ledger(path, signer) as store:
        store.append_many([_in_trace(i, "long") for i in range(LONG_TRACE)])
        store.append_many([entry(i) for i in range(50)])  # other traces after it
        conn = sqlite3.connect(path)
        try:
            plan = " ".join(
                str(row[-1])
                for row in conn.execute(
                    f"EXPLAIN QUERY PLAN {LAST_IN_TRACE}", ("long", "trace", 10**9)
                )
            )
        finally:
            conn.close()
        assert "USING INDEX entries_by_trace_type" in plan, plan
        assert "TEMP B-TREE" not in plan, plan  # no sort: the index is in idx order
        assert [e.index for e in store.trace("long")] == list(range(LONG_TRACE))

        oldest = store.last_in_trace("long", "trace")
        assert oldest is not None
        assert oldest.index == 0  # 9,999 newer entries of the trace are not read
        newest = store.last_in_trace("long", "decision")
        assert newest is not None
        assert newest.index == LONG_TRACE - 1
        timings = []
        for _ in range(200):
            started = time.perf_counter()
            store.last_in_trace("long", "trace")
            timings.append(time.perf_counter() - started)
        assert statistics.median(timings) < 0.005, statistics.median(timings)


def test_an_older_file_gains_the_trace_index(tmp_path: Path, signer: NoteSigner) -> None:
    path = tmp_path / "ledger.db"
    with open_ledger(path, signer) as store:
        store.append_many([_in_trace(i, "t") for i in range(20)])
    conn = sqlite3.connect(path)  # as files written before the index existed
    conn.execute("DROP INDEX entries_by_trace_type")
    conn.execute("CREATE INDEX entries_by_trace ON entries (trace_id) WHERE trace_id IS NOT NULL")
    conn.close()
    with open_ledger(path, signer) as store:  # migrated on open
        assert [e.index for e in store.trace("t")] == list(range(20))
    with open_ledger(path, signer) as store:
        found = store.last_in_trace("t", "decision")
        assert found is not None
        assert found.index == 19
    conn = sqlite3.connect(path)
    try:
        names = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    finally:
        conn.close()
    assert "entries_by_trace_type" in names
    assert "entries_by_trace" not in names  # replaced, not added: appends update two indexes


def test_a_reload_after_another_writer_raises_the_generation(
    tmp_path: Path, signer: NoteSigner
) -> None:
    path = tmp_path / "ledger.db"
    with open_ledger(path, signer) as store:
        store.append_many([entry(i) for i in range(5)])
        assert store.generation == 0
        with open_ledger(path, signer) as intruder:
            assert intruder.append(entry(100)) == 5
        assert store.append(entry(5)) == 6  # committed after the adopted row
        assert store.generation == 1
        assert store.size() == 7
        assert store.prove(store.get(5)).entry == entry(100)
        assert store.prove(store.get(6)).entry == entry(5)


def test_rows_another_writer_added_must_prove_themselves(
    tmp_path: Path, signer: NoteSigner
) -> None:
    path = tmp_path / "ledger.db"
    with open_ledger(path, signer) as store:
        store.append_many([entry(i) for i in range(5)])
        with open_ledger(path, signer) as intruder:
            intruder.append(entry(100))
        raw = attacker(path)
        raw.execute("UPDATE entries SET trace_id = NULL WHERE idx = 5")
        raw.close()
        with pytest.raises(LedgerError):
            store.append(entry(5))
        with pytest.raises(TamperError, match="trace_id column") as failure:
            store.append(entry(6))  # fail closed from now on
        assert failure.value.index == 5
        assert store.generation == 0
        assert store.size() == 5


def test_a_reload_refuses_a_file_that_no_longer_extends_the_tree(
    tmp_path: Path, signer: NoteSigner
) -> None:
    path = tmp_path / "ledger.db"
    with open_ledger(path, signer, interval=3600) as store:
        store.append_many([entry(i) for i in range(8)])
        raw = attacker(path)
        # Row 7 stores node (3, 0), the root of the first 8 leaves: replace it, as a
        # rewrite of those leaves with re-hashing would.
        (hashes,) = raw.execute("SELECT hashes FROM entries WHERE idx = 7").fetchone()
        raw.execute("UPDATE entries SET hashes = ? WHERE idx = 7", (hashes[:96] + bytes(32),))
        raw.execute(
            "INSERT INTO entries SELECT 8, hashes, type, ref, trace_id, leaf FROM entries "
            "WHERE idx = 0"
        )
        raw.close()
        with pytest.raises(LedgerError):
            store.append(entry(8))
        with pytest.raises(TamperError, match="after a failed commit"):
            store.append(entry(9))


def test_grace_needs_a_clock(tmp_path: Path, signer: NoteSigner) -> None:
    with pytest.raises(InputError, match="clock"):
        SQLiteLedger.open(tmp_path / "a.db", signer=signer, origin=ORIGIN, grace=300)
    with pytest.raises(InputError, match="positive"):
        SQLiteLedger.open(tmp_path / "a.db", signer=signer, origin=ORIGIN, grace=0, clock=time.time)


@pytest.mark.parametrize(("bad_rows", "first_bad"), [((57, 83), 57), ((12, 57, 83), 12)])
def test_parallel_row_checks_name_the_lowest_bad_row(
    tmp_path: Path,
    signer: NoteSigner,
    monkeypatch: pytest.MonkeyPatch,
    bad_rows: tuple[int, ...],
    first_bad: int,
) -> None:
    monkeypatch.setattr(sqlite_trust, "_ROWS_PER_THREAD", 10)
    monkeypatch.setattr(sqlite_trust, "ROW_CHECK_THREADS", 4)
    path = tmp_path / "ledger.db"
    with open_ledger(path, signer) as store:
        store.append_many([entry(i) for i in range(100)])
    raw = attacker(path)
    for row in bad_rows:
        raw.execute("UPDATE entries SET trace_id = NULL WHERE idx = ?", (row,))
    raw.close()
    with pytest.raises(TamperError) as failure:
        open_ledger(path, signer)
    assert failure.value.index == first_bad
