"""The approval fold: which ledger entries count, in log order (docs/design.md §9)."""

from __future__ import annotations

from typing import Any

import pytest

from clearance._internal.approvals.fold import Fold, snapshot, terms_of
from clearance._internal.entries import approval_entry, approval_step_entry

T0 = 1_795_000_000.0
TTL = 900.0
PRINCIPAL = "agent:ops-bot"


def pending(**terms: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "approval_id": "a1",
        "request_id": "r1",
        "trace_id": "t1",
        "status": "pending",
        "decision_index": 4,
        "expires_at": T0 + TTL,
        "required": 1,
        "approvers": ["*"],
        "rules": ["needs-approval"],
        "principal": PRINCIPAL,
        "intent_digest": "sha256:" + "a" * 64,
        "action": "pay",
    }
    fields.update(terms)
    return approval_entry(T0, **fields)


def step(status: str, at: float = T0 + 10, **details: Any) -> dict[str, Any]:
    return approval_step_entry(
        at,
        approval_id="a1",
        request_id="r1",
        trace_id="t1",
        decision_index=4,
        status=status,
        details=details,
    )


def vote(approver: str, decision: str = "approve", at: float = T0 + 10) -> dict[str, Any]:
    return step("vote", at, approver=approver, decision=decision, reason="looked at it")


def fold_of(*entries: dict[str, Any], **terms: Any) -> Fold:
    fold = Fold(terms_of(pending(**terms), 5))
    for offset, entry in enumerate(entries, start=6):
        fold.apply(entry, offset)
    return fold


def test_one_approve_vote_reaches_a_quorum_of_one() -> None:
    fold = fold_of(vote("user:alice"))
    assert fold.state == "approved"
    assert [v.approver for v in fold.votes] == ["user:alice"]
    assert fold.applied == {5, 6}


def test_a_quorum_of_two_needs_two_distinct_approvers() -> None:
    fold = fold_of(vote("user:alice"), vote("user:alice"), required=2)
    assert fold.status_at(T0) == "pending"
    assert fold.applied == {5, 6}  # the second vote of the same approver does not count
    fold.apply(vote("user:bob"), 8)
    assert fold.status_at(T0) == "approved"
    assert fold.applied == {5, 6, 8}


def test_one_deny_vote_denies_even_after_approvals() -> None:
    fold = fold_of(vote("user:alice"), vote("user:bob", "deny"), required=3)
    assert fold.state == "denied"
    # Final: a later approval counts for nothing.
    assert not fold.apply(vote("user:carol"), 9)
    assert fold.state == "denied"


def test_the_requester_and_strangers_never_count() -> None:
    fold = fold_of(vote(PRINCIPAL), vote("agent:other"), approvers=["user:*"])
    assert fold.state == "pending"
    assert fold.votes == []


@pytest.mark.parametrize(
    "entry",
    [
        step("vote", approver="user:alice", decision="maybe", reason="x"),
        step("vote", approver="user:alice", decision="approve", reason="   "),
        step("vote", approver="not a principal", decision="approve", reason="x"),
        step("vote", approver="user:alice", decision="approve"),
    ],
)
def test_malformed_votes_do_not_count(entry: dict[str, Any]) -> None:
    assert fold_of(entry).state == "pending"


def test_a_vote_cast_at_or_after_expiry_does_not_count() -> None:
    fold = fold_of(vote("user:alice", at=T0 + TTL))
    assert fold.state == "pending"
    assert fold.status_at(T0 + TTL - 1) == "pending"
    assert fold.status_at(T0 + TTL) == "expired"  # counts as denied without an entry


def test_expired_counts_only_when_dated_after_expiry() -> None:
    early = fold_of(step("expired", at=T0 + 1))
    assert early.state == "pending"
    late = fold_of(step("expired", at=T0 + TTL))
    assert late.state == "expired"
    assert not late.apply(vote("user:alice", at=T0 + 5), 9)


def test_an_approved_approval_does_not_expire_and_is_collected_once() -> None:
    fold = fold_of(vote("user:alice"), step("approved", approved_by=["user:alice"]))
    assert fold.status_at(T0 + 10 * TTL) == "approved"
    assert not fold.apply(step("expired", at=T0 + TTL), 8)
    grant = {"jti": "j1", "kid": "k", "aud": "local", "exp": 1}
    assert fold.apply(step("collected", grant=grant), 9)
    assert not fold.apply(step("collected", grant={**grant, "jti": "j2"}), 10)
    assert (fold.state, fold.collected_index, fold.grant) == ("collected", 9, grant)


def test_status_records_count_only_when_the_votes_agree() -> None:
    fold = fold_of(step("approved"), required=2)
    assert fold.state == "pending"
    assert fold.applied == {5}
    assert not fold.apply(step("collected", grant={}), 7)  # nothing to collect yet
    fold.apply(vote("user:alice", "deny"), 8)
    assert fold.apply(step("denied"), 9)
    assert not fold.apply(step("denied"), 10)  # recorded once


def test_entries_of_another_approval_are_ignored() -> None:
    other = {**vote("user:alice"), "approval_id": "a2"}
    assert fold_of(other).state == "pending"


def test_terms_of_old_pending_entries_take_the_defaults() -> None:
    old = pending()
    for key in ("required", "approvers", "rules", "principal", "intent_digest", "action"):
        del old[key]
    terms = terms_of(old, 5)
    assert (terms.required, terms.approvers, terms.principal) == (1, ("*",), None)


@pytest.mark.parametrize(
    ("change", "name"),
    [
        ({"required": 0}, "required"),
        ({"required": True}, "required"),
        ({"approvers": "user:*"}, "approvers"),
        ({"decision_index": 5}, "decision_index"),  # must come before the pending entry
        ({"principal": "bad principal"}, "principal"),
    ],
)
def test_malformed_pending_entries_are_refused(change: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        terms_of({**pending(), **change}, 5)
    with pytest.raises(ValueError, match="not a pending"):
        terms_of({**pending(), "status": "vote"}, 5)


def test_snapshot_takes_the_request_from_the_decision() -> None:
    fold = fold_of(vote("user:alice", "deny"))
    intent = {"principal": PRINCIPAL, "action": "pay", "args": {"amount": 5}}
    decision = {"intent": intent, "intent_digest": "sha256:d", "policy_digest": "sha256:p"}
    approval = snapshot(fold, decision, T0 + 20)
    assert approval.status == "denied"
    assert approval.denied_by is not None
    assert approval.denied_by.approver == "user:alice"
    document = approval.to_json()
    assert document["votes"][0]["ledger_index"] == 6
    assert document["expires_at"] == T0 + TTL
    assert document["intent"] == intent
    assert document["intent"] is not intent  # a copy
