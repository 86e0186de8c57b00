"""Child process for test_crash: append as fast as possible, acknowledging each index.

Usage: ``python crash_child.py LEDGER DURABILITY TAG`` (DURABILITY ``durable``,
``relaxed``, or ``deferred``: durable, with every other append made with a deferred
fsync, ``append(entry, sync=False)``, as the gate records outcomes) with the log's signer key in
the ``CLEARANCE_TEST_SKEY`` environment variable. Four threads append entries built
by :func:`crash_entry`; after each append returns, the thread writes
``<index> <request id>`` on its own line to stdout and flushes. The parent kills the
process with SIGKILL at a random moment and checks every acknowledged line.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any

from clearance._internal.ledger.checkpoint import NoteSigner
from clearance._internal.ledger.sqlite import SQLiteLedger
from clearance._internal.limits import Durability

ORIGIN = "ledger.test.example/log"
WRITERS = 4


def crash_entry(request_id: str) -> dict[str, Any]:
    """The entry the child appends for ``request_id`` (the parent rebuilds it to compare)."""
    return {
        "type": "execution",
        "v": 1,
        "at": "2026-11-28T10:00:00.000000Z",
        "request_id": request_id,
        "status": "ok",
        "detail": request_id * 3,
    }


def main(path: str, durability: str, tag: str) -> None:
    signer = NoteSigner.from_skey(os.environ["CLEARANCE_TEST_SKEY"])
    mode: Durability = "relaxed" if durability == "relaxed" else "durable"
    deferring = durability == "deferred"
    store = SQLiteLedger.open(
        Path(path), signer=signer, origin=ORIGIN, durability=mode, checkpoint_interval=0.02
    )
    lock = threading.Lock()
    out = sys.stdout

    def work(writer: int) -> None:
        k = 0
        while True:
            rid = f"{tag}-{writer}-{k}"
            index = store.append(crash_entry(rid), sync=not (deferring and k % 2))
            with lock:
                out.write(f"{index} {rid}\n")
                out.flush()
            k += 1

    threads = [threading.Thread(target=work, args=(w,), daemon=True) for w in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main(*sys.argv[1:4])
