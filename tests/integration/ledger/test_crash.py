"""Crash safety: an acknowledged append survives SIGKILL of the writing process.

A child process (``crash_child.py``) appends from four threads and prints every
index as soon as ``append`` returns; the parent kills it with SIGKILL at a random
moment, reopens the ledger and checks that every acknowledged entry is present with
its content, that the whole log verifies, and that appends continue. ``deferred``
is durable mode with half the appends made with a deferred fsync (outcomes): they
too survive SIGKILL. Rounds per mode: ``CLEARANCE_CRASH_ROUNDS`` (default 20).
"""

from __future__ import annotations

import os
import random
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clearance._internal.ledger.audit import verify
from clearance._internal.ledger.checkpoint import NoteSigner

from .crash_child import ORIGIN, crash_entry
from .support import open_ledger

CHILD = Path(__file__).with_name("crash_child.py")
ROUNDS = int(os.environ.get("CLEARANCE_CRASH_ROUNDS", "20"))


def _run_and_kill(
    path: Path, durability: str, tag: str, signer: NoteSigner, rng: random.Random
) -> list[tuple[int, str]]:
    """Start a child, kill it at a random moment, return the acknowledgements it printed."""
    env = {**os.environ, "CLEARANCE_TEST_SKEY": signer.skey()}
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(path), durability, tag],
        stdout=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    try:
        if rng.random() < 0.2:
            time.sleep(rng.uniform(0.0, 0.3))  # possibly while it is still opening the file
        else:
            with selectors.DefaultSelector() as sel:
                sel.register(proc.stdout, selectors.EVENT_READ)
                if not sel.select(timeout=30):
                    pytest.fail("the child acknowledged nothing within 30 s")
            time.sleep(rng.uniform(0.0, 0.12))
        proc.send_signal(signal.SIGKILL)
        output = proc.stdout.read()
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    acks = []
    for line in output.decode().split("\n")[:-1]:  # the last piece is empty or cut short
        index, rid = line.split(" ")
        acks.append((int(index), rid))
    return acks


@pytest.mark.slow
@pytest.mark.parametrize("durability", ["durable", "relaxed", "deferred"])
def test_acknowledged_appends_survive_sigkill(tmp_path: Path, durability: str) -> None:
    path = tmp_path / "ledger.db"
    signer = NoteSigner.generate(ORIGIN)
    rng = random.Random(f"crash-{durability}")
    acknowledged: dict[int, str] = {}
    for round_no in range(ROUNDS):
        for index, rid in _run_and_kill(path, durability, f"r{round_no}", signer, rng):
            assert index not in acknowledged, f"index {index} was handed out twice"
            acknowledged[index] = rid

        with open_ledger(path, signer) as store:
            size = store.size()
            assert max(acknowledged, default=-1) < size
            for stored in store.scan():
                if stored.index in acknowledged:
                    assert stored.entry == crash_entry(acknowledged[stored.index])
            report = verify(store)
            assert report.ok, report.message
            assert report.size == size
            assert store.append(crash_entry(f"parent-{round_no}")) == size
            acknowledged[size] = f"parent-{round_no}"
    assert len(acknowledged) > ROUNDS  # the children did acknowledge appends
