"""The client's own single-use guard: a grant this client accepted is never accepted again.

A gateway (or anything between it and the client) that hands the same grant out
twice gets the second one refused before its body runs. The guard is in memory:
it protects one client object, for as long as a grant can verify (``exp`` plus the
largest leeway); tool services use the durable
:class:`~clearance._internal.grants.jti_store.SQLiteReplayGuard` instead.

Invariants: consumption is atomic under a lock; an entry is dropped only after
``exp + MAX_LEEWAY`` by the consumer's clock, when the expiry check refuses the
grant on its own; the table is bounded by the grants of one lifetime window.
"""

from __future__ import annotations

import threading

from clearance._internal.limits import MAX_LEEWAY
from clearance.errors import InvalidGrant

PURGE_EVERY = 256
"""Consumes between two sweeps of expired entries."""


class MemoryReplayGuard:
    """An in-memory :class:`~clearance._internal.grants.jti_store.ReplayGuard`."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()
        self._count = 0

    def consume(self, jti: str, exp: float, now: float) -> None:
        """Accept ``jti`` once; InvalidGrant if it was accepted before."""
        with self._lock:
            if jti in self._seen:
                raise InvalidGrant(f"replayed jti {jti!r} (already accepted by this client)")
            self._seen[jti] = exp
            self._count += 1
            if self._count % PURGE_EVERY == 0:
                horizon = now - MAX_LEEWAY
                self._seen = {j: e for j, e in self._seen.items() if e >= horizon}

    def __len__(self) -> int:
        return len(self._seen)

    def close(self) -> None:
        """Nothing to release."""
