"""Approved requests count toward their trace's facts: a cap cannot be exceeded by approvals.

An ``approval_required`` decision reserves its numeric arguments in ``trace.totals``
(and taints ``trace.untrusted`` for a tool marked ``untrusted_output``) when it is
decided, so approving two requests that together exceed a cap is impossible: the
second is denied by the cap rule before anyone is asked.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from clearance._internal.gate.core import Gate
from clearance._internal.home import Home
from clearance._internal.intent import Intent
from clearance._internal.wiring import open_gate
from clearance.errors import ApprovalRequired, Denied

from .conftest import FixedClock

PRINCIPAL = "agent:ops-bot"

BUNDLE = """\
version: 1
strict: true
tools:
  transfer:
    args_schema: {type: object, required: [to, amount], properties: {amount: {type: number}}}
  browse:
    untrusted_output: true
    args_schema: {type: object}
rules:
  - id: within-cap
    effect: deny
    actions: [transfer]
    when: >
      double(has(trace.totals.transfer) ? trace.totals.transfer.amount : 0)
        + double(args.amount) > double(trace.mandate.bounds.spend_cap)
  - id: big-transfers-need-approval
    effect: approval_required
    actions: [transfer]
    when: args.amount > 100.0
  - id: small-transfers
    effect: allow
    actions: [transfer]
    when: args.amount <= 100.0
  - id: browsing-needs-approval
    effect: approval_required
    actions: [browse]
  - id: nothing-after-untrusted-content
    effect: deny
    actions: [transfer]
    when: trace.untrusted
"""


def _install(home: Path) -> None:
    for old in (home / "policies").glob("*.y*ml"):
        old.unlink()
    (home / "policies" / "caps.yaml").write_text(BUNDLE, encoding="utf-8")


@pytest.fixture
def gate(home: Home, clock: FixedClock) -> Iterator[Gate]:
    _install(home.path)
    opened = open_gate(home.path, principal=PRINCIPAL, clock=clock, durability="relaxed")
    try:
        yield opened
    finally:
        opened.close()


def _transfer(amount: float) -> Intent:
    return Intent.create(principal=PRINCIPAL, action="transfer", args={"to": "a", "amount": amount})


def test_two_approvals_cannot_exceed_the_cap(gate: Gate) -> None:
    trace = gate.open_trace("pay the two invoices", bounds={"spend_cap": 1000})
    with pytest.raises(ApprovalRequired) as first:
        gate.authorize(_transfer(900), trace=trace)
    gate.approve(first.value.approval_id, approver="user:alice", reason="invoice 1 checked")
    assert gate.collect(first.value.approval_id).grant
    with pytest.raises(Denied) as second:
        gate.authorize(_transfer(600), trace=trace)
    assert not isinstance(second.value, ApprovalRequired)
    assert second.value.reasons == ["within-cap"]
    # A pending (not yet approved) amount is reserved too.
    with pytest.raises(Denied) as third:
        gate.authorize(_transfer(150), trace=trace)
    assert second.value.reasons == third.value.reasons == ["within-cap"]
    # ... and what is left under the cap is still allowed.
    assert gate.authorize(_transfer(100), trace=trace).grant


def test_an_untrusted_tool_taints_the_trace_when_it_needs_approval(gate: Gate) -> None:
    trace = gate.open_trace("read then pay", bounds={"spend_cap": 1000})
    browse = Intent.create(principal=PRINCIPAL, action="browse", args={})
    with pytest.raises(ApprovalRequired):
        gate.authorize(browse, trace=trace)
    with pytest.raises(Denied) as after:
        gate.authorize(_transfer(10), trace=trace)
    assert after.value.reasons == ["nothing-after-untrusted-content"]


def test_a_pending_request_does_not_count_as_an_action(gate: Gate) -> None:
    trace = gate.open_trace("pay", bounds={"spend_cap": 1000})
    with pytest.raises(ApprovalRequired):
        gate.authorize(_transfer(500), trace=trace)
    _, _, facts = gate.evaluate(_transfer(1), trace=trace)
    assert facts["actions"] == []
    assert facts["totals"] == {"transfer": {"amount": 500}}
