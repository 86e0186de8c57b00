"""The write-ahead-log checkpointer (clearance._internal.sqlite_wal) against real SQLite files."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from clearance._internal.sqlite_wal import FALLBACK_PAGES, WalCheckpointer, defer_checkpoints

PAGE = 4096


def _writer(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE IF NOT EXISTS rows (n INTEGER PRIMARY KEY, body BLOB)")
    defer_checkpoints(conn)
    return conn


def _wal_bytes(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def test_the_writer_keeps_only_a_fallback_automatic_checkpoint(tmp_path: Path) -> None:
    conn = _writer(tmp_path / "db.sqlite")
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == FALLBACK_PAGES
    conn.close()


def test_a_busy_writer_still_gets_its_log_rewound(tmp_path: Path) -> None:
    """A writer that never pauses: a passive checkpoint alone always leaves the frames
    committed while it ran, so SQLite never rewinds the log and it grows to the fallback
    (seen: 82 MB). The catch-up pass under the writer's lock lets it rewind, so the log
    stays within a few checkpoint periods."""
    path = tmp_path / "db.sqlite"
    conn = _writer(path)
    commit_role = threading.Lock()
    checkpointer = WalCheckpointer(
        path, synchronous="NORMAL", quiesce=lambda: commit_role, every_rows=100
    )
    body = b"x" * 3000  # about one page per row
    largest = 0
    try:
        for n in range(6000):
            with commit_role:
                conn.execute("INSERT INTO rows VALUES (?, ?)", (n, body))
                checkpointer.note(1)
            if n % 100 == 0:
                largest = max(largest, _wal_bytes(path))
    finally:
        checkpointer.close()
    assert checkpointer.checkpoints >= 10
    # 100 rows a period, a few periods behind at most; 6,000 rows would be ~24 MB.
    assert largest < 2_000 * PAGE, largest
    assert conn.execute("SELECT count(*) FROM rows").fetchone()[0] == 6000
    conn.close()


def test_a_quiet_log_is_checkpointed_after_the_idle_period(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    conn = _writer(path)
    conn.execute("INSERT INTO rows VALUES (1, x'00')")
    checkpointer = WalCheckpointer(path, synchronous="FULL", quiesce=threading.Lock, idle=0.05)
    try:
        deadline = time.monotonic() + 5
        while checkpointer.checkpoints == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert checkpointer.checkpoints >= 1
        busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert (busy, frames - copied) == (0, 0)  # nothing was left for anyone else
    finally:
        checkpointer.close()
        checkpointer.close()  # idempotent
    conn.close()


def test_a_failing_checkpoint_is_logged_once_and_never_reaches_the_writer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "db.sqlite"
    conn = _writer(path)
    failures = 3

    @contextmanager
    def quiesce() -> Iterator[None]:
        nonlocal failures
        if failures:
            failures -= 1
            raise sqlite3.OperationalError("disk I/O error")
        yield

    checkpointer = WalCheckpointer(path, synchronous="NORMAL", quiesce=quiesce, idle=0.02)
    caplog.set_level(logging.INFO, logger="clearance.ledger")
    try:
        deadline = time.monotonic() + 5
        while checkpointer.checkpoints == 0 and time.monotonic() < deadline:
            conn.execute("INSERT INTO rows (body) VALUES (x'00')")  # the writer goes on
            time.sleep(0.01)
    finally:
        checkpointer.close()
    assert checkpointer.checkpoints >= 1
    messages = [record.getMessage() for record in caplog.records]
    assert sum("cannot checkpoint the write-ahead log" in m for m in messages) == 1
    assert sum("checkpointing the write-ahead log of" in m for m in messages) == 1
    conn.close()


@pytest.mark.parametrize(
    ("synchronous", "every_rows", "idle"), [("OFF", 1, 1.0), ("FULL", 0, 1.0), ("FULL", 1, 0)]
)
def test_bad_settings_are_refused(
    tmp_path: Path, synchronous: str, every_rows: int, idle: float
) -> None:
    with pytest.raises(ValueError):
        WalCheckpointer(
            tmp_path / "db.sqlite",
            synchronous=synchronous,
            quiesce=threading.Lock,
            every_rows=every_rows,
            idle=idle,
        )
