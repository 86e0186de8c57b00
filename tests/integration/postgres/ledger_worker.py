"""One process appending to a PostgreSQL ledger from several threads (for the ledger tests).

``python -m tests.integration.postgres.ledger_worker URL SKEY THREADS PER_THREAD TAG OUT``
opens the log with the signer key ``SKEY``, waits until ``OUT.go`` exists (so every
worker starts appending together), appends ``THREADS * PER_THREAD`` entries whose
``request_id`` is ``TAG-thread-k``, closes the store (signing a final checkpoint) and
writes ``{request_id: acknowledged index}`` to ``OUT`` as JSON.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from clearance._internal.ledger.checkpoint import NoteSigner
from clearance._internal.ledger.postgres import PostgresLedger
from tests.integration.ledger.support import ORIGIN, entry


def main(url: str, skey: str, threads: int, per_thread: int, tag: str, out: Path) -> None:
    store = PostgresLedger.open(
        url, signer=NoteSigner.from_skey(skey), origin=ORIGIN, checkpoint_interval=0.05
    )
    acked: dict[str, int] = {}
    guard = threading.Lock()

    def work(thread: int) -> None:
        for k in range(per_thread):
            request_id = f"{tag}-{thread}-{k}"
            index = store.append(entry(k, request_id=request_id))
            with guard:
                acked[request_id] = index

    go = out.with_suffix(".go")
    deadline = time.monotonic() + 30
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    store.close()
    out.write_text(json.dumps(acked))


if __name__ == "__main__":
    url, skey, threads, per_thread, tag, out = sys.argv[1:7]
    main(url, skey, int(threads), int(per_thread), tag, Path(out))
