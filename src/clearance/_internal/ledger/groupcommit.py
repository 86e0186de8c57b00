"""Leader/follower group commit: many threads, one transaction, one fsync.

A thread that submits work queues it and then either

* finds the commit role free and becomes the **leader**: it takes everything
  queued so far (its own item included), runs the commit function once for the
  whole batch, publishes the results, wakes exactly the threads of that batch and
  hands the role to the oldest queued thread, if any; or
* finds the role taken and **follows**: it sleeps until it is woken either with its
  result (a leader committed its item) or with the role (it leads the next batch).

A lone writer therefore commits on its own thread with no hand-off (and without
queueing at all when it finds the role free), while under
load the batch grows with the number of writers that arrived during the previous
commit (the classic database group commit). Each follower is woken once, through
its own lock, rather than all of them on every commit.

Invariants:

* at most one thread holds the commit role (runs a batch, or holds
  :meth:`GroupCommit.exclusive`); the role passes directly from holder to waiter;
* a submitter returns only after its batch's commit function returned, and gets
  exactly that batch's result for its item;
* if the commit function raises, every submitter of that batch gets an error (a
  fresh :class:`~clearance.errors.LedgerError` per thread, chained to the
  original), and nobody gets a result.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Generic, TypeVar

from clearance.errors import LedgerError, TamperError

T = TypeVar("T")
R = TypeVar("R")


class _Waiter(Generic[T, R]):
    """One thread waiting for the role, or for its item's result.

    A waiter that must sleep holds ``gate`` (a plain lock, far cheaper than an Event)
    and blocks acquiring it a second time; whoever wakes it releases it, exactly once.
    """

    __slots__ = ("done", "error", "gate", "item", "result")

    def __init__(self, item: T | None) -> None:
        self.item = item
        self.gate: threading.Lock | None = None
        self.done = False
        self.result: R | None = None
        self.error: BaseException | None = None

    def block(self) -> threading.Lock:
        """Arm the gate (call under the group's lock); acquire it again to sleep."""
        gate = self.gate = threading.Lock()
        gate.acquire()
        return gate

    def wake(self) -> None:
        """Let the sleeping thread continue."""
        if self.gate is not None:
            self.gate.release()


def _rethrown(exc: BaseException) -> LedgerError:
    """A new error for one waiter, so no exception object is raised on two threads."""
    if isinstance(exc, TamperError):
        return TamperError(str(exc), index=exc.index)
    if isinstance(exc, LedgerError):
        return LedgerError(str(exc))
    return LedgerError(f"ledger commit failed unexpectedly: {exc!r}")


class GroupCommit(Generic[T, R]):
    """Batch concurrent submissions into single calls of ``commit``.

    ``commit`` receives the queued items in arrival order and must return one
    result per item, in the same order.
    """

    def __init__(self, commit: Callable[[Sequence[T]], Sequence[R]]) -> None:
        self._commit = commit
        self._lock = threading.Lock()
        self._queue: list[_Waiter[T, R]] = []  # submissions not yet taken by a leader
        self._exclusive: deque[_Waiter[T, R]] = deque()  # threads waiting in exclusive()
        self._busy = False
        self._progress = threading.Condition(threading.Lock())
        self._watchers = 0
        self._batches = 0
        self._items = 0

    @property
    def batches(self) -> int:
        """How many times ``commit`` has been called (successfully or not)."""
        return self._batches

    @property
    def items(self) -> int:
        """How many items have been passed to ``commit``."""
        return self._items

    def submit(self, item: T) -> R:
        """Queue ``item``, wait for the commit that includes it and return its result."""
        with self._lock:
            # The role is free only while nothing is queued (items queue behind a holder),
            # so a submitter that finds it free commits its item alone, without queueing.
            alone = not self._busy
            if alone:
                self._busy = True
        if alone:
            return self._commit_alone(item)
        me: _Waiter[T, R] = _Waiter(item)
        gate = None
        with self._lock:
            self._queue.append(me)
            if self._busy:
                gate = me.block()
            else:
                self._busy = True
        if gate is not None:
            gate.acquire()  # released with our result, or with the role
        if not me.done:
            with self._lock:
                batch, self._queue = self._queue, []
            self._lead(batch, me)
        if me.error is not None:
            raise _rethrown(me.error) from me.error
        return me.result  # type: ignore[return-value]  # set whenever error is None

    def _commit_alone(self, item: T) -> R:
        """Commit ``item`` as a batch of one while holding the role; the uncontended path.

        Same outcomes as :meth:`_lead` for a batch of one: the result, or a fresh
        LedgerError chained to the failure; BaseExceptions propagate as they are.
        """
        try:
            results = self._commit((item,))
        except Exception as exc:
            raise _rethrown(exc) from exc
        finally:
            self._finish(1, ())
        if len(results) != 1:
            raise LedgerError("commit returned the wrong number of results")
        return results[0]

    def _lead(self, batch: list[_Waiter[T, R]], me: _Waiter[T, R]) -> None:
        results: Sequence[R] = ()
        error: BaseException | None = None
        try:
            results = self._commit([w.item for w in batch])  # type: ignore[misc]  # items set
            if len(results) != len(batch):
                error = LedgerError("commit returned the wrong number of results")
        except BaseException as exc:  # handed to every waiter below
            error = exc
        for i, waiter in enumerate(batch):
            if error is None:
                waiter.result = results[i]
            elif isinstance(error, Exception):
                waiter.error = error
            else:
                waiter.error = LedgerError(f"ledger commit interrupted: {error!r}")
            waiter.done = True
        # The leader's own gate, if any, was released to make it lead.
        self._finish(len(batch), [waiter for waiter in batch if waiter is not me])
        if error is not None and not isinstance(error, Exception):
            raise error  # KeyboardInterrupt and friends stay on the leader's thread

    def _finish(self, items: int, woken: Sequence[_Waiter[T, R]]) -> None:
        """After a commit of ``items``: count it, pass the role on, wake ``woken`` and watchers."""
        self._batches += 1
        self._items += items
        self._release()
        for waiter in woken:
            waiter.wake()
        if self._watchers:
            with self._progress:
                self._progress.notify_all()

    def _release(self) -> None:
        """Hand the role to a waiting exclusive holder, else the oldest submitter, else free it."""
        with self._lock:
            if self._exclusive:
                heir = self._exclusive.popleft()
            elif self._queue:
                heir = self._queue[0]
            else:
                self._busy = False
                return
        heir.wake()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the commit role (no batch commits meanwhile); queued items wait."""
        me: _Waiter[T, R] = _Waiter(None)
        gate = None
        with self._lock:
            if self._busy:
                gate = me.block()
                self._exclusive.append(me)
            else:
                self._busy = True
        if gate is not None:
            gate.acquire()
        try:
            yield
        finally:
            self._release()

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` holds (re-checked after every commit), up to ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._progress:
            # A leader notifies only while someone watches. It changes the state the
            # predicate reads before it looks at the count, and the count rises before
            # the first check here, so no update is missed.
            self._watchers += 1
            try:
                while not predicate():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._progress.wait(remaining)
                return True
            finally:
                self._watchers -= 1
