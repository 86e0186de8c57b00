"""A bundle with quorum rules and helpers shared by the approval tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from clearance._internal.gate.core import Gate
from clearance._internal.intent import Intent
from clearance._internal.wiring import open_gate
from clearance.errors import ApprovalRequired

PRINCIPAL = "agent:ops-bot"

BUNDLE = """\
version: 1
strict: true
tools:
  transfer:
    sensitive: [iban]
    args_schema:
      type: object
      required: [to, amount]
      additionalProperties: false
      properties:
        to: {type: string}
        amount: {type: number}
        iban: {type: string}
  refund:
    args_schema: {type: object, required: [amount], properties: {amount: {type: number}}}
rules:
  - id: small-transfers
    effect: allow
    actions: [transfer]
    when: args.amount <= 100.0
  - id: transfers-need-two-humans
    effect: approval_required
    actions: [transfer]
    when: args.amount > 100.0
    approvals: 2
    approvers: ["user:*"]
    approval_ttl: 600
    message: Transfers over 100 need two people
  - id: refunds-need-anyone
    effect: approval_required
    actions: [refund]
    message: Refunds need one approval
"""


def open_approvals_gate(home: Path, clock: Callable[[], float]) -> Iterator[Gate]:
    """A gate bound to :data:`PRINCIPAL` over ``home`` with :data:`BUNDLE` (for fixtures)."""
    install_bundle(home)
    opened = open_gate(home, principal=PRINCIPAL, clock=clock, durability="relaxed")
    try:
        yield opened
    finally:
        opened.close()


def install_bundle(home: Path) -> None:
    """Replace the home's bundle with :data:`BUNDLE`."""
    policies = home / "policies"
    for old in policies.glob("*.y*ml"):
        old.unlink()
    (policies / "approvals.yaml").write_text(BUNDLE, encoding="utf-8")


def transfer(amount: float = 500.0, **extra: Any) -> Intent:
    return Intent.create(
        principal=PRINCIPAL, action="transfer", args={"to": "acme", "amount": amount, **extra}
    )


def refund(amount: float = 20.0) -> Intent:
    return Intent.create(principal=PRINCIPAL, action="refund", args={"amount": amount})


def request_approval(gate: Gate, intent: Intent) -> str:
    """Authorize ``intent``, which must need an approval; its approval id."""
    with pytest.raises(ApprovalRequired) as needed:
        gate.authorize(intent)
    return needed.value.approval_id


def approval_entries(gate: Gate, approval_id: str) -> list[tuple[int, dict[str, Any]]]:
    """``(index, entry)`` of every approval entry of ``approval_id``, in log order."""
    return [
        (stored.index, dict(stored.entry))
        for stored in gate.ledger.scan()
        if stored.entry["type"] == "approval" and stored.entry["approval_id"] == approval_id
    ]
