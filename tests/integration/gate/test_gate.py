"""The governed call end to end: real home, real SQLite ledger, real keys."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from typing import Any

import pytest

from clearance._internal.canonical import json_digest
from clearance._internal.entries import check_redacted
from clearance._internal.gate.core import Gate
from clearance._internal.intent import Intent
from clearance.errors import ApprovalRequired, Denied

from .conftest import FixedClock


def entries_of(gate: Gate, kind: str) -> list[dict[str, Any]]:
    return [dict(e.entry) for e in gate.ledger.scan() if e.entry["type"] == kind]


def pay(to: str, amount: float, **extra: Any) -> dict[str, Any]:
    return {
        "principal": "agent:ops-bot",
        "action": "pay_invoice",
        "args": {"to": to, "amount": amount, "currency": "EUR", **extra},
    }


CAP = {"spend_cap": 10_000}
"""Bounds of a trace that allows payments (the example bundle denies them without a cap)."""


def test_allowed_call_logs_decision_before_body_and_outcome_after(gate: Gate) -> None:
    seen_during_body: list[dict[str, Any]] = []
    with (
        gate.trace("Pay acme-supplies", bounds=CAP),
        gate.clearance(pay("acme-supplies", 120.0)) as cleared,
    ):
        seen_during_body.extend(entries_of(gate, "decision"))
        assert not entries_of(gate, "execution")
        cleared.record_result({"paid": 120})
    decision = seen_during_body[0]
    assert decision["effect"] == "allow"
    assert decision["request_id"] == cleared.request_id
    assert [r["rule"] for r in decision["reasons"]] == ["payments-known-payees"]
    assert decision["grant"]["jti"] == cleared.claims.jti
    assert cleared.claims.lix == gate.ledger.find("decision", cleared.request_id)[0].index
    (execution,) = entries_of(gate, "execution")
    assert execution["status"] == "ok"
    assert execution["result_digest"] == json_digest({"paid": 120})
    assert execution["decision_index"] == cleared.claims.lix
    # the policy and the signing key were logged before the first decision
    kinds = [e.entry["type"] for e in gate.ledger.scan()]
    assert kinds.index("policy") < kinds.index("decision")
    assert kinds.index("key") < kinds.index("decision")


def test_denied_by_argument_condition_names_the_rule(gate: Gate) -> None:
    ran = False
    with (
        pytest.raises(Denied) as denied,
        gate.clearance(
            {"principal": "agent:ops-bot", "action": "read_file", "args": {"path": "../etc/passwd"}}
        ),
    ):
        ran = True
    assert not ran
    assert denied.value.decision["effect"] == "deny"
    assert [r["rule"] for r in denied.value.decision["reasons"]] == ["no-path-traversal"]
    with (
        pytest.raises(Denied) as denied2,
        gate.clearance(
            {"principal": "agent:ops-bot", "action": "delete_file", "args": {"path": "a.txt"}}
        ),
    ):
        ran = True
    assert not ran
    assert "no-deletes" in [r["rule"] for r in denied2.value.decision["reasons"]]
    assert [e["effect"] for e in entries_of(gate, "decision")] == ["deny", "deny"]
    assert not entries_of(gate, "execution")


def test_error_in_body_is_recorded_and_reraised(gate: Gate) -> None:
    with (
        pytest.raises(ZeroDivisionError),
        gate.trace("Pay acme-supplies", bounds=CAP),
        gate.clearance(pay("acme-supplies", 10.0)),
    ):
        _ = 1 / 0
    (execution,) = entries_of(gate, "execution")
    assert execution["status"] == "error"
    assert execution["error_type"] == "ZeroDivisionError"


def test_mandate_grounds_payments_after_untrusted_input(gate: Gate) -> None:
    with gate.trace("Pay the March invoice from initech-llc, EUR 90", bounds=CAP, opened_by="app"):
        with gate.clearance(
            {"principal": "agent:ops-bot", "action": "fetch_document", "args": {"path": "inv.txt"}}
        ):
            pass
        with pytest.raises(Denied) as planted, gate.clearance(pay("evil-corp", 450.0)):
            pytest.fail("the planted payment must not run")
        rules = [r["rule"] for r in planted.value.decision["reasons"]]
        assert "no-ungrounded-payments-after-untrusted-input" in rules
        with gate.clearance(pay("initech-llc", 90.0)):
            pass
    decisions = entries_of(gate, "decision")
    assert decisions[1]["facts"]["untrusted"] is True
    assert decisions[1]["facts"]["mandate"]["text"].startswith("Pay the March")
    (trace,) = entries_of(gate, "trace")
    assert trace["mandate"]["text"] == decisions[0]["facts"]["mandate"]["text"]
    assert {d["trace_id"] for d in decisions} == {trace["trace_id"]}


def test_spend_cap_uses_trace_totals(gate: Gate) -> None:
    with gate.trace("Pay acme-supplies in instalments", bounds={"spend_cap": 300}):
        for _ in range(3):
            with gate.clearance(pay("acme-supplies", 100.0)):
                pass
        with pytest.raises(Denied) as over, gate.clearance(pay("acme-supplies", 100.0)):
            pytest.fail("over the spend cap")
    assert "payments-within-spend-cap" in [r["rule"] for r in over.value.decision["reasons"]]
    last = entries_of(gate, "decision")[-1]
    assert last["facts"]["totals"] == {"pay_invoice": {"amount": 300.0}}
    assert last["facts"]["count"] == 3
    assert last["facts"]["actions"] == ["pay_invoice"]  # distinct actions, not history


def test_expired_mandate_denies(gate: Gate, clock: FixedClock) -> None:
    with gate.trace("Pay acme-supplies today", bounds={"expires_at": "2026-11-18T00:00:00Z"}):
        clock.now = 1_800_000_000.0  # 2027
        with pytest.raises(Denied) as expired, gate.clearance(pay("acme-supplies", 10.0)):
            pytest.fail("mandate expired")
    assert [r["rule"] for r in expired.value.decision["reasons"]] == ["mandate-expired"]


def test_intent_cannot_escape_its_trace(gate: Gate) -> None:
    with gate.trace("narrow"), pytest.raises(ValueError, match="intent names trace 'tother'"):
        gate.authorize({**pay("acme-supplies", 1.0), "trace_id": "tother"})


def test_nested_governed_calls_inherit_trace_and_parent(gate: Gate) -> None:
    @gate.governed("write_file")
    def write_file(path: str, content: str) -> int:
        return len(content)

    @gate.governed("read_file")
    def read_file(path: str) -> int:
        return write_file(path="copy.txt", content="x" * 3)

    with gate.trace("Copy a file"):
        assert read_file("a.txt") == 3
    outer, inner = entries_of(gate, "decision")
    assert inner["trace_id"] == outer["trace_id"]
    assert inner["parent_id"] == outer["request_id"]
    assert inner["facts"]["depth"] == 1
    assert inner["parent_index"] == gate.ledger.find("decision", outer["request_id"])[0].index
    assert inner["intent"]["args"] == {"path": "copy.txt", "content": "xxx"}


def test_async_governed_function(gate: Gate) -> None:
    @gate.governed("read_file", resource="file/{path}")
    async def read_file(path: str) -> str:
        await asyncio.sleep(0)
        return f"contents of {path}"

    assert asyncio.run(read_file("notes.txt")) == "contents of notes.txt"
    (decision,) = entries_of(gate, "decision")
    assert decision["intent"]["resource"] == "file/notes.txt"
    (execution,) = entries_of(gate, "execution")
    assert execution["result_digest"] == json_digest("contents of notes.txt")


def test_approval_required_records_pending_approval(gate: Gate) -> None:
    with (
        pytest.raises(ApprovalRequired) as needed,
        gate.trace("Pay acme-supplies", bounds=CAP),
        gate.clearance(pay("acme-supplies", 900.0)),
    ):
        pytest.fail("needs approval")
    (approval,) = entries_of(gate, "approval")
    assert approval["approval_id"] == needed.value.approval_id
    assert approval["status"] == "pending"
    decision = gate.ledger.find("decision", approval["request_id"])[0]
    assert approval["decision_index"] == decision.index
    assert decision.entry["grant"] is None


def test_sensitive_arguments_are_salted_digests(gate: Gate) -> None:
    iban = "DE89370400440532013000"
    with (
        gate.trace("Pay acme-supplies", bounds=CAP),
        gate.clearance(pay("acme-supplies", 20.0, iban=iban)) as cleared,
    ):
        pass
    (decision,) = entries_of(gate, "decision")
    logged = decision["intent"]["args"]["iban"]
    assert iban not in str(decision)
    assert check_redacted(logged, iban)
    assert not check_redacted(logged, iban + "0")
    # the grant is bound to the real value
    real = Intent.from_json(pay("acme-supplies", 20.0, iban=iban))
    assert (
        cleared.claims.idg
        == real.with_context(trace_id=decision["trace_id"], parent_id=None).digest
    )
    assert decision["intent_digest"] == cleared.claims.idg


def test_replay_matches_every_decision(gate: Gate) -> None:
    with gate.trace("Pay acme-supplies EUR 50", bounds=CAP):
        with gate.clearance(pay("acme-supplies", 50.0)):
            pass
        with pytest.raises(Denied):
            gate.authorize(pay("nobody", 50.0))
    for decision in entries_of(gate, "decision"):
        result = gate.replay(decision["request_id"])
        assert result.status == "match", result.detail


def test_dry_run_writes_nothing(gate: Gate) -> None:
    trace = gate.open_trace("Pay acme-supplies", bounds=CAP)
    size = gate.ledger.size()
    _, decision, facts = gate.evaluate(pay("acme-supplies", 10.0), trace=trace)
    assert decision.effect == "allow"
    assert facts["count"] == 0
    assert gate.ledger.size() == size


def kid(token: str) -> str:
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    return str(header["kid"])


def test_a_rotation_elsewhere_takes_effect_without_a_restart(
    gate: Gate, home: Any, clock: FixedClock
) -> None:
    from clearance._internal.grants.keys import GrantKeyRing
    from clearance._internal.sealing import JWKS_PURPOSE, derive_key

    trace = gate.open_trace("Pay acme-supplies", bounds=CAP)
    before = gate.authorize(pay("acme-supplies", 10.0), trace=trace)
    # e.g. `clearance keys rotate`
    other_process = GrantKeyRing.load(
        home.grant_key_dir, seal_key=derive_key(home.read_log_skey(), JWKS_PURPOSE)
    )
    clock.advance(1)
    new_key = other_process.rotate(clock(), max_grant_lifetime=gate.grant_lifetime)
    clock.advance(2)
    after = gate.authorize(pay("acme-supplies", 10.0), trace=trace)
    assert kid(before.grant) != new_key.kid
    assert kid(after.grant) == new_key.kid
    # grants signed before the rotation still verify until they expire
    gate.execute(before.grant, before.intent, lambda: None)
    gate.execute(after.grant, after.intent, lambda: None)
    assert {e.entry["kid"] for e in gate.ledger.scan() if e.entry["type"] == "key"} == {
        kid(before.grant),
        new_key.kid,
    }


def test_a_rotation_picked_up_is_logged_with_both_kids(
    gate: Gate, home: Any, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    from clearance._internal.grants.keys import GrantKeyRing
    from clearance._internal.sealing import JWKS_PURPOSE, derive_key

    trace = gate.open_trace("Pay acme-supplies", bounds=CAP)
    old = kid(gate.authorize(pay("acme-supplies", 10.0), trace=trace).grant)
    ring = GrantKeyRing.load(
        home.grant_key_dir, seal_key=derive_key(home.read_log_skey(), JWKS_PURPOSE)
    )
    clock.advance(1)
    new = ring.rotate(clock(), max_grant_lifetime=gate.grant_lifetime).kid
    clock.advance(2)
    with caplog.at_level(logging.INFO, logger="clearance.gate"):
        gate.authorize(pay("acme-supplies", 10.0), trace=trace)
        clock.advance(2)
        gate.authorize(pay("acme-supplies", 10.0), trace=trace)  # nothing new: no second line
    rotations = [r for r in caplog.records if r.name == "clearance.gate" and "rotation" in r.msg]
    assert [(r.levelno, r.getMessage()) for r in rotations] == [
        (logging.INFO, f"grant key rotation picked up: signing with {new} instead of {old}")
    ]
