"""The gate's deterministic decision (:func:`decide`), shared by live decisions and by
decision replay. Where a call runs (its trace and parent) is
:mod:`clearance._internal.gate.traces`; the ids the gate mints are :mod:`clearance._internal.ids`.
"""

from __future__ import annotations

from clearance._internal import entries
from clearance._internal.policy.engine import Decision, EvaluationInput, PolicyEngine, Reason
from clearance.errors import InputError


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
