"""The bodies of a decision over HTTP: ``allow`` (200), ``approval_required`` (202).

Both are assembled from what the gate logged: the facts are read back from the decision
entry (what the policy saw), the grant's expiry from the authorization when the gate has
just signed it, else from the grant itself. A 202 carries the
normalized intent the caller must present once the approval is granted: the bound
intent (principal and trace filled in) with the arguments as sent, checked against the
digest the decision entry logged, so a redacted argument never stands in for the real
one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from clearance._internal.gate.cleared import Authorization
from clearance._internal.gate.core import Gate
from clearance._internal.grants.token import peek_claims
from clearance._internal.intent import Intent
from clearance.errors import ApprovalRequired, Error


def _facts(gate: Gate, authorization: Authorization) -> dict[str, Any]:
    """The facts the decision saw: carried by the authorization (no ledger read), or read
    back from its decision entry (a grant collected after an approval)."""
    facts = authorization.facts
    if facts is None:
        facts = gate.ledger.get(authorization.decision_index).entry.get("facts")
    return dict(facts) if isinstance(facts, Mapping) else {}


def allowed_body(gate: Gate, authorization: Authorization) -> dict[str, Any]:
    """The 200 body of an ``allow`` (or of a grant collected after approval)."""
    decision = authorization.decision
    expires = authorization.expires_at
    if expires is None:  # a grant this gate did not just sign (collected after approval)
        expires = int((peek_claims(authorization.grant) or {}).get("exp", 0))
    return {
        "request_id": authorization.request_id,
        "effect": "allow",
        "reasons": [r.to_json() for r in decision.reasons],
        "facts": _facts(gate, authorization),
        "ledger_index": authorization.decision_index,
        "policy_digest": decision.policy_digest,
        "intent": authorization.intent.to_json(),
        "intent_digest": authorization.intent.digest,
        "grant": authorization.grant,
        "expires_at": expires,
    }


def pending_body(
    gate: Gate, exc: ApprovalRequired, sent: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The 202 body of ``approval_required``; ``sent`` is the intent as the caller sent it
    (principal filled in), or None when it is not at hand (the logged intent is used)."""
    decision = exc.decision
    index = int(decision["index"])
    entry = gate.ledger.get(index).entry
    logged = entry.get("intent") if isinstance(entry.get("intent"), Mapping) else {}
    intent: dict[str, Any] = dict(logged) if isinstance(logged, Mapping) else {}
    if sent is not None:
        bound = Intent.from_json(
            {**sent, "trace_id": entry.get("trace_id"), "parent_id": entry.get("parent_id")}
        )
        if bound.digest == entry.get("intent_digest"):
            intent = bound.to_json()
    return {
        "request_id": str(decision["request_id"]),
        "effect": "approval_required",
        "reasons": [dict(r) for r in decision.get("reasons", [])],
        "facts": dict(entry.get("facts") or {}),
        "ledger_index": index,
        "policy_digest": str(decision.get("policy_digest", "")),
        "intent": intent,
        "intent_digest": str(entry.get("intent_digest")),
        "approval_id": exc.approval_id,
        "expires_at": approval_expiry(gate, exc.approval_id, str(decision["request_id"])),
    }


def approval_expiry(gate: Gate, approval_id: str, request_id: str) -> float:
    """When ``approval_id`` expires (POSIX seconds), as the ledger says."""
    try:
        return float(gate.approval(approval_id).expires_at)
    except (Error, AttributeError):
        pass
    for stored in gate.ledger.find("approval", request_id):
        expires = stored.entry.get("expires_at")
        if stored.entry.get("approval_id") == approval_id and isinstance(expires, str):
            return datetime.fromisoformat(expires.replace("Z", "+00:00")).timestamp()
    return 0.0
