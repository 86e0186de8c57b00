"""What an ``approval_required`` rule says about its approval: quorum, approvers, expiry.

A rule whose effect is ``approval_required`` may set (docs/design.md §9):

``approvals``
    How many distinct approvers must approve: a whole number from 1 to
    :data:`MAX_APPROVALS` (default 1).
``approvers``
    Who may vote: a non-empty list of principal ids or prefixes ending in ``*``
    (``user:*``), written like the rule's ``principals``. Absent: anyone the caller
    trusts to approve (an API key with the ``approver`` scope, or trusted code in
    process).
``approval_ttl``
    Seconds a pending approval stays open before it counts as denied: above 0, at
    most 30 days, like the ``approvals.ttl`` setting it replaces for this rule.

Invariants:

* The keys are refused on a rule of any other effect, naming the file, the line and
  the rule: a quorum on an ``allow`` rule would read as a safeguard that never runs.
* A rule's canonical form holds a key only when the rule sets it, and ``approvals``
  only when it is above the default of 1, so a bundle that uses none of them keeps
  the digest it had before they existed (as ``sensitive_output`` does).
* Pattern matching is the rule-``principals`` matching: an id matches itself; a
  pattern ending in ``*`` matches every id that starts with what precedes it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from clearance._internal.intent import PRINCIPAL_PATTERN
from clearance._internal.limits import limit_problem
from clearance._internal.policy.yaml_loader import SourceChecker

__all__ = [
    "APPROVAL_KEYS",
    "MAX_APPROVALS",
    "RuleApproval",
    "intersect_patterns",
    "is_principal_pattern",
    "matches_any",
    "parse_approval_keys",
    "rule_approval",
]

APPROVAL_KEYS: Final = ("approvals", "approvers", "approval_ttl")
"""The rule keys this module reads, in the order messages list them."""
MAX_APPROVALS: Final = 100
"""The largest quorum a rule may ask for."""

_PRINCIPAL_PREFIX: Final = re.compile(r"[A-Za-z0-9_.:@/+-]*")


@dataclass(frozen=True, slots=True)
class RuleApproval:
    """The approval settings of one ``approval_required`` rule (defaults filled in)."""

    rule: str
    """The rule id."""
    approvals: int = 1
    """Distinct approvers needed."""
    approvers: tuple[str, ...] | None = None
    """Who may vote (patterns); None means anyone trusted to approve."""
    ttl: float | None = None
    """Seconds until the approval expires; None means the ``approvals.ttl`` setting."""


def is_principal_pattern(pattern: str) -> bool:
    """True for a principal id or a prefix ending in ``*`` (``*`` alone included)."""
    if pattern.endswith("*"):
        return _PRINCIPAL_PREFIX.fullmatch(pattern[:-1]) is not None
    return PRINCIPAL_PATTERN.fullmatch(pattern) is not None


def matches_any(patterns: Iterable[str], principal: str) -> bool:
    """Whether ``principal`` is one of ``patterns`` or starts with one of their prefixes."""
    for pattern in patterns:
        if pattern.endswith("*"):
            if principal.startswith(pattern[:-1]):
                return True
        elif principal == pattern:
            return True
    return False


def _meet(one: str, two: str) -> str | None:
    """The pattern matching exactly the principals both ``one`` and ``two`` match, or None."""
    one_prefix, two_prefix = one.endswith("*"), two.endswith("*")
    if not one_prefix and not two_prefix:
        return one if one == two else None
    if one_prefix and two_prefix:
        if one[:-1].startswith(two[:-1]):
            return one
        return two if two[:-1].startswith(one[:-1]) else None
    exact, prefix = (two, one) if one_prefix else (one, two)
    return exact if exact.startswith(prefix[:-1]) else None


def _covers(wide: str, narrow: str) -> bool:
    """Whether every principal ``narrow`` matches is matched by ``wide``."""
    if not wide.endswith("*"):
        return wide == narrow
    body = narrow[:-1] if narrow.endswith("*") else narrow
    return body.startswith(wide[:-1])


def intersect_patterns(one: Sequence[str], two: Sequence[str]) -> tuple[str, ...]:
    """Patterns that match exactly the principals that ``one`` and ``two`` both match.

    Pairwise intersections, without duplicates or patterns another one covers, in
    a stable order. Empty when no principal matches both.
    """
    met = {m for a in one for b in two if (m := _meet(a, b)) is not None}
    kept = [p for p in met if not any(q != p and _covers(q, p) for q in met)]
    return tuple(sorted(kept))


def parse_approval_keys(
    src: SourceChecker, rule: Mapping[str, Any], path: str, effect: object
) -> dict[str, Any]:
    """The approval keys ``rule`` sets, validated and normalized (only those it sets).

    PolicyError, naming the file, line, rule path and key, for a key on a rule whose
    effect is not ``approval_required`` or a value out of its bound.
    """
    present = [key for key in APPROVAL_KEYS if key in rule]
    if not present:
        return {}
    if effect != "approval_required":
        key = present[0]
        src.fail(
            f"{path}.{key}",
            f"only an approval_required rule may set {key!r} (this rule's effect is {effect})",
            rule,
            key,
        )
    out: dict[str, Any] = {}
    if "approvals" in rule:
        count = rule["approvals"]
        if isinstance(count, bool) or not isinstance(count, int):
            count = None
        if count is None or not 1 <= count <= MAX_APPROVALS:
            src.fail(
                f"{path}.approvals",
                f"must be a whole number of approvers from 1 to {MAX_APPROVALS}",
                rule,
                "approvals",
            )
        if count != 1:
            out["approvals"] = count
    if "approvers" in rule:
        approvers = rule["approvers"]
        if (
            not isinstance(approvers, list)
            or not approvers
            or not all(isinstance(p, str) for p in approvers)
        ):
            src.fail(
                f"{path}.approvers",
                "must be a non-empty list of principal ids or prefixes ending in '*' "
                "(omit it to let anyone trusted to approve vote)",
                rule,
                "approvers",
            )
        for pattern in approvers:
            if not is_principal_pattern(pattern):
                src.fail(
                    f"{path}.approvers",
                    f"{pattern!r} is neither a principal id nor a prefix ending in '*'",
                    rule,
                    "approvers",
                )
        out["approvers"] = list(approvers)
    if "approval_ttl" in rule:
        ttl = rule["approval_ttl"]
        problem = limit_problem("approval_ttl", ttl)
        if problem is not None:
            src.fail(f"{path}.approval_ttl", f"{problem}, got {ttl!r}", rule, "approval_ttl")
        out["approval_ttl"] = src.json(ttl, f"{path}.approval_ttl", rule, "approval_ttl")
    return out


def rule_approval(normalized: Mapping[str, Any]) -> RuleApproval:
    """The :class:`RuleApproval` of a rule's canonical form (defaults filled in)."""
    approvers = normalized.get("approvers")
    ttl = normalized.get("approval_ttl")
    return RuleApproval(
        rule=str(normalized["id"]),
        approvals=int(normalized.get("approvals", 1)),
        approvers=None if approvers is None else tuple(approvers),
        ttl=None if ttl is None else float(ttl),
    )
