"""The replay store's purge rule, shared by every backend (SQLite, PostgreSQL).

The rule and its limits are stated in full in
:mod:`clearance._internal.grants.jti_store`; this module is its arithmetic, kept in one
place so that both stores delete exactly the same rows. In short, a purge at ``now``
deletes the rows with ``exp + leeway < min(now, max(E, now - max_skew))``, where ``E``
is the smallest, over every other verifier with a row in the store, of that verifier's
evidence: the newest ``seen_at`` it wrote, advanced by the purger's monotonic time
since the purger first observed that value.

Invariants:

* Evidence only ever moves forward by real (monotonic) time or by what a verifier
  wrote: re-reading an unchanged ``seen_at`` does not restart a verifier's clock.
* A verifier without rows in the latest observation is forgotten: it holds nothing
  back, and memory stays bounded by the verifiers present in the store.
* The caller reads the observation and deletes by :func:`purge_cutoff` in one
  transaction that sees one state of the table (the stores say how).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

NEWEST_BY_OTHERS_SQL = (
    "SELECT verifier, max(coalesce(seen_at, exp)) FROM consumed_jti"
    " WHERE verifier <> {param} GROUP BY verifier"
)
"""The observation: each other verifier's newest ``seen_at`` (``exp`` for old rows).

``{param}`` is the store's placeholder (``?`` or ``%s``) for the purger's own id.
"""


def check_limits(leeway: float, purge_every: int, purge_interval: float, max_skew: float) -> None:
    """ValueError unless ``leeway`` is finite and >= 0, ``purge_every`` >= 1, and
    ``purge_interval`` and ``max_skew`` are >= 0 (NaN refused)."""
    if (
        not (0 <= leeway < math.inf)
        or purge_every < 1
        or not purge_interval >= 0
        or not max_skew >= 0
    ):
        raise ValueError("leeway, purge_interval and max_skew must be >= 0 and purge_every >= 1")


class VerifierEvidence:
    """What one purger knows of the other verifiers' clocks (not thread-safe: the
    guard calls it under its purge lock)."""

    def __init__(self) -> None:
        self._bounds: dict[str, tuple[float, float]] = {}
        """Other verifier id -> (lower bound of its clock, monotonic instant of that bound)."""

    def observe(self, newest: Iterable[tuple[str, float]], instant: float) -> float:
        """Fold the newest ``seen_at`` per other verifier, read at monotonic ``instant``,
        into the evidence; return ``E`` (infinite when no other verifier has a row).

        A verifier's bound is the larger of what it wrote and its previous bound
        advanced by the monotonic time since: re-reading an unchanged ``seen_at``
        must not restart its clock, or a verifier that stopped writing would hold
        purges back forever. Verifiers without rows are forgotten (they hold
        nothing back), which also bounds the memory by the verifiers in the store.
        """
        bounds: dict[str, tuple[float, float]] = {}
        for verifier, seen_at in newest:
            bound = float(seen_at)
            previous = self._bounds.get(verifier)
            if previous is not None:
                bound = max(bound, previous[0] + (instant - previous[1]))
            bounds[verifier] = (bound, instant)
        self._bounds = bounds
        return min((bound for bound, _ in bounds.values()), default=math.inf)


def purge_cutoff(now: float, evidence: float, *, max_skew: float, leeway: float) -> float:
    """The ``exp`` below which a row is expired on every known clock:
    ``min(now, max(evidence, now - max_skew)) - leeway``."""
    return min(now, max(evidence, now - max_skew)) - leeway
