"""The SQLite replay guard on real files: atomic across processes, persistent, bounded."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from clearance.errors import InvalidGrant, LedgerError
from clearance.replay import REPLAY_LEEWAY, SQLiteReplayGuard

NOW = 1_700_000_000.0


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
        reason, shown = exc.reason, str(exc)
    else:
        return False
    assert (reason, shown) == ("replayed jti", "grant rejected")
    return True


def test_first_consume_wins_second_is_a_replay(guard: SQLiteReplayGuard) -> None:
    assert not _replayed(guard, "j1", NOW + 30, NOW)
    assert _replayed(guard, "j1", NOW + 30, NOW + 1)
    assert not _replayed(guard, "j2", NOW + 30, NOW + 1)
    assert len(guard) == 2


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


def test_bad_durability_is_refused(db: Path) -> None:
    with pytest.raises(ValueError, match="durability"):
        SQLiteReplayGuard.open(db, "fast")  # type: ignore[arg-type]


def test_purge_forgets_only_what_can_no_longer_verify(guard: SQLiteReplayGuard) -> None:
    guard.consume("old", NOW, NOW - 30)
    guard.consume("edge", NOW + 1, NOW - 30)
    guard.consume("live", NOW + 60, NOW - 30)
    # At NOW + leeway, "old" (exp + leeway == now) could still verify with the largest leeway.
    assert guard.purge(NOW + REPLAY_LEEWAY) == 0
    assert _replayed(guard, "old", NOW, NOW + REPLAY_LEEWAY)
    assert guard.purge(NOW + REPLAY_LEEWAY + 0.5) == 1
    assert len(guard) == 2
    assert _replayed(guard, "edge", NOW + 1, NOW + REPLAY_LEEWAY + 0.5)
    assert _replayed(guard, "live", NOW + 60, NOW + REPLAY_LEEWAY + 0.5)


def test_purge_is_amortised_over_consumes(db: Path) -> None:
    guard = SQLiteReplayGuard.open(db, "relaxed", purge_every=3, purge_interval=1e9)
    try:
        # Rows already past exp + leeway at NOW: purgeable, but only every third consume.
        for index in range(3):
            guard.consume(f"expired-{index}", NOW - 100, NOW)
            assert len(guard) == index + 1
        guard.consume("live", NOW + 30, NOW)
        assert len(guard) == 1
    finally:
        guard.close()


def test_purge_when_time_advances(db: Path) -> None:
    guard = SQLiteReplayGuard.open(db, "relaxed", purge_every=10**6, purge_interval=60)
    try:
        guard.consume("expired", NOW - 100, NOW - 100)
        guard.consume("a", NOW + 30, NOW - 41)
        assert len(guard) == 2
        guard.consume("b", NOW + 30, NOW)  # 100 s after the last purge
        assert len(guard) == 2
        assert not _replayed(guard, "expired", NOW + 30, NOW)
    finally:
        guard.close()


def test_threads_race_for_one_jti(guard: SQLiteReplayGuard) -> None:
    barrier = threading.Barrier(8)
    outcomes: list[bool] = []

    def attempt() -> None:
        barrier.wait()
        outcomes.append(not _replayed(guard, "contested", NOW + 30, NOW))

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [False] * 7 + [True]


_RACER = """
import json, sys, time
from pathlib import Path
from clearance.errors import InvalidGrant
from clearance.replay import SQLiteReplayGuard

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
        if exc.reason != "replayed jti":
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
from clearance.replay import SQLiteReplayGuard
try:
    guard = SQLiteReplayGuard.open(sys.argv[1])
except LedgerError as exc:
    print("open refused:", exc)
    sys.exit(0)
try:
    guard.consume("new-jti", 2e9, 1.7e9)
except InvalidGrant as exc:
    print("consume refused:", exc.reason)
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
    assert info.value.reason.startswith("replay store unavailable")


def test_unopenable_store_is_a_ledger_error(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="replay store"):
        SQLiteReplayGuard.open(tmp_path / "missing-dir" / "replay.db")
    not_a_db = tmp_path / "garbage.db"
    not_a_db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LedgerError, match="replay store"):
        SQLiteReplayGuard.open(not_a_db)
