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
    assert "ledger_verify_s_1e6" not in numbers  # the 10^6 runs are skipped with --quick
    assert list(tmp_path.iterdir()) == []  # everything ran in a temporary home
