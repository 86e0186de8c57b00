"""What an approval looks like to callers: :class:`Approval` and its :class:`Vote` s.

Both are frozen snapshots, folded from the approval's ledger entries at one moment
(:mod:`clearance._internal.approvals.fold`); they are never updated in place. Times are
POSIX seconds (``expires_at``, ``Vote.at``), as the runtime API returns them.

Statuses (docs/design.md §9): ``pending`` (waiting for votes), ``approved`` (the quorum
approved; the requester may collect one grant), ``denied`` (an approver denied),
``expired`` (still pending at ``expires_at``: it counts as denied) and ``collected`` (the
one grant was issued).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = ["STATUSES", "VOTE_DECISIONS", "Approval", "Status", "Vote"]

Status = Literal["pending", "approved", "denied", "expired", "collected"]
STATUSES: Final[tuple[Status, ...]] = ("pending", "approved", "denied", "expired", "collected")
VOTE_DECISIONS: Final = ("approve", "deny")


def _json_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _json_copy(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_copy(item) for item in value]
    return value


@dataclass(frozen=True, slots=True)
class Vote:
    """One approver's counted vote."""

    approver: str
    decision: Literal["approve", "deny"]
    reason: str
    at: float
    """When it was cast (POSIX seconds, the voting gate's clock)."""
    index: int
    """Ledger index of its ``vote`` entry."""

    def to_json(self) -> dict[str, Any]:
        """``{approver, decision, reason, at, ledger_index}``."""
        return {
            "approver": self.approver,
            "decision": self.decision,
            "reason": self.reason,
            "at": self.at,
            "ledger_index": self.index,
        }


@dataclass(frozen=True, slots=True)
class Approval:
    """One approval as its ledger entries say it is now (see the module docstring)."""

    approval_id: str
    request_id: str
    trace_id: str | None
    principal: str
    """Who made the request (who may collect; who may never approve it)."""
    intent: Mapping[str, Any]
    """The intent as the decision entry logged it (sensitive arguments redacted)."""
    intent_digest: str
    """Digest of the real intent: the only one a collected grant is good for."""
    action: str
    rules: tuple[str, ...]
    """Ids of the rules that asked for the approval."""
    status: Status
    required: int
    """Distinct approvers needed."""
    approvers: tuple[str, ...]
    """Who may vote: principal ids or prefixes ending in ``*`` (empty: nobody)."""
    votes: tuple[Vote, ...]
    """Counted votes, in ledger order."""
    expires_at: float
    decision_index: int
    collected_index: int | None = None
    """Ledger index of the ``collected`` entry, once the grant was issued."""
    policy_digest: str = ""
    """The bundle that decided the request (the ``pol`` claim of the collected grant)."""
    pending_index: int = 0
    """Ledger index of the ``pending`` entry."""
    grant: Mapping[str, Any] | None = None
    """``{jti, kid, aud, exp}`` of the collected grant."""

    @property
    def approved_by(self) -> tuple[str, ...]:
        """Approvers who voted to approve, in ledger order."""
        return tuple(vote.approver for vote in self.votes if vote.decision == "approve")

    @property
    def denied_by(self) -> Vote | None:
        """The vote that denied it, if one did."""
        return next((vote for vote in self.votes if vote.decision == "deny"), None)

    def to_json(self) -> dict[str, Any]:
        """The runtime API's form (docs/http-api.md "Approvals"), plus ``action``,
        ``policy_digest``, ``collected_index`` and ``grant``."""
        return {
            "approval_id": self.approval_id,
            "request_id": self.request_id,
            "trace_id": self.trace_id,
            "principal": self.principal,
            "action": self.action,
            "intent": _json_copy(self.intent),
            "intent_digest": self.intent_digest,
            "policy_digest": self.policy_digest,
            "rules": list(self.rules),
            "status": self.status,
            "required": self.required,
            "approvers": list(self.approvers),
            "votes": [vote.to_json() for vote in self.votes],
            "expires_at": self.expires_at,
            "decision_index": self.decision_index,
            "collected_index": self.collected_index,
            "grant": None if self.grant is None else dict(self.grant),
        }
