"""Where a gate gets its policy engine: a :class:`PolicySource`.

Invariants:

* A gate asks its source for the engine once per decision, passing the time it
  decides at; the source answers with a complete engine, never a mixture of two
  bundles (:class:`~clearance._internal.policy.reload.PolicyHolder` swaps by one
  reference assignment).
* There is no source that allows by default: :func:`as_policy_source` turns a missing
  policy into :class:`~clearance._internal.policy.cel_engine.DenyAllEngine`
  (fail-closed rule 1).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from clearance._internal.policy.engine import PolicyEngine

__all__ = ["PolicySource", "StaticPolicy", "as_policy_source"]


@runtime_checkable
class PolicySource(Protocol):
    """Anything that hands the gate its current policy engine."""

    def engine_at(self, now: float) -> PolicyEngine:
        """The engine to decide with at ``now`` (the caller's clock, in seconds)."""
        ...


class StaticPolicy:
    """A :class:`PolicySource` for one fixed engine (tests, benchmarks, embedders)."""

    __slots__ = ("_engine",)

    def __init__(self, engine: PolicyEngine) -> None:
        """Always answer with ``engine``."""
        self._engine = engine

    def engine_at(self, now: float) -> PolicyEngine:
        """The fixed engine, whatever ``now`` is."""
        return self._engine


def as_policy_source(policy: PolicyEngine | PolicySource | None) -> PolicySource:
    """``policy`` as a source: itself, a :class:`StaticPolicy` around an engine, or deny-all."""
    if policy is None:
        # Imported here: the CEL binding takes ~0.4 s to import (see policy/__init__.py).
        from clearance._internal.policy.cel_engine import DenyAllEngine

        return StaticPolicy(DenyAllEngine())
    if isinstance(policy, PolicySource):
        return policy
    return StaticPolicy(policy)
