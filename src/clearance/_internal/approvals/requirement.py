"""The terms of a new approval, from the rules that asked for it: quorum, approvers, expiry.

When several ``approval_required`` rules match one intent, the strictest terms win,
so adding a rule can only make an approval harder to obtain:

* **quorum**: the largest ``approvals`` of the matching rules;
* **approvers**: an approver must match the ``approvers`` patterns of *every* matching
  rule that names some (the patterns' intersection; a rule without ``approvers`` adds
  no constraint). Disjoint patterns leave nobody who may vote: the approval then
  expires, which counts as denied, and a warning is logged on ``clearance.gate``;
* **expiry**: the shortest ``approval_ttl``, where a rule without one stands for the
  ``approvals.ttl`` setting.

An engine that is not the CEL engine (no ``bundle``) has its rules read from its
canonical document; a rule id the engine does not know gets the defaults (one
approver, anyone, the setting's expiry).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from clearance._internal.policy.approval_rules import (
    RuleApproval,
    intersect_patterns,
    rule_approval,
)
from clearance._internal.policy.engine import Decision, PolicyEngine

__all__ = ["ANYONE", "Requirement", "combine", "requirement_for"]

log = logging.getLogger("clearance.gate")

ANYONE: tuple[str, ...] = ("*",)
"""The approvers of a rule that names none."""
_CACHED_BUNDLES = 8


@dataclass(frozen=True, slots=True)
class Requirement:
    """What a new approval needs (written into its ``pending`` entry)."""

    required: int
    approvers: tuple[str, ...]
    ttl: float
    rules: tuple[str, ...]


def combine(rules: Sequence[RuleApproval], default_ttl: float) -> Requirement:
    """The strictest terms of ``rules`` (see the module docstring)."""
    required = max((rule.approvals for rule in rules), default=1)
    approvers: tuple[str, ...] | None = None
    for rule in rules:
        if rule.approvers is None:
            continue
        if approvers is None:
            approvers = rule.approvers
        else:
            approvers = intersect_patterns(approvers, rule.approvers)
    ttl = min((default_ttl if r.ttl is None else r.ttl for r in rules), default=default_ttl)
    ids = tuple(rule.rule for rule in rules)
    if approvers == ():
        log.warning(
            "the approvers of rules %s do not overlap: nobody may approve, so such an "
            "approval can only expire",
            ", ".join(ids),
        )
    return Requirement(required, ANYONE if approvers is None else approvers, ttl, ids)


_lock = threading.Lock()
_by_bundle: dict[str, Mapping[str, RuleApproval]] = {}


def _rules_of(engine: PolicyEngine) -> Mapping[str, RuleApproval]:
    """Rule id → approval settings of ``engine``'s bundle (cached per bundle digest)."""
    digest = engine.digest
    with _lock:
        found = _by_bundle.get(digest)
    if found is not None:
        return found
    bundle = getattr(engine, "bundle", None)
    rules = getattr(bundle, "rules", None)
    table: dict[str, RuleApproval] = {}
    if rules is not None:
        for rule in rules:
            if rule.approval is not None:
                table[rule.id] = rule.approval
    else:
        for raw in engine.document().get("rules", []):
            if isinstance(raw, Mapping) and raw.get("effect") == "approval_required":
                table[str(raw.get("id"))] = rule_approval(raw)
    with _lock:
        if len(_by_bundle) >= _CACHED_BUNDLES:
            _by_bundle.clear()
        _by_bundle[digest] = table
    return table


def requirement_for(engine: PolicyEngine, decision: Decision, default_ttl: float) -> Requirement:
    """The terms of the approval an ``approval_required`` ``decision`` of ``engine`` asks for."""
    table = _rules_of(engine)
    rules = [table.get(rule_id) or RuleApproval(rule=rule_id) for rule_id in decision.rule_ids]
    return combine(rules, default_ttl)
