"""The floor of a relaxed governed call: what no implementation of the contract can skip.

A relaxed governed call must, before its body runs, compute the intent's digest
(RFC 8785 + SHA-256), evaluate the policy, and commit the decision entry to the log
(docs/design.md §5, §7). :func:`sqlite_insert_baseline` times the last of these bare: one
``INSERT`` of a decision-sized row into a table with the ledger's schema and indexes,
committed in WAL mode with ``synchronous = NORMAL``, with none of the ledger's own
code around it. ``clearance bench`` adds the medians of the digest and evaluation
phases measured inside real calls (the phase breakdown) and reports the sum as
``floor_p50_us_relaxed``: with the yardstick it says how much of a target such as
"p50 ≤ 0.5× one Ed25519 sign + verify" is left for everything else (ids, trace facts,
entry building, Merkle hashes, the outcome entry, the interpreter).
"""

from __future__ import annotations

import hashlib
import sqlite3
import statistics
import time
from pathlib import Path

from clearance._internal.ledger.sqlite_db import SCHEMA

DECISION_BYTES = 1100
"""About the size of the example bundle's decision entry in canonical form."""


def sqlite_insert_baseline(directory: Path, iterations: int) -> float:
    """p50 µs of one bare INSERT + commit of a decision-sized ledger row (relaxed).

    Measured in ``directory`` (the bench's file system) on a new file that is removed
    afterwards; the first tenth of the samples warm the page cache and are dropped.
    """
    if iterations < 10:
        raise ValueError("iterations must be at least 10")
    path = directory / "floor-probe.db"
    conn = sqlite3.connect(str(path), isolation_level=None)
    samples: list[int] = []
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        for statement in SCHEMA:
            conn.execute(statement)
        leaf = b"\x5a" * DECISION_BYTES
        insert = "INSERT INTO entries (idx, hashes, type, ref, trace_id, leaf) VALUES (?,?,?,?,?,?)"
        for idx in range(iterations):
            row = (idx, hashlib.sha256(leaf).digest(), "decision", f"r{idx:x}", f"t{idx:x}", leaf)
            started = time.perf_counter_ns()
            conn.execute(insert, row)
            samples.append(time.perf_counter_ns() - started)
    finally:
        conn.close()
        for suffix in ("", "-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
    return round(statistics.median(samples[iterations // 10 :]) / 1000, 1)
