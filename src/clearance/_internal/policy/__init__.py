"""Policy evaluation: the PolicyEngine protocol and the default CEL engine over YAML bundles.

* :mod:`.engine` — the protocol and the values that cross it.
* :mod:`.bundle` — the bundle format, validation, canonical document, digest.
* :mod:`.cel_engine` — :class:`CelPolicyEngine` and :class:`DenyAllEngine`.
* :mod:`.functions` — helper functions available in conditions.
* :mod:`.reload` — hot reload that keeps the last good bundle.
* :mod:`.testing` — table-driven policy tests (``clearance policy test``).
* :mod:`clearance._bench.policy` — the decision benchmark.
"""

from typing import TYPE_CHECKING, Any

from clearance._internal.policy.engine import (
    EFFECTS,
    Decision,
    Effect,
    EvaluationInput,
    PolicyEngine,
    Reason,
    ToolSpec,
)

if TYPE_CHECKING:
    from clearance._internal.policy.cel_engine import (
        DENY_ALL_DIGEST,
        CelPolicyEngine,
        DenyAllEngine,
    )

_LAZY = {"DENY_ALL_DIGEST", "CelPolicyEngine", "DenyAllEngine"}


def __getattr__(name: str) -> Any:
    # The CEL binding takes ~0.4 s to import; executors that only verify grants,
    # and ledger-only commands, should not pay for it.
    if name in _LAZY:
        from clearance._internal.policy import cel_engine

        return getattr(cel_engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
