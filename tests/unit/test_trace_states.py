"""Trace states of a shared store: never cached, and locked in the store too."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from clearance._internal.gate.traces import TraceStates, states_for


class _SharedStore:
    """The two members a shared ledger store offers the gate."""

    shared = True

    def __init__(self) -> None:
        self.held: list[str] = []
        self.events: list[str] = []

    @contextmanager
    def trace_lock(self, trace_id: str) -> Iterator[None]:
        self.held.append(trace_id)
        self.events.append(f"lock {trace_id}")
        try:
            yield
        finally:
            self.events.append(f"unlock {trace_id}")
            self.held.remove(trace_id)


def test_a_shared_store_is_locked_per_trace_and_never_cached() -> None:
    store = _SharedStore()
    states = states_for(store)
    assert not states.caching
    with states.lock("t1"):
        assert store.held == ["t1"]
        states.put("t1", 0, {"count": 1})
    assert store.held == []
    assert states.get("t1", 0) is None
    assert store.events == ["lock t1", "unlock t1"]


def test_the_store_lock_is_released_when_the_decision_fails() -> None:
    store = _SharedStore()
    states = TraceStates(store_lock=store.trace_lock)
    with pytest.raises(RuntimeError), states.lock("t2"):
        raise RuntimeError("append failed")
    assert store.held == []


def test_a_local_store_caches_and_takes_no_store_lock() -> None:
    states = TraceStates()
    assert states.caching
    with states.lock("t1"):
        states.put("t1", 3, {"count": 1})
    assert states.get("t1", 3) == {"count": 1}
    assert states.get("t1", 4) is None  # another writer appended: stale


def test_a_shared_store_without_a_trace_lock_is_refused() -> None:
    class Broken:
        shared = True

    with pytest.raises(TypeError, match="no trace_lock"):
        states_for(Broken())


def test_threads_of_one_process_are_still_serialized_per_trace() -> None:
    states = TraceStates(store_lock=_SharedStore().trace_lock)
    inside = 0
    peak = 0
    guard = threading.Lock()

    def decide() -> None:
        nonlocal inside, peak
        with states.lock("same"):
            with guard:
                inside += 1
                peak = max(peak, inside)
            threading.Event().wait(0.002)
            with guard:
                inside -= 1

    threads = [threading.Thread(target=decide) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak == 1


def test_a_fresh_trace_takes_no_store_lock() -> None:
    store = _SharedStore()
    states = TraceStates(store_lock=store.trace_lock)
    with states.lock("minted-here", fresh=True):
        assert store.held == []
    with states.lock("minted-here"):
        assert store.held == ["minted-here"]
