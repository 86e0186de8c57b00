"""Human approvals through the gate: quorum, who may vote, expiry, the one grant (§9).

Real homes, the real SQLite ledger and a fixed clock. Every refusal is checked to leave
the ledger as it was, and every step to be a ledger entry linked to its decision.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import pytest

from clearance._internal.entries import timestamp
from clearance._internal.gate.core import Gate
from clearance._internal.grants.token import peek_claims
from clearance._internal.home import Home
from clearance._internal.intent import Intent
from clearance._internal.ledger.audit import verify
from clearance._internal.ledger.sqlite import SQLiteLedger
from clearance._internal.wiring import open_gate
from clearance.errors import (
    ApprovalRequired,
    Conflict,
    Denied,
    InputError,
    InvalidGrant,
    NotFound,
    NotPermitted,
)

from .approvals_support import (
    PRINCIPAL,
    approval_entries,
    open_approvals_gate,
    refund,
    request_approval,
    transfer,
)
from .conftest import T0, FixedClock


@pytest.fixture
def gate(home: Home, clock: FixedClock) -> Iterator[Gate]:
    yield from open_approvals_gate(home.path, clock)


def reopen(home: Home, clock: FixedClock) -> Gate:
    return open_gate(home.path, principal=PRINCIPAL, clock=clock, durability="relaxed")


# --- the pending approval ---------------------------------------------------------------


def test_the_pending_entry_holds_the_terms_of_the_rule(gate: Gate) -> None:
    intent = transfer()
    with pytest.raises(ApprovalRequired) as needed:
        gate.authorize(intent)
    approval_id = needed.value.approval_id
    assert needed.value.decision["expires_at"] == T0 + 600
    assert needed.value.decision["approval_id"] == approval_id
    ((index, pending),) = approval_entries(gate, approval_id)
    decision = gate.ledger.find("decision", pending["request_id"])[0]
    assert pending["status"] == "pending"
    assert pending["decision_index"] == decision.index < index
    assert pending["required"] == 2
    assert pending["approvers"] == ["user:*"]
    assert pending["rules"] == ["transfers-need-two-humans"]
    assert pending["principal"] == PRINCIPAL
    assert pending["action"] == "transfer"
    assert pending["intent_digest"] == decision.entry["intent_digest"]
    assert pending["expires_at"] == timestamp(T0 + 600)
    approval = gate.approval(approval_id)
    assert (approval.status, approval.required, approval.votes) == ("pending", 2, ())
    assert approval.intent == decision.entry["intent"]


def test_a_rule_without_a_ttl_takes_the_default_of_fifteen_minutes(gate: Gate) -> None:
    approval = gate.approval(request_approval(gate, refund()))
    assert approval.expires_at == T0 + 900
    assert (approval.required, approval.approvers) == (1, ("*",))


# --- votes ------------------------------------------------------------------------------


def test_a_quorum_of_two_counts_each_approver_once(gate: Gate) -> None:
    approval_id = request_approval(gate, transfer())
    first = gate.approve(approval_id, approver="user:alice", reason="invoice checked")
    assert (first.status, first.approved_by) == ("pending", ("user:alice",))
    size = gate.ledger.size()
    with pytest.raises(Conflict, match="already voted"):
        gate.approve(approval_id, approver="user:alice", reason="checked again")
    assert gate.ledger.size() == size
    assert gate.approval(approval_id).approved_by == ("user:alice",)
    done = gate.approve(approval_id, approver="user:bob", reason="second pair of eyes")
    assert done.status == "approved"
    assert done.approved_by == ("user:alice", "user:bob")
    steps = [entry["status"] for _, entry in approval_entries(gate, approval_id)]
    assert steps == ["pending", "vote", "vote", "approved"]
    with pytest.raises(Conflict, match="no more votes"):
        gate.approve(approval_id, approver="user:carol", reason="late")


def test_nobody_approves_a_request_of_their_own_principal(gate: Gate) -> None:
    approval_id = request_approval(gate, refund())
    size = gate.ledger.size()
    for vote in (gate.approve, gate.deny):
        with pytest.raises(NotPermitted, match="their own principal"):
            vote(approval_id, approver=PRINCIPAL, reason="I am sure")
    assert gate.ledger.size() == size
    assert gate.approval(approval_id).status == "pending"


def test_only_the_rules_approvers_may_vote(gate: Gate) -> None:
    approval_id = request_approval(gate, transfer())
    size = gate.ledger.size()
    with pytest.raises(NotPermitted, match=r"approvers are user:\*"):
        gate.approve(approval_id, approver="ops:carol", reason="looks fine")
    with pytest.raises(NotPermitted):
        gate.deny(approval_id, approver="agent:auditor", reason="no")
    assert gate.ledger.size() == size


@pytest.mark.parametrize(
    ("approver", "reason", "message"),
    [
        ("user:alice", "", "needs a reason"),
        ("user:alice", "   ", "needs a reason"),
        ("user alice", "ok", "principal id"),
        ("user:alice", "x" * 2001, "at most 2000"),
    ],
)
def test_votes_are_validated(gate: Gate, approver: str, reason: str, message: str) -> None:
    approval_id = request_approval(gate, transfer())
    with pytest.raises(InputError, match=message):
        gate.approve(approval_id, approver=approver, reason=reason)


def test_one_deny_denies_and_nothing_is_granted(gate: Gate) -> None:
    approval_id = request_approval(gate, transfer())
    gate.approve(approval_id, approver="user:alice", reason="fine by me")
    denied = gate.deny(approval_id, approver="user:bob", reason="wrong payee")
    assert denied.status == "denied"
    assert denied.denied_by is not None
    assert denied.denied_by.reason == "wrong payee"
    steps = [entry["status"] for _, entry in approval_entries(gate, approval_id)]
    assert steps == ["pending", "vote", "vote", "denied"]
    size = gate.ledger.size()
    with pytest.raises(Denied, match="denied by user:bob: wrong payee") as refused:
        gate.collect(approval_id)
    assert not isinstance(refused.value, ApprovalRequired)
    assert refused.value.reasons == ["approval-denied"]
    with pytest.raises(Conflict):
        gate.approve(approval_id, approver="user:carol", reason="overrule")
    assert gate.ledger.size() == size


# --- expiry -----------------------------------------------------------------------------


def test_an_expired_approval_counts_as_denied(gate: Gate, clock: FixedClock) -> None:
    approval_id = request_approval(gate, transfer())
    gate.approve(approval_id, approver="user:alice", reason="ok")
    clock.advance(599)
    assert gate.approval(approval_id).status == "pending"
    clock.advance(1)
    assert gate.approval(approval_id).status == "expired"
    assert gate.approval(approval_id).status == "expired"  # recorded once
    steps = [entry["status"] for _, entry in approval_entries(gate, approval_id)]
    assert steps == ["pending", "vote", "expired"]
    with pytest.raises(Denied, match="expired before it was approved"):
        gate.collect(approval_id)
    with pytest.raises(Conflict, match="expired"):
        gate.approve(approval_id, approver="user:bob", reason="too late")
    assert [entry["status"] for _, entry in approval_entries(gate, approval_id)][-1] == "expired"


def test_a_vote_past_expiry_records_the_expiry_and_is_refused(
    gate: Gate, clock: FixedClock
) -> None:
    approval_id = request_approval(gate, refund())
    clock.advance(900)
    with pytest.raises(Conflict, match="expired; it counts as denied"):
        gate.approve(approval_id, approver="user:alice", reason="sorry, late")
    steps = [entry["status"] for _, entry in approval_entries(gate, approval_id)]
    assert steps == ["pending", "expired"]


def test_expire_approvals_sweeps_every_due_one(gate: Gate, clock: FixedClock) -> None:
    short = request_approval(gate, transfer())  # 600 s
    long = request_approval(gate, refund())  # 900 s
    done = request_approval(gate, refund())
    gate.approve(done, approver="user:alice", reason="fine")
    clock.advance(600)
    assert [a.approval_id for a in gate.approvals("expired")] == [short]  # listing: no write
    assert gate.expire_approvals() == 1
    assert gate.expire_approvals() == 0
    clock.advance(300)
    assert gate.expire_approvals() == 1
    assert {a.approval_id for a in gate.approvals("expired")} == {short, long}
    assert [a.approval_id for a in gate.approvals("approved")] == [done]


# --- collecting the grant ---------------------------------------------------------------


def approved(gate: Gate, intent: Intent) -> str:
    approval_id = request_approval(gate, intent)
    gate.approve(approval_id, approver="user:alice", reason="ok")
    gate.approve(approval_id, approver="user:bob", reason="ok")
    return approval_id


def test_pending_is_not_collectable(gate: Gate) -> None:
    approval_id = request_approval(gate, transfer())
    gate.approve(approval_id, approver="user:alice", reason="one of two")
    with pytest.raises(ApprovalRequired, match="1 of 2 approvals") as pending:
        gate.collect(approval_id)
    assert pending.value.approval_id == approval_id


def test_the_grant_is_for_exactly_the_approved_intent(gate: Gate, clock: FixedClock) -> None:
    approval_id = approved(gate, transfer(750.0))
    approval = gate.approval(approval_id)
    clock.advance(30)
    authorization = gate.collect(approval_id)
    claims = peek_claims(authorization.grant)
    assert claims is not None
    assert claims["idg"] == approval.intent_digest
    assert (claims["trc"], claims["par"]) == (approval.trace_id, None)
    assert (claims["rid"], claims["lix"]) == (approval.request_id, approval.decision_index)
    assert (claims["sub"], claims["act"], claims["aud"]) == (PRINCIPAL, "transfer", gate.audience)
    assert claims["exp"] - claims["nbf"] == gate.grant_lifetime
    assert claims["iat"] == int(T0 + 30)
    assert authorization.decision.effect == "allow"
    assert authorization.intent.digest == approval.intent_digest
    changed = Intent.from_json(
        {**authorization.intent.members(), "args": {"to": "acme", "amount": 751.0}}
    )
    with pytest.raises(InvalidGrant):
        gate.verify(authorization.grant, changed)
    verified = gate.verify(authorization.grant, authorization.intent)
    assert verified.jti == claims["jti"]
    with pytest.raises(InvalidGrant):  # single use, like any grant
        gate.verify(authorization.grant, authorization.intent)
    (collected,) = [e for _, e in approval_entries(gate, approval_id) if e["status"] == "collected"]
    assert collected["grant"]["jti"] == claims["jti"]
    assert gate.ledger.find("key", collected["grant"]["kid"])  # signed with a logged key


def test_the_grant_is_collected_once_even_after_a_restart(
    gate: Gate, home: Home, clock: FixedClock
) -> None:
    approval_id = approved(gate, transfer())
    gate.collect(approval_id)
    with pytest.raises(Conflict, match="already collected"):
        gate.collect(approval_id)
    gate.close()
    with reopen(home, clock) as second:
        assert second.approval(approval_id).status == "collected"
        size = second.ledger.size()
        with pytest.raises(Conflict, match="already collected"):
            second.collect(approval_id)
        assert second.ledger.size() == size


def test_only_the_requester_collects(gate: Gate, home: Home, clock: FixedClock) -> None:
    approval_id = approved(gate, transfer())
    with pytest.raises(NotPermitted, match="bound to agent:ops-bot"):
        gate.collect(approval_id, principal="agent:other")
    gate.close()  # one writer at a time (docs/design.md §7)
    with (
        open_gate(home.path, principal="agent:other", clock=clock, durability="relaxed") as other,
        pytest.raises(NotPermitted, match="only agent:ops-bot"),
    ):
        other.collect(approval_id)
    with open_gate(home.path, multi_principal=True, clock=clock, durability="relaxed") as service:
        with pytest.raises(NotPermitted, match="only agent:ops-bot"):
            service.collect(approval_id, principal="agent:other")
        assert service.collect(approval_id, principal=PRINCIPAL).grant


def test_redacted_arguments_stay_out_of_the_ledger_yet_the_grant_binds_them(
    gate: Gate, home: Home, clock: FixedClock
) -> None:
    iban = "DE89370400440532013000"
    intent = transfer(300.0, iban=iban)
    kept = approved(gate, intent)
    logged = approved(gate, transfer(300.0, iban=iban))
    approval = gate.approval(kept)
    assert iban not in str(approval.to_json())
    # This process decided it: the real intent comes back with the grant.
    back = gate.collect(kept).intent
    assert back.digest == approval.intent_digest
    assert back.args["iban"] == iban
    gate.close()
    with reopen(home, clock) as second:
        # After a restart only the logged form is known; the grant still binds the real one.
        authorization = second.collect(logged)
        assert authorization.intent.args["iban"] != iban
        real = Intent.from_json({**authorization.intent.members(), "args": {**intent.args}})
        assert second.verify(authorization.grant, real).idg == real.digest


# --- reading ----------------------------------------------------------------------------


def test_listing_is_newest_first_by_status_with_a_cursor(gate: Gate) -> None:
    ids = [request_approval(gate, refund(float(n))) for n in range(5)]
    gate.approve(ids[1], approver="user:alice", reason="ok")
    assert [a.approval_id for a in gate.approvals()] == ids[::-1]
    assert [a.approval_id for a in gate.approvals("pending", limit=2)] == [ids[4], ids[3]]
    assert [a.approval_id for a in gate.approvals("pending", after=ids[3])] == [ids[2], ids[0]]
    assert [a.approval_id for a in gate.approvals(status="approved")] == [ids[1]]
    assert gate.approvals("collected") == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"status": "done"}, "status must be one of"),
        ({"limit": 0}, "limit must be"),
        ({"limit": 1001}, "limit must be"),
        ({"after": "a-nope"}, "unknown cursor"),
    ],
)
def test_listing_arguments_are_checked(gate: Gate, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        gate.approvals(**kwargs)  # type: ignore[arg-type]


def test_an_unknown_approval_is_not_found(gate: Gate) -> None:
    for call in (
        lambda: gate.approval("a000000000000000000000000"),
        lambda: gate.approve("a000000000000000000000000", approver="user:a", reason="x"),
        lambda: gate.collect("a000000000000000000000000"),
    ):
        with pytest.raises(NotFound, match="no approval"):
            call()


def test_every_step_is_linked_to_its_decision_and_the_log_verifies(
    gate: Gate, clock: FixedClock
) -> None:
    flows = [approved(gate, transfer()), request_approval(gate, refund())]
    gate.collect(flows[0])
    gate.deny(flows[1], approver="user:alice", reason="no")
    for approval_id in flows:
        entries = approval_entries(gate, approval_id)
        decision_index = entries[0][1]["decision_index"]
        decision = gate.ledger.get(decision_index).entry
        assert decision["type"] == "decision"
        assert decision["approval_id"] == approval_id
        for _, entry in entries:
            assert entry["decision_index"] == decision_index
            assert entry["request_id"] == decision["request_id"]
            assert entry["trace_id"] == decision["trace_id"]
        # The approval's entries are found by the decision's request id, like its outcome.
        assert len(gate.ledger.find("approval", decision["request_id"])) == len(entries)
    assert verify(cast(SQLiteLedger, gate.ledger)).ok
