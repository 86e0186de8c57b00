"""The PostgreSQL replay guard on the machine's real server.

Single use across threads and processes; the SQLite store's purge-rule cases run on
both stores side by side (same calls, same rows kept); what is PostgreSQL's own (one
snapshot per purge, one purger per table, synchronous_commit); and failing closed when
the server goes away.
"""

from __future__ import annotations

import json
import math
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import psycopg
import pytest

from clearance._internal.grants.jti_store import REPLAY_LEEWAY, SQLiteReplayGuard
from clearance._internal.grants.jti_store_pg import _PURGE_LOCK_BASE, PostgresReplayGuard
from clearance._internal.postgres import RECONNECT_WINDOW
from clearance.errors import InvalidGrant, LedgerError
from tests.pg import fresh_schema

from .tcp_proxy import proxy_to

NOW = 1_700_000_000.0
HOUR = 3600.0


class Guard(Protocol):
    def consume(self, jti: str, exp: float, now: float) -> None: ...
    def purge(self, now: float) -> int: ...
    def __len__(self) -> int: ...
    def close(self) -> None: ...


def _replayed(guard: Guard, jti: str, exp: float, now: float) -> bool:
    try:
        guard.consume(jti, exp, now)
    except InvalidGrant as exc:
        reason, shown = exc.audit_reason, str(exc)
    else:
        return False
    assert (reason, shown) == ("replayed jti", "grant rejected")
    return True


class _Monotonic:
    """An injectable monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.value = 0.0

    def __call__(self) -> float:
        return self.value

    def advance(self, seconds: float) -> None:
        self.value += seconds


# -- the purge rule on both stores -------------------------------------------------------


class Store:
    """One replay store (a SQLite file or a PostgreSQL schema) and raw access to its rows."""

    def __init__(self, kind: str, location: str) -> None:
        self.kind = kind
        self.location = location

    def open(
        self, monotonic: Callable[[], float] | None = None, **limits: Any
    ) -> SQLiteReplayGuard | PostgresReplayGuard:
        # purge_interval=inf, purge_every=huge: after the purge of a guard's first
        # consume, purges run only when a test calls purge().
        options: dict[str, Any] = {"purge_every": 10**9, "purge_interval": math.inf, **limits}
        clock = monotonic or _Monotonic()
        if self.kind == "sqlite":
            return SQLiteReplayGuard.open(self.location, "relaxed", monotonic=clock, **options)
        return PostgresReplayGuard.open(
            self.location, durability="relaxed", monotonic=clock, **options
        )

    def rows(self) -> dict[str, tuple[float, float | None, str]]:
        query = "SELECT jti, exp, seen_at, verifier FROM consumed_jti"
        if self.kind == "sqlite":
            with sqlite3.connect(self.location) as raw:
                found = raw.execute(query).fetchall()
            raw.close()
        else:
            with psycopg.connect(self.location) as conn:
                found = conn.execute(query).fetchall()
        return {jti: (exp, seen_at, verifier) for jti, exp, seen_at, verifier in found}

    def insert_unattributed(self, jti: str, exp: float) -> None:
        """A row as an older guard (or a copy of an old SQLite store) writes it."""
        if self.kind == "sqlite":
            with sqlite3.connect(self.location) as raw:
                raw.execute("INSERT INTO consumed_jti (jti, exp) VALUES (?, ?)", (jti, exp))
            raw.close()
        else:
            with psycopg.connect(self.location) as conn:
                conn.execute("INSERT INTO consumed_jti (jti, exp) VALUES (%s, %s)", (jti, exp))


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        return Store("sqlite", str(tmp_path / "replay.db"))
    return Store("postgres", request.getfixturevalue("pg_url"))


def test_purge_forgets_only_what_can_no_longer_verify(store: Store) -> None:
    guard = store.open()
    try:
        guard.consume("old", NOW, NOW - 30)
        guard.consume("edge", NOW + 1, NOW - 30)
        guard.consume("live", NOW + 60, NOW - 30)
        assert guard.purge(NOW + REPLAY_LEEWAY) == 0  # exp + leeway == now: could verify
        assert _replayed(guard, "old", NOW, NOW + REPLAY_LEEWAY)
        assert guard.purge(NOW + REPLAY_LEEWAY + 0.5) == 1
        assert len(guard) == 2
        assert _replayed(guard, "edge", NOW + 1, NOW + REPLAY_LEEWAY + 0.5)
        assert _replayed(guard, "live", NOW + 60, NOW + REPLAY_LEEWAY + 0.5)
    finally:
        guard.close()


def test_purge_is_amortised_over_consumes(store: Store) -> None:
    guard = store.open(purge_every=3, purge_interval=1e9)
    try:
        for index in range(3):  # purgeable at NOW, but only every third consume purges
            guard.consume(f"expired-{index}", NOW - 100, NOW)
            assert len(guard) == index + 1
        guard.consume("live", NOW + 30, NOW)
        assert len(guard) == 1
    finally:
        guard.close()


def test_purge_when_time_advances(store: Store) -> None:
    guard = store.open(purge_every=10**6, purge_interval=60)
    try:
        guard.consume("expired", NOW - 100, NOW - 100)
        guard.consume("a", NOW + 30, NOW - 41)
        assert len(guard) == 2
        guard.consume("b", NOW + 30, NOW)  # 100 s after the last purge
        assert len(guard) == 2
        assert not _replayed(guard, "expired", NOW + 30, NOW)
    finally:
        guard.close()


def test_fast_verifier_cannot_purge_a_correct_verifiers_live_jti(store: Store) -> None:
    correct, fast = store.open(), store.open(purge_every=1)
    try:
        correct.consume("grant", NOW + 30, NOW)
        fast.consume("fast-grant", NOW + HOUR + 30, NOW + HOUR)
        assert fast.purge(NOW + HOUR) == 0
        assert fast.purge(NOW + 2 * HOUR) == 0
        assert _replayed(correct, "grant", NOW + 30, NOW + 10)
    finally:
        correct.close()
        fast.close()


@pytest.mark.parametrize("how", ["second worker", "restart"])
def test_fast_guards_do_not_vouch_for_each_other(store: Store, how: str) -> None:
    correct, fast = store.open(), store.open()
    try:
        fast.consume("fast-1", NOW + HOUR + 30, NOW + HOUR)
        correct.consume("grant", NOW + 30, NOW)
        if how == "restart":
            fast.close()
            fast = store.open()
            purger = fast
        else:
            purger = store.open()
        try:
            assert purger.purge(NOW + HOUR) == 0
        finally:
            if purger is not fast:
                purger.close()
        assert _replayed(correct, "grant", NOW + 30, NOW + 10)
    finally:
        correct.close()
        fast.close()


def test_fast_verifier_alone_purges_its_own_expired_rows(store: Store) -> None:
    fast = store.open()
    try:
        fast.consume("expired", NOW + HOUR - 100, NOW + HOUR - 120)
        fast.consume("live", NOW + HOUR + 30, NOW + HOUR)
        assert fast.purge(NOW + HOUR) == 1  # no other clock is known: its own decides
        assert set(store.rows()) == {"live"}
    finally:
        fast.close()


def test_amortised_purge_uses_the_same_rule(store: Store) -> None:
    correct, fast = store.open(), store.open(purge_every=1)
    try:
        correct.consume("correct-expired", NOW - 100, NOW - 130)
        correct.consume("grant", NOW + 30, NOW)
        fast.consume("fast-expired", NOW + HOUR - 100, NOW + HOUR - 120)
        fast.consume("fast-live", NOW + HOUR + 30, NOW + HOUR)
        assert set(store.rows()) == {"grant", "fast-expired", "fast-live"}
        assert _replayed(correct, "grant", NOW + 30, NOW + 10)
    finally:
        correct.close()
        fast.close()


def test_dead_verifiers_evidence_advances_with_monotonic_time(store: Store) -> None:
    dead = store.open()
    dead.consume("long-lived", 2e9, NOW)
    dead.close()
    clock = _Monotonic()
    purger = store.open(clock)
    try:
        purger.consume("mine", NOW + 900, NOW + 870)
        assert purger.purge(NOW + 1000) == 0
        for _ in range(4):  # re-observing the same value must not restart its clock
            clock.advance(250)
            purger.purge(NOW + 1000 + clock.value)
        assert set(store.rows()) == {"long-lived"}
        purger.consume("mine-2", NOW + 1990, NOW + 1960)
        clock.advance(1000)
        assert purger.purge(NOW + 3000) == 1
    finally:
        purger.close()


def test_evidence_disappears_with_the_other_verifiers_rows(store: Store) -> None:
    other = store.open()
    other.consume("theirs", NOW + 30, NOW)
    other.close()
    clock = _Monotonic()
    purger = store.open(clock)
    try:
        purger.consume("mine", NOW + 500, NOW + 470)
        assert purger.purge(NOW + 1000) == 0
        clock.advance(40)
        assert purger.purge(NOW + 1040) == 1
        assert purger.purge(NOW + 1040) == 1
        assert len(purger) == 0
    finally:
        purger.close()


def test_a_slower_verifier_than_the_purger_holds_it_to_its_clock(store: Store) -> None:
    slow, purger = store.open(), store.open()
    try:
        slow.consume("slow-grant", NOW - 60 + 30, NOW - 60)
        assert purger.purge(NOW + 30) == 0
        assert _replayed(slow, "slow-grant", NOW - 30, NOW - 40)
    finally:
        slow.close()
        purger.close()


def test_short_lived_guards_keep_the_store_bounded(store: Store) -> None:
    for call in range(60):
        now = NOW + 10 * call
        guard = store.open(max_skew=100)
        try:
            guard.consume(f"call-{call}", now + 30, now)  # a guard's first consume purges
        finally:
            guard.close()
    kept = sorted(store.rows(), key=lambda jti: int(jti[5:]))
    assert kept == [f"call-{c}" for c in range(46, 60)]


def test_a_clock_further_ahead_than_max_skew_is_not_caught(store: Store) -> None:
    correct, fast = store.open(), store.open(max_skew=HOUR)
    try:
        correct.consume("grant", NOW + 30, NOW)
        assert fast.purge(NOW + HOUR - 60) == 0
        assert fast.purge(NOW + HOUR + 60) == 1
    finally:
        correct.close()
        fast.close()


def test_unattributed_rows_still_hold_purges_back(store: Store) -> None:
    # Rows without seen_at and verifier (an older guard, or a copied SQLite store) read
    # as an unknown verifier whose clock read their exp.
    store.open().close()
    store.insert_unattributed("old-writer", NOW + 30)
    assert store.rows()["old-writer"] == (NOW + 30, None, "")
    fast = store.open()
    try:
        fast.consume("fast-expired", NOW + HOUR - 100, NOW + HOUR - 120)
        assert fast.purge(NOW + HOUR) == 0
        assert _replayed(fast, "old-writer", NOW + 30, NOW + 10)
    finally:
        fast.close()


def test_failed_purge_leaves_no_transaction_open(store: Store) -> None:
    calls = 0

    def flaky() -> float:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("clock unavailable")
        return float(calls)

    other = store.open()
    guard = store.open(flaky, purge_every=1)
    try:
        other.consume("theirs", NOW + 30, NOW)
        with pytest.raises(RuntimeError):
            guard.consume("first", NOW + 30, NOW)
        guard.consume("second", NOW + 30, NOW)
        assert _replayed(other, "second", NOW + 30, NOW)  # committed, visible elsewhere
        assert not _replayed(other, "first", NOW + 30, NOW)
    finally:
        guard.close()
        other.close()


@pytest.mark.parametrize(
    "limits",
    [{"max_skew": -1.0}, {"max_skew": math.nan}, {"leeway": -1.0}, {"purge_every": 0}],
)
def test_bad_limits_are_refused(store: Store, limits: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be"):
        store.open(**limits)


# -- single use ------------------------------------------------------------------------


@pytest.fixture
def guard(pg_url: str) -> Iterator[PostgresReplayGuard]:
    opened = PostgresReplayGuard.open(pg_url)
    yield opened
    opened.close()


def test_first_consume_wins_second_is_a_replay(guard: PostgresReplayGuard) -> None:
    assert not _replayed(guard, "j1", NOW + 30, NOW)
    assert _replayed(guard, "j1", NOW + 30, NOW + 1)
    assert not _replayed(guard, "j2", NOW + 30, NOW + 1)
    assert len(guard) == 2


@pytest.mark.parametrize("durability", ["durable", "relaxed"])
def test_consumed_jti_survives_reopen_and_durability_sets_synchronous_commit(
    pg_url: str, durability: Any
) -> None:
    first = PostgresReplayGuard.open(pg_url, durability=durability)
    first.consume("j1", NOW + 30, NOW)
    with first._pool.connection() as conn:
        row = conn.execute("SHOW synchronous_commit").fetchone()
    assert row == ("on" if durability == "durable" else "off",)
    first.close()
    second = PostgresReplayGuard.open(pg_url, durability=durability)
    try:
        assert _replayed(second, "j1", NOW + 30, NOW + 1)
    finally:
        second.close()


def test_bad_durability_is_refused(pg_url: str) -> None:
    with pytest.raises(ValueError, match="durability"):
        PostgresReplayGuard.open(pg_url, durability="fast")  # type: ignore[arg-type]


def test_threads_race_for_one_jti(pg_url: str) -> None:
    # Two guards (two pools, like two gateways) and 16 threads on 8 connections.
    guards = [PostgresReplayGuard.open(pg_url, pool_size=4) for _ in range(2)]
    barrier = threading.Barrier(16)
    outcomes: list[bool] = []

    def attempt(guard: PostgresReplayGuard) -> None:
        barrier.wait()
        outcomes.append(not _replayed(guard, "contested", NOW + 30, NOW))

    threads = [threading.Thread(target=attempt, args=(guards[n % 2],)) for n in range(16)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for guard in guards:
            guard.close()
    assert sorted(outcomes) == [False] * 15 + [True]


_RACER = """
import json, sys, time
from pathlib import Path
from clearance.errors import InvalidGrant
from clearance._internal.grants.jti_store_pg import PostgresReplayGuard

url, start, name, order = sys.argv[1], Path(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
guard = PostgresReplayGuard.open(url, durability="relaxed")
Path(f"{start}.{name}.ready").touch()
while not start.exists():
    time.sleep(0.001)
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


def _race(url: str, workdir: Path, orders: list[list[str]]) -> list[list[str]]:
    """One racer process per order, released together; returns what each won."""
    workdir.mkdir()
    start = workdir / "go"
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, url, str(start), str(n), json.dumps(order)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n, order in enumerate(orders)
    ]
    deadline = time.monotonic() + 30
    while len(list(workdir.glob("go.*.ready"))) < len(racers):
        assert time.monotonic() < deadline, "racers did not start"
        assert all(racer.poll() is None for racer in racers), [r.stderr for r in racers]
        time.sleep(0.01)
    start.touch()
    results = [racer.communicate(timeout=60) for racer in racers]
    assert [racer.returncode for racer in racers] == [0] * len(racers), results
    return [json.loads(stdout) for stdout, _ in results]


def test_four_processes_race_for_the_same_jtis(pg_url: str, tmp_path: Path) -> None:
    # Every racer first goes for one contested jti, then for all the others, each from
    # its own starting point: they meet at every boundary and contend there.
    # Exactly-once is asserted on every round; a scheduler that runs one racer through
    # everything before the others start gives no overlap, so retry until two racers
    # won something.
    PostgresReplayGuard.open(pg_url).close()  # the schema exists before the race
    for attempt in range(3):
        jtis = [f"{attempt}-jti-{index}" for index in range(400)]
        contested = f"{attempt}-contested"
        orders = [[contested, *jtis[k * 100 :], *jtis[: k * 100]] for k in range(4)]
        won = _race(pg_url, tmp_path / f"race-{attempt}", orders)
        every_win = sorted(jti for wins in won for jti in wins)
        assert every_win == sorted([contested, *jtis])  # each exactly once, none lost
        assert sum(contested in wins for wins in won) == 1
        if sum(1 for wins in won if wins) >= 2:
            return
    pytest.fail(f"the racers never overlapped in 3 rounds: won {[len(w) for w in won]}")


# -- what PostgreSQL adds ----------------------------------------------------------------


def test_a_row_committed_during_a_purge_is_not_deleted(pg_url: str) -> None:
    # The purger reads its monotonic clock between the observation and the delete. A
    # slow verifier's first row committed right then is absent from the observation, so
    # the cutoff ignores its clock; the delete must not see it either (one snapshot).
    slow = PostgresReplayGuard.open(pg_url, purge_every=10**9, purge_interval=math.inf)
    slow.consume("warm-up", 2e9, NOW - 60)  # its first purge is done; no more
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DELETE FROM consumed_jti")
    committed: list[str] = []

    def between_observation_and_delete() -> float:
        if not committed:
            slow.consume("slow-first", NOW - 30, NOW - 60)  # expired on the purger's clock
            committed.append("slow-first")
        return 0.0

    purger = PostgresReplayGuard.open(
        pg_url, monotonic=between_observation_and_delete, purge_every=10**9
    )
    try:
        assert purger.purge(NOW + HOUR) == 0
        assert committed == ["slow-first"]
        assert _replayed(slow, "slow-first", NOW - 30, NOW - 50)
        # The next purge observes the row, and the slow clock holds it back.
        assert purger.purge(NOW + HOUR) == 0
        assert _replayed(slow, "slow-first", NOW - 30, NOW - 50)
    finally:
        purger.close()
        slow.close()


def test_a_purge_that_meets_a_concurrent_delete_skips_whole(pg_url: str) -> None:
    # Rows deleted by another session after the purge's snapshot (a purge that got the
    # lock a moment late, or an operator) make its DELETE a serialization failure: the
    # purge deletes nothing, reports 0, and the next one proceeds.
    other = PostgresReplayGuard.open(pg_url, purge_every=10**9, purge_interval=math.inf)
    deleted_elsewhere: list[str] = []

    def between_observation_and_delete() -> float:
        if not deleted_elsewhere:
            with psycopg.connect(pg_url, autocommit=True) as conn:
                conn.execute("DELETE FROM consumed_jti WHERE jti = 'a'")
            deleted_elsewhere.append("a")
        return 0.0

    purger = PostgresReplayGuard.open(
        pg_url, monotonic=between_observation_and_delete, purge_every=10**9
    )
    try:
        other.consume("a", NOW - 100, NOW)
        other.consume("b", NOW - 100, NOW)
        assert purger.purge(NOW) == 0
        assert deleted_elsewhere == ["a"]
        assert len(purger) == 1  # "b" is still there: the failed purge left no half
        assert purger.purge(NOW) == 1
        assert len(purger) == 0
    finally:
        purger.close()
        other.close()


def _hold_purge_lock(url: str) -> psycopg.Connection[Any]:
    """A connection in a transaction that holds the purge lock of the table at ``url``."""
    conn = psycopg.connect(url)
    row = conn.execute(
        "SELECT pg_try_advisory_xact_lock(%s::bigint + 'consumed_jti'::regclass::oid::bigint)",
        (_PURGE_LOCK_BASE,),
    ).fetchone()
    assert row == (True,)
    return conn


def test_one_purger_at_a_time_and_the_others_skip(pg_url: str) -> None:
    guard = PostgresReplayGuard.open(pg_url, purge_every=10**9, purge_interval=math.inf)
    try:
        guard.consume("expired", NOW - 100, NOW - 120)
        holder = _hold_purge_lock(pg_url)
        try:
            started = time.monotonic()
            assert guard.purge(NOW) == 0  # skipped, without waiting for the holder
            assert time.monotonic() - started < 1
            assert not _replayed(guard, "fresh", NOW + 30, NOW)  # consumes never wait
            assert len(guard) == 2
        finally:
            holder.rollback()
            holder.close()
        assert guard.purge(NOW) == 1
    finally:
        guard.close()


def test_the_purge_lock_is_per_table(pg_url: str) -> None:
    with fresh_schema() as other_url:
        PostgresReplayGuard.open(other_url).close()
        holder = _hold_purge_lock(other_url)
        try:
            guard = PostgresReplayGuard.open(pg_url, purge_every=10**9)
            try:
                guard.consume("expired", NOW - 100, NOW - 120)
                assert guard.purge(NOW) == 1  # another schema's purge does not hold it
            finally:
                guard.close()
        finally:
            holder.rollback()
            holder.close()


# -- failing closed ----------------------------------------------------------------------


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_server_refuses_to_open_naming_it_not_its_password() -> None:
    url = f"postgresql://clearance:hunter2@127.0.0.1:{_closed_port()}/clearance"
    started = time.monotonic()
    with pytest.raises(LedgerError) as caught:
        PostgresReplayGuard.open(url)
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert message.startswith("cannot open the replay store: PostgreSQL at")
    assert "unreachable" in message
    assert "clearance:***@127.0.0.1" in message
    assert "hunter2" not in message


def test_a_server_outage_fails_closed_and_the_guard_recovers(pg_url: str) -> None:
    with proxy_to(pg_url) as proxy:
        guard = PostgresReplayGuard.open(proxy.via(pg_url), wait=0.5)
        try:
            guard.consume("before", NOW + 30, NOW)
            proxy.cut()
            started = time.monotonic()
            with pytest.raises(InvalidGrant) as caught:
                guard.consume("during", NOW + 30, NOW)
            assert time.monotonic() - started < 5
            assert str(caught.value) == "grant rejected"  # opaque to the caller
            reason = caught.value.audit_reason
            assert reason.startswith("replay store unavailable: PostgreSQL at"), reason
            with pytest.raises(LedgerError, match="replay store"):
                len(guard)
            proxy.restore()
            # The guard recovers by itself, within the pool's reconnect window...
            deadline = time.monotonic() + RECONNECT_WINDOW + 2
            while True:
                try:
                    len(guard)
                    break
                except LedgerError:
                    assert time.monotonic() < deadline, "the guard did not recover"
                    time.sleep(0.1)
            # ...and nothing was consumed during the outage.
            assert not _replayed(guard, "during", NOW + 30, NOW)
            assert _replayed(guard, "before", NOW + 30, NOW)
        finally:
            guard.close()


def test_a_closed_guard_fails_closed(guard: PostgresReplayGuard) -> None:
    guard.close()
    with pytest.raises(InvalidGrant) as caught:
        guard.consume("j", NOW + 30, NOW)
    assert caught.value.audit_reason.startswith("replay store unavailable")


def test_a_newer_schema_is_refused(pg_url: str) -> None:
    PostgresReplayGuard.open(pg_url).close()
    with psycopg.connect(pg_url) as conn:
        conn.execute("UPDATE clearance_schema SET version = 99 WHERE component = 'replay'")
    with pytest.raises(LedgerError, match=r"replay schema version .* is 99, newer"):
        PostgresReplayGuard.open(pg_url)
