"""Identifiers the gate mints, and the gate's deterministic decision (:func:`decide`),
shared by live decisions and by decision replay. Where a call runs (its trace and
parent) is :mod:`clearance._internal.gate.traces`.
"""

from __future__ import annotations

import secrets

from clearance._internal import entries
from clearance._internal.policy.engine import Decision, EvaluationInput, PolicyEngine, Reason
from clearance.errors import InputError


def new_id(prefix: str, now: float) -> str:
    """A fresh identifier: ``prefix``, 12 hex digits of ``now`` in Unix milliseconds,
    then 12 random hex digits.

    Matches the intent id pattern (one letter, 24 hex digits). The time prefix
    makes ids of one process sort roughly by creation, so the ledger's indexes on
    request and trace ids grow at their right edge (fewer pages touched per
    append: ``clearance bench`` measured about 3 µs less per insert at the median
    and 11 µs less on average than fully random ids). The 48 random bits keep ids
    unguessable for online guessing; a trace id the gate never opened carries no
    mandate anyway (see :meth:`clearance._internal.gate.core.Gate.trace`).
    """
    millis = min(max(int(now * 1000), 0), _MAX_MILLIS)
    return f"{prefix}{millis:012x}{secrets.token_hex(6)}"


_MAX_MILLIS = 16**12 - 1


def decide(engine: PolicyEngine, request: EvaluationInput) -> Decision:
    """The gate's deterministic decision: mandate expiry, then the policy engine.

    Used both live and by decision replay, so both apply the same checks.
    """
    expires = request.trace.get("mandate", {}).get("bounds", {}).get("expires_at")
    if expires is not None:
        try:
            deadline = entries.parse_timestamp(str(expires))
        except InputError:
            return Decision(
                "deny",
                (Reason("mandate-invalid", "mandate expires_at is not RFC 3339"),),
                engine.digest,
            )
        if request.now >= deadline:
            return Decision(
                "deny",
                (Reason("mandate-expired", f"the trace's mandate expired at {expires}"),),
                engine.digest,
            )
    return engine.evaluate(request)
