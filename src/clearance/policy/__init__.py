"""Policy evaluation: the PolicyEngine protocol and the default CEL engine over YAML bundles.

* :mod:`clearance.policy.engine` — the protocol and the values that cross it.
* :mod:`clearance.policy.bundle` — the bundle format, validation, canonical document, digest.
* :mod:`clearance.policy.cel_engine` — :class:`CelPolicyEngine` and :class:`DenyAllEngine`.
* :mod:`clearance.policy.functions` — helper functions available in conditions.
* :mod:`clearance.policy.reload` — hot reload that keeps the last good bundle.
* :mod:`clearance.policy.testing` — table-driven policy tests (``clearance policy test``).
* :mod:`clearance.policy.bench` — the decision benchmark.
"""

from clearance.policy.cel_engine import DENY_ALL_DIGEST, CelPolicyEngine, DenyAllEngine
from clearance.policy.engine import (
    EFFECTS,
    Decision,
    Effect,
    EvaluationInput,
    PolicyEngine,
    Reason,
    ToolSpec,
)

__all__ = [
    "DENY_ALL_DIGEST",
    "EFFECTS",
    "CelPolicyEngine",
    "Decision",
    "DenyAllEngine",
    "Effect",
    "EvaluationInput",
    "PolicyEngine",
    "Reason",
    "ToolSpec",
]
