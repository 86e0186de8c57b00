"""``clearance migrate``: schema steps on PostgreSQL, and proven copies between stores."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clearance import open_gate
from clearance._internal.home import DATABASE_ENV, Home, init_home
from clearance._internal.ledger import merkle
from clearance._internal.migrations import Migration, apply, current
from clearance._internal.postgres import connect
from clearance._internal.wiring import open_ledger
from tests.pg import fresh_schema


def _clearance(*args: str, database: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != DATABASE_ENV}
    if database is not None:
        env[DATABASE_ENV] = database
    return subprocess.run(
        [sys.executable, "-m", "clearance", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def _home_with_decisions(path: Path, calls: int = 12) -> Path:
    init_home(path, now=time.time())
    with open_gate(path, principal="agent:ops-bot", durability="relaxed") as gate:
        for n in range(calls):
            with gate.clearance({"action": "read_file", "args": {"path": f"reports/{n}.txt"}}):
                pass
    return path


def test_migrate_brings_a_new_database_up_to_date_and_says_so(tmp_path: Path, pg_url: str) -> None:
    home = tmp_path / "home"
    init_home(home, now=time.time())
    dry = _clearance("migrate", "--home", str(home), "--dry-run", database=pg_url)
    assert dry.returncode == 0, dry.stderr
    assert "would apply" in dry.stdout
    with connect(pg_url, autocommit=True) as conn:
        assert current(conn, "ledger") == 0  # a dry run changes nothing
    done = _clearance("migrate", "--home", str(home), database=pg_url)
    assert done.returncode == 0, done.stderr
    again = _clearance("migrate", "--home", str(home), database=pg_url)
    assert again.stdout.count("up to date") == 3


def test_migrate_refuses_a_newer_schema(tmp_path: Path, pg_url: str) -> None:
    home = tmp_path / "home"
    init_home(home, now=time.time())
    assert _clearance("migrate", "--home", str(home), database=pg_url).returncode == 0
    with connect(pg_url, autocommit=True) as conn:
        future = [Migration(v, "x", ()) for v in range(1, 4)]
        apply(conn, "replay", future)  # as a newer clearance would have
    refused = _clearance("migrate", "--home", str(home), database=pg_url)
    assert refused.returncode == 2
    assert "newer than this clearance knows" in refused.stderr


def test_a_log_moves_to_postgresql_and_back_with_the_same_root(tmp_path: Path) -> None:
    home = _home_with_decisions(tmp_path / "home")
    with open_ledger(Home.load(home)) as ledger:
        size = ledger.size()
        notes = [cp.note for cp in ledger.checkpoints()]
        root = ledger.root()
    with fresh_schema() as url:
        there = _clearance(
            "migrate", "--home", str(home), "--from", str(home / "ledger.db"), "--to", url
        )
        assert there.returncode == 0, there.stderr
        assert f"copied {size} entries and {len(notes)} checkpoints" in there.stdout
        again = _clearance(
            "migrate", "--home", str(home), "--from", str(home / "ledger.db"), "--to", url
        )
        assert again.returncode == 2
        assert "already holds a log" in again.stderr
        back = tmp_path / "offline.db"
        home_again = _clearance(
            "migrate", "--home", str(home), "--from", url, "--to", f"sqlite://{back}"
        )
        assert home_again.returncode == 0, home_again.stderr
    with sqlite3.connect(back) as conn:
        leaves = [bytes(r[0]) for r in conn.execute("SELECT leaf FROM entries ORDER BY idx")]
        stored = [r[0] for r in conn.execute("SELECT note FROM checkpoints ORDER BY size")]
    assert merkle.root_of([merkle.leaf_hash(leaf) for leaf in leaves]) == root
    assert stored == notes
    audit = _clearance("log", "verify", "--home", str(home))
    assert audit.returncode == 0, audit.stderr


def test_a_tampered_source_is_not_copied(tmp_path: Path, pg_url: str) -> None:
    home = _home_with_decisions(tmp_path / "home", calls=4)
    ledger = home / "ledger.db"
    with sqlite3.connect(ledger) as conn:
        conn.execute("DROP TRIGGER entries_no_update")
        conn.execute(
            "UPDATE entries SET leaf = CAST(replace(CAST(leaf AS TEXT), 'q', 'Q') AS BLOB) "
            "WHERE idx = 3"
        )
    refused = _clearance("migrate", "--home", str(home), "--from", str(ledger), "--to", pg_url)
    assert refused.returncode == 2
    assert "does not verify" in refused.stderr
    with connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('entries')").fetchone() == (None,)


@pytest.mark.parametrize("bad", ["mysql://x/y", "sqlite://relative.db"])
def test_bad_locations_are_refused_clearly(tmp_path: Path, bad: str) -> None:
    home = tmp_path / "home"
    init_home(home, now=time.time())
    result = _clearance(
        "migrate", "--home", str(home), "--from", bad, "--to", str(tmp_path / "x.db")
    )
    assert result.returncode == 2
    assert "error:" in result.stderr


def test_migrate_on_sqlite_reports_each_store_file(tmp_path: Path) -> None:
    home = _home_with_decisions(tmp_path / "home", calls=1)
    dry = _clearance("migrate", "--home", str(home), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "ledger" in dry.stdout
    assert "version 1, up to date" in dry.stdout
    done = _clearance("migrate", "--home", str(home))
    assert done.returncode == 0, done.stderr
    again = _clearance("migrate", "--home", str(home), "--dry-run")
    assert again.stdout.count("up to date") == 3
