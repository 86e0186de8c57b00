"""``clearance bench --http --database``: the same load on SQLite and on PostgreSQL with one
and two gateway processes, each PostgreSQL run in a scratch schema dropped afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from clearance._internal.postgres import connect
from tests.pg import DATABASE, SERVER

KEYS = ("pg_auth_per_s_1", "pg_auth_per_s_2", "pg_auth_p99_ms_2", "sqlite_auth_per_s")


def _schemas() -> set[str]:
    with connect(f"{SERVER}/{DATABASE}", autocommit=True) as conn:
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'clearance_bench_%'"
        )
        return {str(row[0]) for row in rows}


def _bench(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *(sys.executable, "-m", "clearance", "bench", "--http"),
            *("--requests", "120", "--clients", "4", *extra),
        ],
        cwd=tmp_path,
        env={
            k: v for k, v in os.environ.items() if k not in ("CLEARANCE_HOME", "CLEARANCE_DATABASE")
        },
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_the_bench_compares_sqlite_and_one_and_two_gateways(tmp_path: Path, pg_url: str) -> None:
    # pg_url: the test database exists (the bench makes its own scratch schemas in it).
    before = _schemas()
    result = _bench(tmp_path, "--json", "--database", f"{SERVER}/{DATABASE}")
    assert result.returncode == 0, result.stderr
    numbers = json.loads(result.stdout.strip().splitlines()[-1])
    for key in KEYS:
        assert numbers[key] > 0, key
    assert numbers["http_errors"] == 0
    assert numbers["pg_scaling_2_over_1"] == round(
        numbers["pg_auth_per_s_2"] / numbers["pg_auth_per_s_1"], 2
    )
    # Where the machine's CPU time is readable (here: Linux), each phase says how many
    # cores were busy and what an authorization cost; the bound follows from those.
    cores = os.cpu_count() or 1
    for gateways in (1, 2):
        busy = numbers[f"pg_auth_busy_cores_{gateways}"]
        assert 0 < busy <= cores
        assert numbers[f"pg_cpu_us_per_auth_{gateways}"] == round(
            busy / numbers[f"pg_auth_per_s_{gateways}"] * 1e6
        )
    assert numbers["pg_scaling_bound_2"] == round(
        cores * 1e6 / numbers["pg_cpu_us_per_auth_2"] / numbers["pg_auth_per_s_1"], 2
    )
    assert _schemas() == before  # the scratch schemas are gone
    assert list(tmp_path.iterdir()) == []


def test_the_table_and_a_database_without_http(tmp_path: Path, pg_url: str) -> None:
    table = _bench(tmp_path, "--database", f"{SERVER}/{DATABASE}")
    assert table.returncode == 0, table.stderr
    assert "2 gateways / 1 gateway" in table.stdout
    assert "on this machine:" in table.stdout
    refused = subprocess.run(
        [sys.executable, "-m", "clearance", "bench", "--database", f"{SERVER}/{DATABASE}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2
    assert "needs --http" in refused.stderr
