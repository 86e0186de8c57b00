"""Waiting for a human: ``clearance(intent, wait=...)``, ``@governed(wait=...)``, ``resume``,
and a vote cast by another process (the real ``clearance approvals approve`` command).

A side-effect counter proves the governed body runs exactly when the approval was
granted, and never when it was denied or the wait ran out.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import cast

import pytest

from clearance._internal.gate.core import Gate
from clearance._internal.home import Home
from clearance._internal.ledger.audit import verify
from clearance._internal.ledger.sqlite import SQLiteLedger
from clearance._internal.wiring import open_gate
from clearance.errors import ApprovalRequired, Denied, InputError

from .approvals_support import (
    PRINCIPAL,
    approval_entries,
    install_bundle,
    open_approvals_gate,
    refund,
    request_approval,
    transfer,
)
from .conftest import FixedClock


@pytest.fixture
def gate(home: Home, clock: FixedClock) -> Iterator[Gate]:
    yield from open_approvals_gate(home.path, clock)


def when_pending(gate: Gate, act: Callable[[str], object]) -> threading.Thread:
    """A thread that waits for the next pending approval to appear, then acts on it."""

    def run() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = gate.approvals("pending", limit=1)
            if found:
                act(found[0].approval_id)
                return
            time.sleep(0.01)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_the_body_runs_once_the_quorum_approves(gate: Gate) -> None:
    ran: list[str] = []

    def approve_twice(approval_id: str) -> None:
        gate.approve(approval_id, approver="user:alice", reason="ok")
        gate.approve(approval_id, approver="user:bob", reason="ok")

    helper = when_pending(gate, approve_twice)
    with gate.clearance(transfer(), wait=10) as cleared:
        ran.append(cleared.request_id)
        cleared.record_result({"sent": True})
    helper.join(5)
    assert len(ran) == 1
    (approval,) = gate.approvals()
    assert approval.status == "collected"
    assert approval.request_id == ran[0]
    assert cleared.claims.aud == gate.in_process_audience
    assert cleared.claims.idg == approval.intent_digest
    (execution,) = [e.entry for e in gate.ledger.scan() if e.entry["type"] == "execution"]
    assert execution["decision_index"] == approval.decision_index
    assert approval.grant is not None
    assert execution["jti"] == approval.grant["jti"]
    assert execution["status"] == "ok"
    assert verify(cast(SQLiteLedger, gate.ledger)).ok


def test_a_denial_while_waiting_never_runs_the_body(gate: Gate) -> None:
    ran = 0
    helper = when_pending(
        gate, lambda a: gate.deny(a, approver="user:alice", reason="not this payee")
    )
    with (
        pytest.raises(Denied, match="not this payee") as refused,
        gate.clearance(transfer(), wait=10),
    ):
        ran += 1
    helper.join(5)
    assert not isinstance(refused.value, ApprovalRequired)
    assert ran == 0
    assert not [e for e in gate.ledger.scan() if e.entry["type"] == "execution"]


def test_expiry_while_waiting_never_runs_the_body(gate: Gate, clock: FixedClock) -> None:
    ran = 0
    helper = when_pending(gate, lambda _: clock.advance(600))
    with pytest.raises(Denied, match="expired"), gate.clearance(transfer(), wait=10):
        ran += 1
    helper.join(5)
    assert ran == 0


def test_a_wait_that_runs_out_raises_approval_required_and_resume_continues(
    gate: Gate,
) -> None:
    ran = 0
    started = time.monotonic()
    with (
        pytest.raises(ApprovalRequired) as pending,
        gate.clearance(refund(), wait=timedelta(milliseconds=300)),
    ):
        ran += 1
    assert 0.3 <= time.monotonic() - started < 5
    assert ran == 0
    approval_id = pending.value.approval_id
    with pytest.raises(ApprovalRequired):
        gate.resume(approval_id, wait=0.05)
    gate.approve(approval_id, approver="user:alice", reason="ok")
    authorization = gate.resume(approval_id)
    assert gate.verify(authorization.grant, authorization.intent).rid == authorization.request_id


def test_wait_for_approval_returns_as_soon_as_it_is_decided(gate: Gate) -> None:
    approval_id = request_approval(gate, refund())
    assert gate.wait_for_approval(approval_id, 0.05).status == "pending"
    vote = {"approver": "user:a", "reason": "y"}
    timer = threading.Timer(0.2, gate.approve, (approval_id,), vote)
    timer.start()
    started = time.monotonic()
    assert gate.wait_for_approval(approval_id, 10).status == "approved"
    assert time.monotonic() - started < 5
    timer.join()
    with pytest.raises(InputError, match="timeout must be"):
        gate.wait_for_approval(approval_id, -1)


def test_governed_functions_can_wait(gate: Gate) -> None:
    calls: list[float] = []

    @gate.governed("refund", wait=10)
    def give_back(amount: float) -> str:
        calls.append(amount)
        return "refunded"

    helper = when_pending(gate, lambda a: gate.approve(a, approver="user:alice", reason="ok"))
    assert give_back(12.5) == "refunded"
    helper.join(5)
    assert calls == [12.5]

    with pytest.raises(ValueError, match="sync functions"):

        @gate.governed("refund", wait=1)
        async def not_in_async(amount: float) -> None:
            pass


def test_a_vote_by_another_process_wakes_a_waiting_gate(home: Home) -> None:
    """The CLI approves in its own process; the waiting gate notices from the ledger."""
    install_bundle(home.path)
    with open_gate(home.path, principal=PRINCIPAL, durability="relaxed") as gate:
        approval_id = request_approval(gate, refund())
        result: dict[str, object] = {}
        waiter = threading.Thread(
            target=lambda: result.setdefault("approval", gate.wait_for_approval(approval_id, 60))
        )
        waiter.start()
        voted = subprocess.run(
            [
                sys.executable,
                "-m",
                "clearance",
                "approvals",
                "approve",
                approval_id,
                "--approver",
                "user:alice",
                "--reason",
                "approved from the command line",
                "--home",
                str(home.path),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert voted.returncode == 0, voted.stderr
        noticed = time.monotonic()
        waiter.join(30)
        assert time.monotonic() - noticed < 5
        approval = result["approval"]
        assert getattr(approval, "status", None) == "approved"
        # The gate adopted the other process's entries and keeps appending after them.
        authorization = gate.collect(approval_id)
        assert gate.verify(authorization.grant, authorization.intent)
        steps = [entry["status"] for _, entry in approval_entries(gate, approval_id)]
        assert steps == ["pending", "vote", "approved", "collected"]
        assert verify(cast(SQLiteLedger, gate.ledger)).ok
    audit = subprocess.run(
        [sys.executable, "-m", "clearance", "log", "verify", "--home", str(home.path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr
