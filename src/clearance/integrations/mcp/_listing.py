"""Which tools a caller can never be allowed to call, read from the policy bundle.

``tools/list`` hides a tool only when no call of it by that principal can be allowed
under the active bundle, whatever its arguments, trace, mandate, approval or clock.
The rule, over the bundle's canonical document (docs/design.md §3 combining: any
matching deny wins, then approval_required, then allow; nothing matching denies):

1. a ``strict`` bundle that does not list the action under ``tools`` denies it before
   any rule runs (``unknown-action``);
2. a ``deny`` rule whose principals and actions match and whose condition is the
   constant ``true`` (no ``when``) matches every call;
3. no ``allow`` or ``approval_required`` rule names the principal and the action (or
   ``*``): nothing can allow it (``default-deny``).

Otherwise the tool is listed, even if every real call will be denied: a condition is
not evaluated here, so "maybe" lists. Listing is a courtesy to the model, never the
enforcement: every call is decided by the gate, listed or not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def never_allowed(document: Mapping[str, Any], principal: str, action: str) -> bool:
    """True when the bundle ``document`` can allow no call of ``action`` by ``principal``."""
    if document.get("strict") and action not in document.get("tools", {}):
        return True
    can_allow = False
    for rule in document.get("rules", ()):
        if not _names(rule.get("actions", ["*"]), action):
            continue
        if not _principals(rule.get("principals", ["*"]), principal):
            continue
        effect = rule.get("effect")
        if effect == "deny" and str(rule.get("when", "true")).strip() == "true":
            return True
        if effect in ("allow", "approval_required"):
            can_allow = True
    return not can_allow


def _names(actions: list[str], action: str) -> bool:
    return "*" in actions or action in actions


def _principals(patterns: list[str], principal: str) -> bool:
    """As :meth:`clearance._internal.policy.bundle.Rule.matches_principal`."""
    for pattern in patterns:
        if pattern.endswith("*"):
            if principal.startswith(pattern[:-1]):
                return True
        elif principal == pattern:
            return True
    return False
