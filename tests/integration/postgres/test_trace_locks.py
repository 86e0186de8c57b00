"""Per-trace advisory locks: one holder per trace across connections (and processes)."""

from __future__ import annotations

import threading
import time

import pytest

from clearance._internal.ledger.postgres_locks import TraceLocks, trace_key
from clearance._internal.postgres import open_pool
from clearance.errors import LedgerError


def test_keys_are_stable_signed_64_bit_integers() -> None:
    assert trace_key("t1") == trace_key("t1")
    assert trace_key("t1") != trace_key("t2")
    assert -(2**63) <= trace_key("t1") < 2**63


def test_a_trace_has_one_holder_across_pools(pg_url: str) -> None:
    first, second = open_pool(pg_url, max_size=2), open_pool(pg_url, max_size=2)
    try:
        a, b = TraceLocks(first, pg_url), TraceLocks(second, pg_url, timeout=0.3)
        with a.hold("trace-1"):
            with pytest.raises(LedgerError, match="could not be taken"), b.hold("trace-1"):
                pass
            with b.hold("trace-2"):  # other traces are not held up
                pass
        with b.hold("trace-1"):  # released
            pass
    finally:
        first.close()
        second.close()


def test_waiters_run_one_at_a_time(pg_url: str) -> None:
    pools = [open_pool(pg_url, max_size=1) for _ in range(4)]
    inside, peak = 0, 0
    guard = threading.Lock()

    def work(locks: TraceLocks) -> None:
        nonlocal inside, peak
        for _ in range(5):
            with locks.hold("busy"):
                with guard:
                    inside += 1
                    peak = max(peak, inside)
                time.sleep(0.002)
                with guard:
                    inside -= 1

    try:
        threads = [threading.Thread(target=work, args=(TraceLocks(p, pg_url),)) for p in pools]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for pool in pools:
            pool.close()
    assert peak == 1


def test_the_lock_is_released_when_the_body_fails(pg_url: str) -> None:
    pool = open_pool(pg_url, max_size=1)
    try:
        locks = TraceLocks(pool, pg_url, timeout=0.3)
        with pytest.raises(RuntimeError), locks.hold("t"):
            raise RuntimeError("decision failed")
        with locks.hold("t"):
            pass
    finally:
        pool.close()
