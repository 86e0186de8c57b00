"""An approval's state, folded from its ``approval`` ledger entries in log order.

Every step of an approval is an ``approval`` entry linked to its decision
(``request_id``, ``decision_index``); its ``status`` names the step
(:func:`clearance._internal.entries.approval_step_entry`). The log order is the truth:
a step counts only if it is a valid transition at its place in the log, so two
processes that raced can never both win, and whatever else a writer appends cannot
change an outcome already reached.

Transitions (docs/design.md §9):

* ``pending`` (the first entry) fixes the terms: principal, quorum (``required``),
  ``approvers`` patterns, ``expires_at``. A later ``pending`` entry counts for nothing.
* ``vote`` counts while the approval is pending, if it was cast before ``expires_at``
  (its entry's ``at``), by a valid principal id that matches ``approvers``, is not the
  request's principal and has not voted yet, with decision ``approve`` or ``deny`` and
  a non-empty reason. One ``deny`` vote denies. ``required`` distinct ``approve``
  votes approve.
* ``approved`` and ``denied`` record the status the counted votes reached; they count
  only when they agree with it, and change nothing.
* ``expired`` counts while pending, when its ``at`` is at or after ``expires_at``.
* ``collected`` counts once, after the approval was approved: the grant was issued.
* ``denied``, ``expired`` and ``collected`` are final. An ``approved`` approval does not
  expire: it waits for its one collection.

A pending approval read at or after ``expires_at`` *is* expired (:meth:`Fold.status_at`),
whether or not an ``expired`` entry was appended yet: it counts as denied.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from clearance._internal.approvals.model import VOTE_DECISIONS, Approval, Status, Vote
from clearance._internal.entries import parse_timestamp
from clearance._internal.intent import PRINCIPAL_PATTERN
from clearance._internal.policy.approval_rules import matches_any
from clearance.errors import InputError

__all__ = ["Fold", "Terms", "entry_time", "snapshot", "terms_of"]


def entry_time(entry: Mapping[str, Any], key: str = "at") -> float | None:
    """The POSIX time in ``entry[key]`` (RFC 3339), or None when it is not one."""
    value = entry.get(key)
    if not isinstance(value, str):
        return None
    try:
        return parse_timestamp(value).timestamp()
    except (InputError, OverflowError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class Terms:
    """What an approval's ``pending`` entry fixed."""

    approval_id: str
    request_id: str
    trace_id: str | None
    decision_index: int
    pending_index: int
    expires_at: float
    required: int
    approvers: tuple[str, ...]
    rules: tuple[str, ...]
    principal: str | None
    """None only in entries written before the workflow existed (the decision has it)."""
    intent_digest: str | None
    action: str | None


def terms_of(entry: Mapping[str, Any], index: int) -> Terms:
    """The terms of a ``pending`` entry at ``index``; ValueError naming what is malformed.

    Entries written before quorums existed hold no ``required``, ``approvers``, ``rules``,
    ``principal``, ``intent_digest`` or ``action``: one approver, anyone, and the rest
    taken from the decision.
    """
    if entry.get("type") != "approval" or entry.get("status") != "pending":
        raise ValueError(f"entry {index} is not a pending approval entry")
    expires_at = entry_time(entry, "expires_at")
    required = entry.get("required", 1)
    approvers = entry.get("approvers", ["*"])
    rules = entry.get("rules", [])
    decision_index = entry.get("decision_index")
    problems = [
        name
        for name, ok in (
            ("approval_id", isinstance(entry.get("approval_id"), str)),
            ("request_id", isinstance(entry.get("request_id"), str)),
            ("decision_index", type(decision_index) is int and 0 <= decision_index < index),
            ("expires_at", expires_at is not None),
            ("required", type(required) is int and required >= 1),
            ("approvers", _strings(approvers)),
            ("rules", _strings(rules)),
            ("principal", entry.get("principal") is None or _id(entry.get("principal"))),
        )
        if not ok
    ]
    if problems:
        raise ValueError(f"pending approval entry {index} has a malformed {', '.join(problems)}")
    trace_id = entry.get("trace_id")
    digest = entry.get("intent_digest")
    action = entry.get("action")
    return Terms(
        approval_id=str(entry["approval_id"]),
        request_id=str(entry["request_id"]),
        trace_id=trace_id if isinstance(trace_id, str) else None,
        decision_index=cast(int, decision_index),
        pending_index=index,
        expires_at=cast(float, expires_at),
        required=cast(int, required),
        approvers=tuple(approvers),
        rules=tuple(rules),
        principal=cast("str | None", entry.get("principal")),
        intent_digest=digest if isinstance(digest, str) else None,
        action=action if isinstance(action, str) else None,
    )


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _id(value: object) -> bool:
    return isinstance(value, str) and PRINCIPAL_PATTERN.fullmatch(value) is not None


class Fold:
    """The state of one approval after the entries applied so far (see the module rules)."""

    __slots__ = ("applied", "collected_index", "grant", "recorded", "state", "terms", "votes")

    def __init__(self, terms: Terms) -> None:
        """Start from the ``pending`` entry's terms."""
        self.terms = terms
        self.state: Status = "pending"
        """The status the entries reached (without the clock: see :meth:`status_at`)."""
        self.votes: list[Vote] = []
        self.collected_index: int | None = None
        self.grant: Mapping[str, Any] | None = None
        self.applied: set[int] = {terms.pending_index}
        """Indexes of the entries that counted."""
        self.recorded: set[str] = set()
        """The ``approved``/``denied`` records that counted (each counts once)."""

    def status_at(self, now: float) -> Status:
        """The status at ``now``: a pending approval at or past ``expires_at`` is expired."""
        if self.state == "pending" and now >= self.terms.expires_at:
            return "expired"
        return self.state

    def voted(self, approver: str) -> bool:
        """Whether ``approver`` has a counted vote."""
        return any(vote.approver == approver for vote in self.votes)

    def may_vote(self, approver: str) -> bool:
        """Whether ``approver`` matches the approvers and is not the requester."""
        return approver != self.terms.principal and matches_any(self.terms.approvers, approver)

    def apply(self, entry: Mapping[str, Any], index: int) -> bool:
        """Apply one entry of this approval; True when it counted."""
        if entry.get("approval_id") != self.terms.approval_id or index in self.applied:
            return False
        step = entry.get("status")
        counted = False
        if step == "vote":
            counted = self._vote(entry, index)
        elif step in ("approved", "denied"):
            counted = self.state == step and step not in self.recorded
            if counted:
                self.recorded.add(str(step))
        elif step == "expired":
            at = entry_time(entry)
            counted = self.state == "pending" and at is not None and at >= self.terms.expires_at
            if counted:
                self.state = "expired"
        elif step == "collected":
            grant = entry.get("grant")
            counted = self.state == "approved" and isinstance(grant, Mapping)
            if counted:
                self.state = "collected"
                self.collected_index = index
                self.grant = cast(Mapping[str, Any], grant)
        if counted:
            self.applied.add(index)
        return counted

    def apply_all(self, stored: Sequence[tuple[int, Mapping[str, Any]]]) -> None:
        """Apply ``(index, entry)`` pairs in index order."""
        for index, entry in sorted(stored, key=lambda pair: pair[0]):
            self.apply(entry, index)

    def _vote(self, entry: Mapping[str, Any], index: int) -> bool:
        approver, decision = entry.get("approver"), entry.get("decision")
        reason = entry.get("reason")
        at = entry_time(entry)
        if (
            self.state != "pending"
            or at is None
            or at >= self.terms.expires_at
            or not _id(approver)
            or decision not in VOTE_DECISIONS
            or not isinstance(reason, str)
            or not reason.strip()
        ):
            return False
        approver = cast(str, approver)
        if not self.may_vote(approver) or self.voted(approver):
            return False
        self.votes.append(Vote(approver, cast(Any, decision), reason, at, index))
        if decision == "deny":
            self.state = "denied"
        elif sum(vote.decision == "approve" for vote in self.votes) >= self.terms.required:
            self.state = "approved"
        return True


def snapshot(fold: Fold, decision: Mapping[str, Any], now: float) -> Approval:
    """The :class:`Approval` at ``now`` from ``fold`` and its (proven) decision entry.

    The request's principal, action, intent and digests are the decision's; the
    caller has checked that the approval's own copies agree with them.
    """
    terms = fold.terms
    intent = decision["intent"]
    return Approval(
        approval_id=terms.approval_id,
        request_id=terms.request_id,
        trace_id=terms.trace_id,
        principal=str(intent["principal"]),
        intent=intent,
        intent_digest=str(decision["intent_digest"]),
        action=str(intent["action"]),
        rules=terms.rules,
        status=fold.status_at(now),
        required=terms.required,
        approvers=terms.approvers,
        votes=tuple(fold.votes),
        expires_at=terms.expires_at,
        decision_index=terms.decision_index,
        collected_index=fold.collected_index,
        policy_digest=str(decision.get("policy_digest", "")),
        pending_index=terms.pending_index,
        grant=fold.grant,
    )
