"""Approvals under concurrency: an approval yields one grant, an approver counts once.

Threads race on one gate, and two gates (as two processes would) race on one home's
ledger; whatever the interleaving, exactly one collection and one vote per approver win,
the others get Conflict, and the log verifies.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from clearance._internal.gate.core import Gate
from clearance._internal.home import Home
from clearance._internal.ledger.audit import verify
from clearance._internal.wiring import open_gate
from clearance.errors import Conflict, LedgerError

from .approvals_support import (
    PRINCIPAL,
    approval_entries,
    open_approvals_gate,
    refund,
    request_approval,
    transfer,
)
from .conftest import FixedClock

RACERS = 8


@pytest.fixture
def gate(home: Home, clock: FixedClock) -> Iterator[Gate]:
    yield from open_approvals_gate(home.path, clock)


def _race(calls: list[Callable[[], Any]]) -> tuple[list[Any], list[BaseException]]:
    """Run ``calls`` at once (released together by a barrier); their results and errors."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(call: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            value = call()
        except BaseException as exc:  # collected and asserted on below
            with lock:
                errors.append(exc)
        else:
            with lock:
                results.append(value)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results, errors


def test_racing_collections_yield_exactly_one_grant(gate: Gate) -> None:
    approval_id = request_approval(gate, refund())
    gate.approve(approval_id, approver="user:alice", reason="refund checked")
    grants, errors = _race([lambda: gate.collect(approval_id)] * RACERS)
    assert len(grants) == 1
    assert len(errors) == RACERS - 1
    assert all(isinstance(e, Conflict) for e in errors), errors
    steps = [entry["status"] for _, entry in approval_entries(gate, approval_id)]
    assert steps.count("collected") == 1


def test_racing_votes_of_one_approver_count_once(gate: Gate) -> None:
    approval_id = request_approval(gate, transfer())  # a quorum of two
    votes, errors = _race(
        [lambda: gate.approve(approval_id, approver="user:alice", reason="checked")] * RACERS
    )
    assert len(votes) == 1
    assert all(isinstance(e, Conflict) for e in errors), errors
    approval = gate.approval(approval_id)
    assert (approval.status, approval.approved_by) == ("pending", ("user:alice",))


def test_two_gates_on_one_home_collect_one_grant(gate: Gate, home: Home, clock: FixedClock) -> None:
    approval_id = request_approval(gate, refund())
    gate.approve(approval_id, approver="user:alice", reason="refund checked")
    with open_gate(home.path, principal=PRINCIPAL, clock=clock, durability="relaxed") as other:
        grants, errors = _race(
            [lambda: gate.collect(approval_id), lambda: other.collect(approval_id)] * 2
        )
        assert len(grants) == 1
        # Two processes appending to one SQLite file is not how clearance is deployed (one
        # server per home; the CLI appends now and then): a store that keeps losing the
        # append race refuses, which grants nothing either.
        assert all(isinstance(e, Conflict | LedgerError) for e in errors), errors
    steps = [entry["status"] for _, entry in approval_entries(gate, approval_id)]
    assert steps.count("collected") <= 2  # a losing append may be logged, never counted
    assert gate.approval(approval_id).status == "collected"
    gate.close()
    assert verify(home.ledger_path).ok
