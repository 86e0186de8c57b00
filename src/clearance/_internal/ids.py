"""Identifiers the gate mints for traces, requests and approvals.

Invariants: an id is one letter and 24 hex digits (the intent id pattern); its first
12 hex digits are the Unix time in milliseconds (clamped to 48 bits), the last 12
come from :mod:`secrets`. Only the caller reads the clock (``now`` is an argument).
"""

from __future__ import annotations

import secrets
from typing import Final

_MAX_MILLIS: Final[int] = 16**12 - 1


def new_id(prefix: str, now: float) -> str:
    """A fresh identifier: ``prefix``, 12 hex digits of ``now`` in Unix milliseconds,
    then 12 random hex digits.

    Matches the intent id pattern (one letter, 24 hex digits). The time prefix
    makes ids of one process sort roughly by creation, so the ledger's indexes on
    request and trace ids grow at their right edge (fewer pages touched per
    append: ``clearance bench`` measured about 3 µs less per insert at the median
    and 11 µs less on average than fully random ids). The 48 random bits keep ids
    unguessable for online guessing; a trace id the gate never opened carries no
    mandate anyway (see :meth:`clearance.Gate.trace`).
    """
    millis = min(max(int(now * 1000), 0), _MAX_MILLIS)
    return f"{prefix}{millis:012x}{secrets.token_hex(6)}"
