"""The SQLite replay guard on real files: atomic across processes, persistent, bounded.

The purge rule's cases, and the consume races, run on both stores (SQLite and
PostgreSQL) in tests/integration/postgres/test_replay_store.py; this file keeps what is
SQLite's own: files, modes, schema versions, crashes.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from clearance._internal.grants.jti_store import SCHEMA_VERSION, SQLiteReplayGuard
from clearance.errors import InvalidGrant, LedgerError

NOW = 1_700_000_000.0
HOUR = 3600.0


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "replay.db"


@pytest.fixture
def guard(db: Path) -> Iterator[SQLiteReplayGuard]:
    opened = SQLiteReplayGuard.open(db)
    yield opened
    opened.close()


def _replayed(guard: SQLiteReplayGuard, jti: str, exp: float, now: float) -> bool:
    try:
        guard.consume(jti, exp, now)
    except InvalidGrant as exc:
        reason, shown = exc.audit_reason, str(exc)
    else:
        return False
    assert (reason, shown) == ("replayed jti", "grant rejected")
    return True


@pytest.mark.parametrize("durability", ["durable", "relaxed"])
def test_consumed_jti_survives_reopen(db: Path, durability: str) -> None:
    first = SQLiteReplayGuard.open(db, durability)  # type: ignore[arg-type]
    first.consume("j1", NOW + 30, NOW)
    first.close()
    second = SQLiteReplayGuard.open(db, durability)  # type: ignore[arg-type]
    try:
        assert _replayed(second, "j1", NOW + 30, NOW + 1)
    finally:
        second.close()


def test_synchronous_level_follows_durability(db: Path) -> None:
    for durability, level in (("durable", 2), ("relaxed", 1)):  # FULL = 2, NORMAL = 1
        guard = SQLiteReplayGuard.open(db, durability)  # type: ignore[arg-type]
        try:
            assert guard._db.execute("PRAGMA synchronous").fetchone()[0] == level
            assert guard._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        finally:
            guard.close()


_RACER = """
import json, sys, time
from pathlib import Path
from clearance.errors import InvalidGrant
from clearance._internal.grants.jti_store import SQLiteReplayGuard

db, start, name, order = sys.argv[1], Path(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
guard = SQLiteReplayGuard.open(db, "relaxed")
Path(f"{start}.{name}.ready").touch()
while not start.exists():
    time.sleep(0)
won = []
for jti in order:
    try:
        guard.consume(jti, 2e9, 1.7e9)
        won.append(jti)
    except InvalidGrant as exc:
        if exc.audit_reason != "replayed jti":
            raise
guard.close()
print(json.dumps(won))
"""


def _race(db: Path, workdir: Path, jtis: list[str]) -> list[list[str]]:
    """Two processes consume ``jtis`` in opposite orders; returns what each won."""
    workdir.mkdir()
    start = workdir / "go"
    SQLiteReplayGuard.open(db).close()  # create the schema before the race
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(db), str(start), str(n), json.dumps(order)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n, order in enumerate([jtis, jtis[::-1]])
    ]
    deadline = time.monotonic() + 30
    while len(list(workdir.glob("go.*.ready"))) < len(racers):
        assert time.monotonic() < deadline, "racers did not start"
        time.sleep(0.01)
    start.touch()
    results = [racer.communicate(timeout=60) for racer in racers]
    assert [racer.returncode for racer in racers] == [0] * len(racers), results
    return [json.loads(stdout) for stdout, _ in results]


def test_processes_race_for_the_same_jtis(tmp_path: Path) -> None:
    # Opposite orders make the racers meet somewhere in the middle, contending for the
    # jtis near the meeting point. Exactly-once is asserted on every attempt; a scheduler
    # that runs one racer to completion before the other starts gives no overlap, so
    # retry (fresh file) until both racers won something.
    jtis = [f"jti-{index}" for index in range(3000)]
    for attempt in range(3):
        won = _race(tmp_path / f"replay-{attempt}.db", tmp_path / f"race-{attempt}", jtis)
        assert sorted(jti for wins in won for jti in wins) == sorted(jtis)  # each exactly once
        if all(won):
            return
    pytest.fail(f"the racers never overlapped in 3 attempts: won {[len(w) for w in won]}")


_PROBE = """
import sys
from clearance.errors import InvalidGrant, LedgerError
from clearance._internal.grants.jti_store import SQLiteReplayGuard
try:
    guard = SQLiteReplayGuard.open(sys.argv[1])
except LedgerError as exc:
    print("open refused:", exc)
    sys.exit(0)
try:
    guard.consume("new-jti", 2e9, 1.7e9)
except InvalidGrant as exc:
    print("consume refused:", exc.audit_reason)
else:
    print("CONSUMED")
"""


def _without_dac_override() -> Callable[[], None] | None:
    """For root: drop CAP_DAC_OVERRIDE/READ_SEARCH from the child so file modes bind it."""
    if os.geteuid() != 0:
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def drop() -> None:
        for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
            if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
                raise OSError(ctypes.get_errno(), "PR_CAPBSET_DROP")

    return drop


def test_read_only_store_fails_closed(db: Path) -> None:
    guard = SQLiteReplayGuard.open(db)
    guard.consume("old-jti", 2e9, 1.7e9)
    guard.close()
    files = [p for p in db.parent.iterdir() if p.name.startswith(db.name)]
    for path in files:
        path.chmod(0o444)
    try:
        probe = subprocess.run(
            [sys.executable, "-c", _PROBE, str(db)],
            capture_output=True,
            text=True,
            timeout=60,
            preexec_fn=_without_dac_override(),  # the test process is single-threaded here
        )
    except subprocess.SubprocessError as exc:
        pytest.skip(f"cannot run a child without CAP_DAC_OVERRIDE here: {exc}")
    finally:
        for path in files:
            path.chmod(0o644)
    assert probe.returncode == 0, probe.stderr
    assert "CONSUMED" not in probe.stdout
    assert "refused" in probe.stdout
    reopened = SQLiteReplayGuard.open(db)
    try:
        assert len(reopened) == 1
        assert not _replayed(reopened, "new-jti", 2e9, 1.7e9)
    finally:
        reopened.close()


def test_closed_guard_fails_closed(guard: SQLiteReplayGuard) -> None:
    guard.close()
    with pytest.raises(InvalidGrant) as info:
        guard.consume("j", NOW + 30, NOW)
    assert info.value.audit_reason.startswith("replay store unavailable")


def test_unopenable_store_is_a_ledger_error(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="replay store"):
        SQLiteReplayGuard.open(tmp_path / "missing-dir" / "replay.db")
    not_a_db = tmp_path / "garbage.db"
    not_a_db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LedgerError, match="replay store"):
        SQLiteReplayGuard.open(not_a_db)


# -- purging against a fast clock ----------------------------------------------------------
#
# Each guard gets its own fake monotonic clock; "wall" times are the ``now`` arguments.
# A correct verifier's clock reads NOW at the start; a fast one reads NOW + HOUR.


class _Monotonic:
    """An injectable monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.value = 0.0

    def __call__(self) -> float:
        return self.value

    def advance(self, seconds: float) -> None:
        self.value += seconds


def _open(db: Path, monotonic: _Monotonic | None = None, **limits: Any) -> SQLiteReplayGuard:
    # purge_interval=inf, purge_every=huge: after the purge of a guard's first consume,
    # purges run only when a test calls purge().
    options: dict[str, Any] = {"purge_every": 10**9, "purge_interval": math.inf, **limits}
    return SQLiteReplayGuard.open(db, "relaxed", monotonic=monotonic or _Monotonic(), **options)


def _rows(db: Path) -> dict[str, tuple[float, float | None, str]]:
    with sqlite3.connect(db) as raw:
        rows = raw.execute("SELECT jti, exp, seen_at, verifier FROM consumed_jti").fetchall()
    return {jti: (exp, seen_at, verifier) for jti, exp, seen_at, verifier in rows}


def test_rows_record_who_consumed_them_and_when(db: Path) -> None:
    first, second = _open(db), _open(db)
    try:
        first.consume("a", NOW + 30, NOW)
        second.consume("b", NOW + 30, NOW + 1)
    finally:
        first.close()
        second.close()
    rows = _rows(db)
    (_, seen_a, verifier_a), (_, seen_b, verifier_b) = rows["a"], rows["b"]
    assert (seen_a, seen_b) == (NOW, NOW + 1)
    assert verifier_a != verifier_b  # a random id per opened guard
    assert all(len(v) == 16 and int(v, 16) >= 0 for v in (verifier_a, verifier_b))


_FAST_PURGER = """
import sys
from clearance._internal.grants.jti_store import SQLiteReplayGuard
guard = SQLiteReplayGuard.open(sys.argv[1])
print(guard.purge(float(sys.argv[2])))
guard.close()
"""


def test_fast_purger_in_another_process(db: Path) -> None:
    correct = SQLiteReplayGuard.open(db)
    try:
        correct.consume("grant", NOW + 30, NOW)
        purged = subprocess.run(
            [sys.executable, "-c", _FAST_PURGER, str(db), str(NOW + HOUR)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert purged.stdout.strip() == "0"
        assert _replayed(correct, "grant", NOW + 30, NOW + 10)
        other = SQLiteReplayGuard.open(db)
        try:
            assert _replayed(other, "grant", NOW + 30, NOW + 10)
        finally:
            other.close()
    finally:
        correct.close()


# -- schema migration --------------------------------------------------------------------

_OLD_SCHEMA = (
    "CREATE TABLE consumed_jti (jti TEXT PRIMARY KEY NOT NULL, exp REAL NOT NULL) WITHOUT ROWID",
    "CREATE INDEX consumed_jti_exp ON consumed_jti (exp)",
)


def _old_store(db: Path, rows: dict[str, float]) -> None:
    """A replay.db as the guard wrote it before rows recorded seen_at and verifier."""
    raw = sqlite3.connect(db)
    try:
        raw.execute("PRAGMA journal_mode = WAL")
        for statement in _OLD_SCHEMA:
            raw.execute(statement)
        raw.executemany("INSERT INTO consumed_jti (jti, exp) VALUES (?, ?)", rows.items())
        raw.commit()
    finally:
        raw.close()


def _schema(db: Path) -> tuple[int, list[str]]:
    with sqlite3.connect(db) as raw:
        version = raw.execute("PRAGMA user_version").fetchone()[0]
        columns = [row[1] for row in raw.execute("PRAGMA table_info(consumed_jti)")]
    return version, columns


def test_old_format_store_is_migrated(db: Path) -> None:
    _old_store(db, {"old-live": NOW + 30, "old-expired": NOW - 100})
    assert _schema(db) == (0, ["jti", "exp"])
    clock = _Monotonic()
    guard = _open(db, clock)  # its clock is an hour ahead
    try:
        assert _schema(db) == (SCHEMA_VERSION, ["jti", "exp", "seen_at", "verifier"])
        # Old rows stand for an unknown verifier whose clock read their exp: a purge on
        # a fast clock keeps what that verifier could still accept.
        assert guard.purge(NOW + HOUR) == 1
        assert set(_rows(db)) == {"old-live"}
        assert _replayed(guard, "old-live", NOW + 30, NOW + HOUR)  # old rows still count
        guard.consume("new", NOW + HOUR + 30, NOW + HOUR)
        clock.advance(40)
        assert guard.purge(NOW + HOUR) == 1  # evidence moved past old-live's exp + leeway
        assert set(_rows(db)) == {"new"}
    finally:
        guard.close()
    reopened = _open(db)  # a migrated store opens unchanged
    try:
        assert _schema(db) == (SCHEMA_VERSION, ["jti", "exp", "seen_at", "verifier"])
        assert _replayed(reopened, "new", NOW + HOUR + 30, NOW + HOUR)
    finally:
        reopened.close()


def test_rows_from_a_guard_of_the_old_format_still_hold_purges_back(db: Path) -> None:
    # During a rolling upgrade an old guard still inserts only (jti, exp) into the
    # migrated table: its rows read as an unknown verifier whose clock read their exp.
    _open(db).close()
    with sqlite3.connect(db) as raw:
        raw.execute("INSERT INTO consumed_jti (jti, exp) VALUES ('old-writer', ?)", (NOW + 30,))
    assert _rows(db)["old-writer"] == (NOW + 30, None, "")
    fast = _open(db)
    try:
        fast.consume("fast-expired", NOW + HOUR - 100, NOW + HOUR - 120)
        assert fast.purge(NOW + HOUR) == 0
        assert _replayed(fast, "old-writer", NOW + 30, NOW + 10)
    finally:
        fast.close()


def test_concurrent_opens_migrate_once(db: Path) -> None:
    _old_store(db, {"old": NOW + 30})
    barrier = threading.Barrier(6)
    failures: list[BaseException] = []

    def open_and_close() -> None:
        barrier.wait()
        try:
            SQLiteReplayGuard.open(db).close()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=open_and_close) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert _schema(db) == (SCHEMA_VERSION, ["jti", "exp", "seen_at", "verifier"])


def test_store_from_a_newer_version_is_refused(db: Path) -> None:
    _open(db).close()
    with sqlite3.connect(db) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(LedgerError, match="schema version"):
        SQLiteReplayGuard.open(db)
