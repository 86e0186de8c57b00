"""A live decision and its replay agree on numbers, whichever way the model wrote them.

Regression for a real agent benchmark run: with ``args.amount + 1.5 <= 100.0`` the
live decision for ``amount: 60.0`` was ``allow`` while the ledger held ``60``
(RFC 8785), so replay evaluated an integer, failed with "No such overload" and
reported a mismatch.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from clearance._internal.gate.core import Gate
from clearance._internal.home import Home
from clearance._internal.wiring import open_gate
from clearance.errors import Denied

from .conftest import FixedClock

BUNDLE = """\
version: 1
strict: true
tools:
  pay_invoice:
    args_schema:
      type: object
      required: [amount]
      properties:
        amount: {type: number, minimum: 0}
rules:
  - id: small-payments
    effect: allow
    actions: [pay_invoice]
    when: args.amount + 1.5 <= 100.0
  - id: within-running-total
    effect: deny
    actions: [pay_invoice]
    when: >
      has(trace.totals.pay_invoice) &&
      trace.totals.pay_invoice.amount + args.amount > trace.mandate.bounds.cap + 0.0
"""


@pytest.fixture
def gate(home: Home, clock: FixedClock) -> Iterator[Gate]:
    for old in home.policy_dir.iterdir():
        old.unlink()
    (home.policy_dir / "numbers.yaml").write_text(textwrap.dedent(BUNDLE), encoding="utf-8")
    opened = open_gate(home.path, principal="agent:ops-bot", clock=clock, durability="relaxed")
    try:
        yield opened
    finally:
        opened.close()


def pay(amount: Any) -> dict[str, Any]:
    return {"principal": "agent:ops-bot", "action": "pay_invoice", "args": {"amount": amount}}


def test_the_replay_of_an_integral_double_matches(gate: Gate) -> None:
    with gate.trace("one payment", bounds={"cap": 1000}), gate.clearance(pay(60.0)) as cleared:
        pass
    (entry,) = [e.entry for e in gate.ledger.scan() if e.entry["type"] == "decision"]
    assert entry["intent"]["args"] == {"amount": 60}  # RFC 8785 writes 60.0 as 60
    assert type(entry["intent"]["args"]["amount"]) is int
    result = gate.replay(cleared.request_id)
    assert result.status == "match", result.detail


def test_live_decisions_and_their_replays_agree(gate: Gate) -> None:
    request_ids: list[str] = []
    with gate.trace("pay in instalments", bounds={"cap": 150}):
        for amount in (60.0, 60, 6e1):
            try:
                with gate.clearance(pay(amount)) as cleared:
                    request_ids.append(cleared.request_id)
            except Denied as denied:
                request_ids.append(denied.decision["request_id"])
    decisions = [gate.ledger.find("decision", rid)[0].entry for rid in request_ids]
    # 60 + 60 is within the cap of 150; a third 60 is not, however it is written
    assert [d["effect"] for d in decisions] == ["allow", "allow", "deny"]
    assert decisions[0]["intent"]["args"] == {"amount": 60}  # what the ledger holds
    for request_id in request_ids:
        result = gate.replay(request_id)
        assert result.status == "match", result.detail


def test_the_same_number_written_differently_decides_alike(gate: Gate) -> None:
    effects = []
    for amount in (60, 60.0, 98.5, 99, 99.0):
        with gate.trace("one payment", bounds={"cap": 1000}):
            try:
                with gate.clearance(pay(amount)):
                    effects.append("allow")
            except Denied:
                effects.append("deny")
    assert effects == ["allow", "allow", "allow", "deny", "deny"]
