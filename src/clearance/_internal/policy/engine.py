"""The PolicyEngine protocol and the values that cross it.

Invariants:

* Evaluation is a pure function of (bundle, :class:`EvaluationInput`): the same
  input under the same bundle digest yields the same :class:`Decision`. Time
  comes in as ``now``; trace facts and the trace's value provenance come from the
  gate, never from the caller.
* Combining (docs/design.md §3): any matching ``deny`` wins, then ``approval_required``,
  then ``allow``; nothing matching means ``deny``.
* ``evaluate`` never raises for a rule's failure: a rule that errors yields a
  ``deny`` whose reason names the rule and the error (fail-closed rule 3). It
  raises :class:`~clearance.errors.PolicyError` only when it cannot evaluate at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from clearance._internal.policy.provenance import EMPTY as EMPTY_PROVENANCE
from clearance._internal.policy.provenance import Provenance

if TYPE_CHECKING:
    from clearance._internal.intent import Intent

Effect = Literal["allow", "deny", "approval_required"]
EFFECTS: tuple[Effect, ...] = ("allow", "deny", "approval_required")


@dataclass(frozen=True)
class Reason:
    """Why a decision came out as it did: a rule id (or a gate reason) and its message."""

    rule: str
    message: str = ""

    def to_json(self) -> dict[str, str]:
        """The ledger form: ``{"rule": ..., "message": ...}``."""
        return {"rule": self.rule, "message": self.message}


@dataclass(frozen=True)
class Decision:
    """The outcome of one evaluation."""

    effect: Effect
    reasons: tuple[Reason, ...]
    policy_digest: str

    @property
    def rule_ids(self) -> list[str]:
        """The ids of the rules (or gate reasons) that decided it."""
        return [r.rule for r in self.reasons]

    def to_json(self) -> dict[str, Any]:
        """The ledger form of the decision."""
        return {
            "effect": self.effect,
            "reasons": [r.to_json() for r in self.reasons],
            "policy_digest": self.policy_digest,
        }


@dataclass(frozen=True)
class ToolSpec:
    """What a bundle's tool registry says about one action."""

    name: str
    untrusted_output: bool = False
    """Results may carry injected instructions (``trace.untrusted``, ``from_untrusted``)."""
    sensitive: tuple[str, ...] = ()
    """Argument paths (dot-separated, e.g. ``card.number``) stored salted-hashed in the ledger."""
    args_schema: Mapping[str, Any] | None = None
    sensitive_output: bool = False
    """Results carry the user's secrets: their values feed ``carries_sensitive``."""


@dataclass(frozen=True)
class EvaluationInput:
    """Everything a policy may look at for one intent (docs/design.md §3 variables)."""

    principal: str
    action: str
    resource: str | None
    args: Mapping[str, Any]
    purpose: str | None
    input: Mapping[str, Any] | None
    trace: Mapping[str, Any]
    """Trace facts computed by the gate: id, depth, count, actions, untrusted, totals, mandate."""
    now: datetime
    approval: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    provenance: Provenance = EMPTY_PROVENANCE
    """The trace's fingerprints as of ``trace.provenance_index`` (what ``from_untrusted`` and
    ``carries_sensitive`` read); the gate reads them from the ledger, never from the caller."""
    redacted: tuple[str, ...] = ()
    """Replay only: argument paths the ledger holds as salted digests. The tool's
    ``args_schema`` is not checked inside them (the live decision checked the real values;
    its logged reasons say whether they passed). Always empty for a live decision."""

    @classmethod
    def for_intent(
        cls,
        intent: Intent,
        *,
        trace: Mapping[str, Any],
        now: datetime,
        provenance: Provenance = EMPTY_PROVENANCE,
    ) -> EvaluationInput:
        """The input for deciding ``intent`` with the given trace facts at ``now``."""
        return cls(
            principal=intent.principal,
            action=intent.action,
            resource=intent.resource,
            args=intent.args,
            purpose=intent.purpose,
            input=intent.input,
            trace=trace,
            now=now,
            provenance=provenance,
        )


class PolicyEngine(Protocol):
    """A loaded, validated policy that can decide intents."""

    @property
    def digest(self) -> str:
        """``sha256:`` digest of the bundle's canonical form."""
        ...

    def document(self) -> dict[str, Any]:
        """The bundle's canonical JSON form (what the digest covers; logged in policy entries)."""
        ...

    def tool(self, action: str) -> ToolSpec | None:
        """The registry entry for ``action``, or None when the bundle does not list it."""
        ...

    def principal_attributes(self, principal: str) -> Mapping[str, Any]:
        """Trusted attributes of ``principal`` from the bundle's registry (empty if unknown)."""
        ...

    def evaluate(self, request: EvaluationInput) -> Decision:
        """Decide ``request``; see the module invariants."""
        ...
