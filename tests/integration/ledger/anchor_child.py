"""Child process for the tamper battery: leave entries no checkpoint covers, then get killed.

Usage: ``python anchor_child.py HOME COUNT AGE``. Opens the home's ledger with its
anchor, witnesses and grace exactly as :func:`clearance._internal.wiring.open_ledger` does, but
with an hour-long checkpoint interval, so that after the first append (which a store
always signs at once) nothing else is signed or anchored. It appends one entry dated
now, then ``COUNT`` entries dated ``AGE`` seconds ago, prints ``ready`` and sleeps
until the parent kills it with SIGKILL: a crashed writer.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from clearance._internal.entries import timestamp
from clearance._internal.home import Home
from clearance._internal.ledger.anchor import CheckpointAnchor
from clearance._internal.ledger.checkpoint import NoteSigner
from clearance._internal.ledger.sqlite import SQLiteLedger


def uncovered_entry(i: int, at: float) -> dict[str, Any]:
    """An execution entry the child appends (request id ``crash-<i>``)."""
    return {
        "type": "execution",
        "v": 1,
        "at": timestamp(at),
        "request_id": f"crash-{i}",
        "trace_id": "t-crash",
        "status": "ok",
    }


def main(home_path: str, count: str, age: str) -> None:
    home = Home.load(Path(home_path))
    store = SQLiteLedger.open(
        home.ledger_path,
        signer=NoteSigner.from_skey(home.read_log_skey()),
        origin=home.settings.origin,
        durability=home.settings.durability,
        checkpoint_interval=3600,
        anchor=CheckpointAnchor.for_home(
            home.anchor_dir, home.witness_dirs, origin=home.settings.origin
        ),
        grace=home.settings.checkpoint_grace,
        clock=time.time,
    )
    now = time.time()
    store.append(uncovered_entry(0, now))  # signed at once: the store's first commit
    store.append_many([uncovered_entry(i, now - float(age)) for i in range(1, int(count) + 1)])
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    time.sleep(3600)


if __name__ == "__main__":
    main(*sys.argv[1:4])
