"""A second home joins a PostgreSQL log: refused until its operator adopts the log."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clearance import open_gate
from clearance._internal.home import DATABASE_ENV, Home, init_home
from clearance._internal.wiring import open_ledger
from clearance.errors import TamperError


def _clearance(*args: str, database: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clearance", "--database", database, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={k: v for k, v in os.environ.items() if k != DATABASE_ENV},
    )


def test_a_new_home_on_an_existing_log_needs_adoption(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATABASE_ENV, pg_url)
    first = tmp_path / "first"
    init_home(first, now=time.time())
    _read_once(first, "reports/a.txt")
    second = tmp_path / "second"
    shutil.copytree(first, second)
    shutil.rmtree(second / "checkpoints")  # a home made before the log had checkpoints
    with pytest.raises(TamperError, match="anchor"):
        open_ledger(Home.load(second))
    verified = _clearance("log", "verify", "--home", str(first), database=pg_url)
    assert verified.returncode == 0, verified.stderr
    adopted = _clearance("log", "anchor", "--adopt", "--home", str(second), database=pg_url)
    assert adopted.returncode == 0, adopted.stderr
    assert "Adopted" in adopted.stdout
    assert "postgresql://" in adopted.stdout
    _read_once(second, "reports/b.txt")
    with open_ledger(Home.load(first)) as ledger:  # the first home still opens: one log
        assert sum(1 for s in ledger.scan() if s.entry["type"] == "decision") == 2


def _read_once(home: Path, path: str) -> None:
    """One governed read through a gate on ``home``."""
    gate = open_gate(home, principal="agent:ops-bot")
    try:
        with gate.clearance({"action": "read_file", "args": {"path": path}}):
            pass
    finally:
        gate.close()
