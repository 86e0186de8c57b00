"""One fsync on a durable governed call's critical path: the decision's (issue 14).

The outcome is appended with a deferred fsync (:mod:`clearance._internal.ledger.sqlite`):
committed before the call returns, fsynced by the next decision or checkpoint. These
tests count the fsync-family system calls a real process makes, with ``strace``, and
check that deferred outcomes are in the log after the process exits.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clearance import open_gate
from clearance._internal.home import Home
from clearance._internal.ledger.audit import verify
from clearance._internal.wiring import open_ledger

CHILD = """
import os, sys, time
from pathlib import Path
import clearance

home = Path(sys.argv[1])
calls = int(sys.argv[2])
durability = sys.argv[3]
clearance.init_home(home, now=time.time())
settings = home / "clearance.yaml"
# No checkpoint during the measured calls: the ticker's fsyncs are not the caller's.
settings.write_text(settings.read_text() + "\\nlimits:\\n  checkpoint_interval: 60\\n")
intent = {"action": "read_file", "resource": "file:r", "args": {"path": "reports/q1.txt"}}

def mark(name):
    try:
        os.stat(f"/nonexistent-clearance-{name}")
    except FileNotFoundError:
        pass

with clearance.open_gate(home, principal="agent:ops-bot", durability=durability) as gate:
    with gate.trace("read the quarterly reports"):
        for _ in range(3):  # warm up: policy, key and trace entries
            with gate.clearance(intent) as cleared:
                cleared.record_result({"bytes": 1})
        mark("start")
        for _ in range(calls):
            with gate.clearance(intent) as cleared:
                cleared.record_result({"bytes": 1})
        mark("end")
        if len(sys.argv) > 4:  # "hard-exit": no close, no final checkpoint
            os._exit(0)
"""

needs_strace = pytest.mark.skipif(
    shutil.which("strace") is None, reason="strace is not installed (Debian package strace)"
)


def _fsyncs_between_marks(trace: str, *, thread: str | None = None) -> int:
    """fsync-family calls between the child's marks, by every thread or by ``thread`` only."""
    inside, count = False, 0
    for line in trace.splitlines():
        if "clearance-start" in line:
            inside = True
        elif "clearance-end" in line:
            inside = False
        elif inside and re.search(r"\b(fsync|fdatasync|sync_file_range)\(", line):
            count += thread is None or line.split(maxsplit=1)[0] == thread
    return count


def _strace_child(tmp_path: Path, calls: int, durability: str) -> str:
    """Run the child under ``strace -f``; the trace, each line led by its thread id."""
    trace_file = tmp_path / "strace.txt"
    subprocess.run(
        [
            "strace",
            "-f",
            "-e",
            "trace=fsync,fdatasync,sync_file_range,newfstatat,stat",
            "-o",
            str(trace_file),
            sys.executable,
            "-c",
            CHILD,
            str(tmp_path / "home"),
            str(calls),
            durability,
        ],
        check=True,
        timeout=300,
    )
    return trace_file.read_text()


@needs_strace
@pytest.mark.parametrize(("durability", "fsyncs_per_call"), [("durable", 1), ("relaxed", 0)])
def test_fsyncs_on_a_governed_calls_path(
    tmp_path: Path, durability: str, fsyncs_per_call: int
) -> None:
    """Durable: exactly the decision's fsync per call. Relaxed: none."""
    calls = 12
    trace = _strace_child(tmp_path, calls, durability)
    assert _fsyncs_between_marks(trace) == calls * fsyncs_per_call, trace[
        trace.find("clearance-start") :
    ]

    with open_gate(tmp_path / "home", principal="agent:ops-bot") as gate:
        kinds = [stored.entry["type"] for stored in gate.ledger.scan()]
        assert kinds.count("execution") == calls + 3  # every deferred outcome is in the log
    assert verify(Home.load(tmp_path / "home").ledger_path).ok


@needs_strace
def test_relaxed_callers_leave_wal_checkpoints_to_the_stores_thread(tmp_path: Path) -> None:
    """Past SQLite's automatic checkpoint (1,000 pages of log, about 250 rows) many times
    over, the calling thread makes only the small fsync of the log's header after each
    rewind (SQLite's own, once per CHECKPOINT_EVERY_ROWS); the checkpoints and their
    fsyncs run on the store's thread (clearance._internal.sqlite_wal). With SQLite's
    automatic checkpoint on the caller's thread, these calls made 36 fsyncs there."""
    calls = 1500
    rows = 2 * calls  # a decision and an outcome per call: about 12,000 pages of log
    trace = _strace_child(tmp_path, calls, "relaxed")
    main_thread = trace.split(maxsplit=1)[0]
    assert _fsyncs_between_marks(trace, thread=main_thread) <= rows // 250
    assert _fsyncs_between_marks(trace) > _fsyncs_between_marks(trace, thread=main_thread)
    assert verify(Home.load(tmp_path / "home").ledger_path).ok


def test_deferred_outcomes_survive_the_process(tmp_path: Path) -> None:
    """Without strace: the child exits right after its last call (no close, no checkpoint)."""
    subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "home"), "5", "durable", "hard-exit"],
        check=True,
        timeout=120,
    )
    home = tmp_path / "home"
    with open_ledger(Home.load(home)) as ledger:
        entries = [stored.entry for stored in ledger.scan()]
    executions = [e for e in entries if e["type"] == "execution"]
    decisions = [e for e in entries if e["type"] == "decision"]
    assert len(executions) == len(decisions) == 8
    assert {e["request_id"] for e in executions} == {e["request_id"] for e in decisions}
