"""Measurements of the SQLite ledger, for ``clearance bench`` and the design notes.

Every function returns plain dicts of numbers: the median of ``repeats`` runs
(each run on a fresh ledger file unless stated), with sizes as parameters so tests
can call them small. Wall-clock time is read here, at the outermost layer.

What is measured:

* :func:`bench_appends` — appends per second with 1 and with 8 writer threads, in
  both durability modes. Each append builds and canonicalises a realistic
  decision-like entry (about 1 KiB of canonical JSON, the shape of
  :func:`clearance._internal.entries.decision_entry`), as the gate does.
* :func:`bench_proofs` — p50 latency of inclusion and consistency proof generation
  at growing log sizes (10^4, 10^5, 10^6 by default). The log is grown once, in
  place, with :func:`bulk_load`.
* :func:`bench_verify` — the time :func:`clearance._internal.ledger.audit.verify` takes over a
  whole log.

:func:`bulk_load` is the benchmark's only shortcut: it appends small entries through
the ordinary :meth:`SQLiteLedger.append_many` in large batches (one transaction per
batch), so a 10^6-entry log builds in seconds rather than minutes.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from clearance._internal.ledger.audit import verify
from clearance._internal.ledger.checkpoint import NoteSigner
from clearance._internal.ledger.sqlite import SQLiteLedger
from clearance._internal.limits import Durability
from clearance.errors import LedgerError

BENCH_ORIGIN = "bench.clearance.invalid/log"
"""The origin (and key name) of benchmark ledgers."""


def decision_like(i: int) -> dict[str, Any]:
    """A decision-shaped entry about as large as the gate writes (about 1 KiB canonical)."""
    rid = f"{i:08x}-5f0c-4a8e-9d1b-{i * 7919 % 10**12:012d}"
    trace = f"tr-{i // 8:08x}"
    return {
        "type": "decision",
        "v": 1,
        "at": "2026-11-28T10:00:00.123456Z",
        "request_id": rid,
        "trace_id": trace,
        "parent_id": None,
        "parent_index": None,
        "intent": {
            "principal": "agent:billing-bot",
            "action": "refund_payment",
            "resource": f"order:A-{i}",
            "args": {
                "amount": 150,
                "currency": "USD",
                "order": f"A-{i}",
                "note": "customer requested a refund for a damaged item",
            },
            "purpose": "customer support refund",
            "trace_id": trace,
            "parent_id": None,
            "input": {"ticket": f"T-{i}"},
        },
        "intent_digest": "sha256:" + f"{i:064x}",
        "redacted": False,
        "principal_attrs": {"team": "billing", "tier": "gold", "roles": ["refunds", "support"]},
        "facts": {
            "trace": {
                "id": trace,
                "depth": 1,
                "count": 3,
                "actions": ["lookup_order", "refund_payment"],
                "untrusted": False,
                "totals": {"refund_payment": 150},
            }
        },
        "now": "2026-11-28T10:00:00.123456Z",
        "effect": "allow",
        "reasons": ["refund-small"],
        "policy_digest": "sha256:" + "cd" * 32,
        "untrusted_output": False,
        "grant": {"jti": f"g-{rid}", "exp": "2026-11-28T10:01:00Z", "kid": "k1"},
        "approval_id": None,
    }


def open_bench_ledger(
    path: Path, durability: Durability = "relaxed", signer: NoteSigner | None = None
) -> SQLiteLedger:
    """A ledger at ``path`` (signed by ``signer``, or a fresh key), for benchmarks."""
    return SQLiteLedger.open(
        path,
        signer=signer or NoteSigner.generate(BENCH_ORIGIN),
        origin=BENCH_ORIGIN,
        durability=durability,
    )


def small_entry(i: int) -> dict[str, Any]:
    """The smallest valid entry (about 90 bytes), for building large logs quickly."""
    return {"type": "execution", "v": 1, "at": "2026-11-28T10:00:00Z", "request_id": f"b{i}"}


def bulk_load(
    store: SQLiteLedger,
    count: int,
    *,
    batch: int = 20_000,
    make: Callable[[int], dict[str, Any]] = small_entry,
) -> None:
    """Append ``count`` entries ``make(i)`` in batches of ``batch`` (one commit each)."""
    done = 0
    while done < count:
        n = min(batch, count - done)
        base = store.size()
        store.append_many([make(i) for i in range(base, base + n)])
        done += n


def _append_run(path: Path, durability: Durability, writers: int, count: int) -> dict[str, float]:
    """One run: ``writers`` threads append ``count`` entries in total to a new ledger."""
    store = open_bench_ledger(path, durability)
    try:
        per_thread = count // writers
        commits_before = store.commits
        barrier = threading.Barrier(writers + 1)

        def work(offset: int) -> None:
            """Append this thread's share of the entries."""
            barrier.wait()
            for i in range(offset, offset + per_thread):
                store.append(decision_like(i))

        threads = [threading.Thread(target=work, args=(w * per_thread,)) for w in range(writers)]
        for thread in threads:
            thread.start()
        barrier.wait()
        start = time.perf_counter()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - start
        appended = per_thread * writers
        if store.size() != appended:
            raise LedgerError(f"benchmark lost appends: {store.size()} != {appended}")
        return {
            "appends_per_s": appended / elapsed,
            "entries_per_commit": appended / max(1, store.commits - commits_before),
        }
    finally:
        store.close()


def bench_batched_appends(
    directory: Path,
    *,
    count: int = 20_000,
    batch: int = 100,
    modes: Sequence[Durability] = ("durable", "relaxed"),
    repeats: int = 3,
) -> dict[str, float]:
    """Appends/s of one writer using ``append_many`` batches, keyed by mode (medians).

    Each entry is built (:func:`decision_like`) and canonicalised inside the timed
    loop, so this is the end-to-end rate of a producer that batches its entries.
    """
    results: dict[str, float] = {}
    for mode in modes:
        rates = []
        for run in range(repeats):
            store = open_bench_ledger(directory / f"batched-{mode}-{run}.db", mode)
            try:
                start = time.perf_counter()
                for first in range(0, count, batch):
                    store.append_many([decision_like(i) for i in range(first, first + batch)])
                rates.append(count / (time.perf_counter() - start))
            finally:
                store.close()
        results[mode] = statistics.median(rates)
    return results


def bench_appends(
    directory: Path,
    *,
    count: int = 4000,
    writers: Sequence[int] = (1, 8),
    modes: Sequence[Durability] = ("durable", "relaxed"),
    repeats: int = 3,
) -> dict[str, dict[str, float]]:
    """Appends/s keyed ``"<mode>/<writers>w"``.

    Each value holds the medians of ``appends_per_s`` and ``entries_per_commit``.
    """
    results: dict[str, dict[str, float]] = {}
    run = 0
    for mode in modes:
        for n in writers:
            runs = []
            for _ in range(repeats):
                run += 1
                runs.append(_append_run(directory / f"appends-{run}.db", mode, n, count))
            results[f"{mode}/{n}w"] = {
                key: statistics.median(r[key] for r in runs) for key in runs[0]
            }
    return results


def _p50_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000.0


def bench_proofs(
    directory: Path,
    *,
    sizes: Sequence[int] = (10**4, 10**5, 10**6),
    samples: int = 300,
    seed: int = 1,
    signer: NoteSigner | None = None,
) -> dict[int, dict[str, float]]:
    """Per size: p50 milliseconds of ``inclusion_proof`` and ``consistency_proof``.

    The log (``directory / "proofs.db"``, left in place) grows from one size to the
    next; proofs are for random leaves (inclusion) and random earlier sizes
    (consistency) against the full tree.
    """
    rng = random.Random(seed)  # noqa: S311 - picks benchmark samples, not secrets
    results: dict[int, dict[str, float]] = {}
    store = open_bench_ledger(directory / "proofs.db", signer=signer)
    try:
        for size in sorted(sizes):
            load_start = time.perf_counter()
            bulk_load(store, size - store.size())
            load_s = time.perf_counter() - load_start
            inclusion, consistency = [], []
            for _ in range(samples):
                index = rng.randrange(size)
                start = time.perf_counter()
                store.inclusion_proof(index, size)
                inclusion.append(time.perf_counter() - start)
                old = rng.randrange(1, size)
                start = time.perf_counter()
                store.consistency_proof(old, size)
                consistency.append(time.perf_counter() - start)
            results[size] = {
                "inclusion_p50_ms": _p50_ms(inclusion),
                "consistency_p50_ms": _p50_ms(consistency),
                "load_s": load_s,
            }
    finally:
        store.close()
    return results


def bench_verify(
    directory: Path, *, size: int = 10**6, repeats: int = 1, decisions: bool = False
) -> dict[str, float]:
    """Seconds :func:`~clearance._internal.ledger.audit.verify` takes over a ``size``-entry log
    (median).

    The log holds :func:`small_entry` entries, or :func:`decision_like` ones (about
    1 KiB each, slower to check) when ``decisions`` is set.
    """
    path = directory / ("verify-decisions.db" if decisions else "verify.db")
    store = open_bench_ledger(path)
    try:
        load_start = time.perf_counter()
        make = decision_like if decisions else small_entry
        bulk_load(store, size - store.size(), batch=5000 if decisions else 20_000, make=make)
        load_s = time.perf_counter() - load_start
        vkey = store.vkey
    finally:
        store.close()
    return {**time_verify(path, vkey, repeats=repeats), "load_s": load_s}


def time_verify(path: Path, vkey: str, *, repeats: int = 1) -> dict[str, float]:
    """Median seconds :func:`~clearance._internal.ledger.audit.verify` takes over the ledger
    at ``path``."""
    runs = []
    size = 0
    for _ in range(repeats):
        start = time.perf_counter()
        report = verify(path, vkey=vkey)
        runs.append(time.perf_counter() - start)
        if not report.ok:
            raise LedgerError(f"benchmark ledger failed verification: {report.message}")
        size = report.size
    seconds = statistics.median(runs)
    return {"entries": float(size), "seconds": seconds, "entries_per_s": size / seconds}


def bench_all(
    directory: Path,
    *,
    append_count: int = 4000,
    sizes: Sequence[int] = (10**4, 10**5, 10**6),
    samples: int = 300,
    repeats: int = 3,
) -> dict[str, Any]:
    """Every measurement above; the verify timing reuses the largest proof log."""
    signer = NoteSigner.generate(BENCH_ORIGIN)
    return {
        "appends": bench_appends(directory, count=append_count, repeats=repeats),
        "proofs": bench_proofs(directory, sizes=sizes, samples=samples, signer=signer),
        "verify": time_verify(directory / "proofs.db", signer.vkey()),
    }
