"""Trace handles for the runtime API: opened for a principal, resumed by id, cached.

Invariants (docs/design.md §3 "Trace integrity", fail-closed rules 10 and 11):

* Over HTTP a trace is a capability of the principal it was opened for: an intent may
  name a trace only if its ``trace`` entry records exactly the key's principal. A trace
  the ledger does not hold, one opened for another principal, and one opened in process
  without a principal are all refused alike (:class:`~clearance.errors.NotPermitted`,
  403), so a caller cannot probe which traces exist.
* A handle is resumed through the gate (its mandate read from the ledger and proven to
  be in the log) and cached with its principal; a trace's mandate and principal never
  change, so a cached handle never goes stale. Refusals are not cached (the table only
  holds traces that exist).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from clearance._internal.gate.core import Gate
from clearance._internal.gate.traces import Trace
from clearance.errors import BindingError, NotPermitted


class TraceBook:
    """The traces the API opened or resumed, by id, with the principal each belongs to."""

    def __init__(self, gate: Gate, capacity: int = 8192) -> None:
        """Resume traces through ``gate``; keep at most ``capacity`` handles."""
        self._gate = gate
        self._capacity = capacity
        self._handles: OrderedDict[str, tuple[Trace, str]] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, handle: Trace, principal: str) -> None:
        """Cache a handle the API just opened for ``principal``."""
        with self._lock:
            self._handles[handle.trace_id] = (handle, principal)
            self._handles.move_to_end(handle.trace_id)
            while len(self._handles) > self._capacity:
                self._handles.popitem(last=False)

    def handle(self, trace_id: str, principal: str) -> Trace:
        """The handle of ``trace_id`` if it was opened for ``principal``; NotPermitted otherwise."""
        with self._lock:
            found = self._handles.get(trace_id)
            if found is not None:
                self._handles.move_to_end(trace_id)
        if found is not None:
            if found[1] != principal:
                raise _refused(trace_id, principal)
            return found[0]
        try:
            handle = self._gate.resume_trace(trace_id, principal=principal)
        except BindingError:
            raise _refused(trace_id, principal) from None
        self.remember(handle, principal)
        return handle


def _refused(trace_id: str, principal: str) -> NotPermitted:
    return NotPermitted(
        f"trace {trace_id!r} is not open for principal {principal!r}: name a trace that "
        "POST /v1/traces opened for this principal"
    )
