"""Where a governed call runs: trace handles, the running request, and per-trace state.

Trace integrity (docs/design.md §3, fail-closed rule 11):

* A trace is opened only by trusted code, through :meth:`Gate.trace` or
  :meth:`Gate.open_trace`, which return a :class:`Trace` handle. The handle is a
  capability: a Python object the model never sees and cannot name. An intent is
  decided under a trace only when its handle is active in the running context
  (``with trace.active():``, or the ``with gate.trace(...)`` block) or passed
  explicitly (``gate.clearance(intent, trace=handle)``). A trace id written in an
  intent is only checked against that; it never selects a trace.
* The running governed call (:class:`RunningRequest`) is the parent of governed
  calls made inside its body; the caller never names a parent.
* Context variables follow asyncio tasks (each task starts with a copy of the
  context it was created in). Threads start with an empty context: hand work to a
  thread pool with :func:`carry` (or ``trace.bind(fn)``) so it keeps its trace.

Per-trace state (:class:`TraceStates`): decisions in one trace are serialized from
reading the facts to appending the decision (a per-trace lock), and the state after
each decision is cached so the next decision needs no ledger read. Appending a
trace's value fingerprints takes the same lock and updates the cached state's
``provenance_index`` (:mod:`clearance._internal.gate.provenance`). The cache is
keyed by the ledger store and checked against the store's ``generation``, which
changes whenever the store reloaded its tree from the file (another writer), so a
cached state is only used while this process has seen every append.

A *shared* store (``store.shared``: other processes append to the same log, as on
PostgreSQL) changes that: no trace state is cached, every decision reads the trace's
newest entries from the store, and the per-trace lock is also taken in the store
(``store.trace_lock(trace_id)``, a lock every process on the log honours) from reading
the facts to the decision's commit. So two gateways deciding in one trace see each
other's decisions exactly as two threads of one gate do: a cap cannot be spent twice.
"""

from __future__ import annotations

import contextvars
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Final, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class Trace:
    """A trace opened by trusted code with the human's mandate (see the module docstring).

    ``trace_id`` and ``mandate`` are informational; the handle itself is what grants
    the right to decide under the trace.
    """

    __slots__ = ("__weakref__", "_owner", "mandate", "trace_id")

    def __init__(self, trace_id: str, mandate: Mapping[str, Any], owner: object) -> None:
        self.trace_id = trace_id
        self.mandate = mandate
        self._owner = owner

    def owned_by(self, owner: object) -> bool:
        """True when this handle was opened by the gate whose private token is ``owner``."""
        return self._owner is owner

    @contextmanager
    def active(self) -> Iterator[Trace]:
        """Make this trace the active one in the current context for the ``with`` body."""
        token = _current_trace.set(self)
        try:
            yield self
        finally:
            _current_trace.reset(token)

    def bind(self, fn: Callable[P, R]) -> Callable[P, R]:
        """``fn`` wrapped to run with this trace active, wherever it is called (a thread pool)."""

        def run_in_trace(*args: P.args, **kwargs: P.kwargs) -> R:
            with self.active():
                return fn(*args, **kwargs)

        return run_in_trace

    def __repr__(self) -> str:
        return f"Trace({self.trace_id!r})"


@dataclass(frozen=True, slots=True)
class RunningRequest:
    """The governed call whose body is running: the parent of calls made inside it."""

    owner: object
    trace_id: str
    request_id: str
    decision_index: int
    depth: int


_current_trace: contextvars.ContextVar[Trace | None] = contextvars.ContextVar(
    "clearance_trace", default=None
)
_current_request: contextvars.ContextVar[RunningRequest | None] = contextvars.ContextVar(
    "clearance_request", default=None
)


def active_trace() -> Trace | None:
    """The trace handle active in the current context, if any."""
    return _current_trace.get()


def running_request() -> RunningRequest | None:
    """The governed call whose body is running in the current context, if any."""
    return _current_request.get()


def carry(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn`` bound to a copy of the *current* context: its trace and running request.

    Use it to hand governed work to threads, which start with an empty context::

        pool.submit(carry(pay), invoice)

    Without it, a governed call in the worker thread runs with no trace open and
    gets the gate's default mandate (or is refused when the gate requires a trace).
    """
    context = contextvars.copy_context()

    def run_carried(*args: P.args, **kwargs: P.kwargs) -> R:
        return context.copy().run(fn, *args, **kwargs)

    return run_carried


def enter_request(request: RunningRequest) -> contextvars.Token[RunningRequest | None]:
    """Mark ``request`` as the running governed call; pass the token to :func:`exit_request`."""
    return _current_request.set(request)


def exit_request(token: contextvars.Token[RunningRequest | None]) -> None:
    """Undo :func:`enter_request`."""
    _current_request.reset(token)


STRIPES: Final[int] = 1024
"""Per-trace locks are striped: a trace always takes the same one of this many locks."""
CAPACITY: Final[int] = 8192
"""Traces whose state is cached per ledger store (least recently used are evicted)."""


StoreLock = Callable[[str], AbstractContextManager[object]]
"""A shared store's per-trace lock across processes: ``store.trace_lock(trace_id)``."""


class TraceStates:
    """Per-ledger-store trace locks and cached trace states (see the module docstring).

    ``store_lock`` (a shared store's ``trace_lock``) is taken inside the in-process
    lock; with it, nothing is cached.
    """

    def __init__(
        self,
        capacity: int = CAPACITY,
        stripes: int = STRIPES,
        *,
        store_lock: StoreLock | None = None,
    ) -> None:
        self._locks = tuple(threading.Lock() for _ in range(stripes))
        self._capacity = capacity
        self._states: OrderedDict[str, tuple[int, Mapping[str, Any]]] = OrderedDict()
        self._guard = threading.Lock()
        self._store_lock = store_lock

    @property
    def caching(self) -> bool:
        """Whether trace states are cached (not for a shared store)."""
        return self._store_lock is None

    @contextmanager
    def lock(self, trace_id: str, *, fresh: bool = False) -> Iterator[None]:
        """Hold the lock that serializes decisions in ``trace_id`` (in this process and,
        for a shared store, in every process on the log).

        ``fresh``: this gate minted ``trace_id`` for this very decision (a call made with
        no trace open), so no other process can name it yet and the store lock is
        skipped: one round trip less for every untraced call."""
        with self._locks[hash(trace_id) % len(self._locks)]:
            if self._store_lock is None or fresh:
                yield
            else:
                with self._store_lock(trace_id):
                    yield

    def get(self, trace_id: str, generation: int) -> Mapping[str, Any] | None:
        """The cached state of ``trace_id`` if it was cached at store ``generation``."""
        if self._store_lock is not None:
            return None
        with self._guard:
            found = self._states.get(trace_id)
            if found is None or found[0] != generation:
                return None
            self._states.move_to_end(trace_id)
            return found[1]

    def put(self, trace_id: str, generation: int, state: Mapping[str, Any]) -> None:
        """Cache ``state`` as the state of ``trace_id`` at store ``generation``."""
        if self._store_lock is not None:
            return
        with self._guard:
            self._states[trace_id] = (generation, state)
            self._states.move_to_end(trace_id)
            while len(self._states) > self._capacity:
                self._states.popitem(last=False)

    def forget(self, trace_id: str) -> None:
        """Drop the cached state of ``trace_id`` (after a failed append)."""
        with self._guard:
            self._states.pop(trace_id, None)


_REGISTRY: weakref.WeakKeyDictionary[object, TraceStates] = weakref.WeakKeyDictionary()
_REGISTRY_GUARD = threading.Lock()


def states_for(store: object) -> TraceStates:
    """The :class:`TraceStates` of ``store``: shared by every gate appending to it."""
    with _REGISTRY_GUARD:
        found = _REGISTRY.get(store)
        if found is None:
            shared = bool(getattr(store, "shared", False))
            store_lock: StoreLock | None = getattr(store, "trace_lock", None) if shared else None
            if shared and store_lock is None:
                raise TypeError(f"{type(store).__name__} is shared but has no trace_lock")
            found = _REGISTRY[store] = TraceStates(store_lock=store_lock)
        return found
