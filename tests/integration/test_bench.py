"""`clearance bench --json --quick`: one JSON object with the documented keys, no timing asserts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REQUIRED = (
    "decision_p50_us",
    "decision_p99_us",
    "governed_p50_us_durable",
    "governed_p99_us_durable",
    "governed_per_s_durable",
    "governed_p50_us_relaxed",
    "governed_p99_us_relaxed",
    "governed_per_s_relaxed",
    "ledger_appends_per_s_durable_1w",
    "ledger_appends_per_s_durable_8w",
    "ledger_appends_per_s_relaxed_1w",
    "ledger_appends_per_s_relaxed_8w",
    "ledger_inclusion_p50_ms_1e4",
    "ledger_inclusion_p50_ms_1e5",
    "phase_evaluation_us_relaxed",
    "executor_p50_us_relaxed",
    "phase_decision_append_us_durable",
    "phase_total_us_relaxed",
    "fsync_p50_us",
    "governed_durable_over_fsync",
    "sqlite_insert_p50_us",
    "floor_p50_us_relaxed",
    "floor_over_crypto_relaxed",
    "governed_over_floor_relaxed",
)


@pytest.mark.timeout(90)
def test_bench_quick_json(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CLEARANCE_HOME"}
    result = subprocess.run(
        [sys.executable, "-m", "clearance", "bench", "--json", "--quick"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1  # exactly one JSON object, nothing else on stdout
    numbers = json.loads(lines[0])
    for key in REQUIRED:
        value = numbers[key]
        assert isinstance(value, int | float), key
        assert not isinstance(value, bool), key
        assert value > 0, key
    assert numbers["quick"] is True
    # The floor is the sum of what a relaxed call cannot skip, each measured in this run.
    assert numbers["floor_p50_us_relaxed"] == round(
        numbers["phase_intent_digest_us_relaxed"]
        + numbers["phase_evaluation_us_relaxed"]
        + numbers["sqlite_insert_p50_us"],
        1,
    )
    assert "ledger_verify_s_1e6" not in numbers  # the 10^6 runs are skipped with --quick
    assert list(tmp_path.iterdir()) == []  # everything ran in a temporary home


HTTP_REQUIRED = (
    "http_auth_per_s",
    "http_auth_p50_ms",
    "http_auth_p99_ms",
    "http_exec_per_s",
    "http_exec_p50_ms",
    "http_exec_p99_ms",
    "http_floor_per_s",
)


@pytest.mark.timeout(120)
def test_bench_http_drives_a_real_server(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CLEARANCE_HOME"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "clearance",
            "bench",
            "--http",
            "--json",
            "--requests",
            "300",
            "--clients",
            "8",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.strip().splitlines()
    numbers = json.loads(line)
    for key in HTTP_REQUIRED:
        assert numbers[key] > 0, key
    # Every authorization was allowed with a grant and every grant reported once.
    assert numbers["http_errors"] == numbers["http_auth_errors"] == numbers["http_exec_errors"] == 0
    assert numbers["http_requests"] == 300
    for phase in ("http_auth", "http_exec", "http_floor"):
        assert 0 < numbers[f"{phase}_busy_cores"] <= (os.cpu_count() or 1), phase
    assert list(tmp_path.iterdir()) == []


@pytest.mark.timeout(120)
def test_bench_http_prints_its_table(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CLEARANCE_HOME"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "clearance",
            "bench",
            "--http",
            "--requests",
            "60",
            "--clients",
            "4",
        ],
        cwd=tmp_path,
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for row in ("POST /v1/authorize", "POST /v1/executions", "GET /healthz", "busy cores"):
        assert row in result.stdout, row
    assert "60 authorizations, then 60 outcome reports, 4 concurrent clients" in result.stderr
