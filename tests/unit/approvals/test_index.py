"""The approvals index over a real SQLite ledger: typed reads, and another writer's entries.

The ledger's ``of_type`` must return exactly the approval entries (through either of its
two query plans), and ``refresh`` must adopt what another writer committed, with its
checkpoint, so that the store can keep appending and still close cleanly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clearance._internal.approvals.index import ApprovalIndex
from clearance._internal.entries import approval_entry, approval_step_entry
from clearance._internal.ledger.audit import verify
from clearance._internal.ledger.checkpoint import NoteSigner
from clearance._internal.ledger.sqlite import SQLiteLedger

ORIGIN = "approvals.test.example/log"
T0 = 1_795_000_000.0


@pytest.fixture
def signer() -> NoteSigner:
    return NoteSigner.generate(ORIGIN)


def open_store(path: Path, signer: NoteSigner) -> SQLiteLedger:
    return SQLiteLedger.open(
        path, signer=signer, origin=ORIGIN, durability="relaxed", checkpoint_interval=0.05
    )


def decision(n: int) -> dict[str, Any]:
    return {"type": "decision", "v": 1, "at": "2026-11-18T08:00:00.000000Z", "request_id": f"r{n}"}


def pending(n: int, decision_index: int) -> dict[str, Any]:
    return approval_entry(
        T0,
        approval_id=f"a{n}",
        request_id=f"r{n}",
        trace_id=None,
        status="pending",
        decision_index=decision_index,
        expires_at=T0 + 900,
        principal="agent:bot",
    )


def vote(n: int, decision_index: int, approver: str) -> dict[str, Any]:
    return approval_step_entry(
        T0 + 1,
        approval_id=f"a{n}",
        request_id=f"r{n}",
        trace_id=None,
        decision_index=decision_index,
        status="vote",
        details={"approver": approver, "decision": "approve", "reason": "ok"},
    )


@pytest.mark.parametrize("filler", [10, 5000])  # both query plans of of_type
def test_of_type_reads_exactly_the_approval_entries(
    tmp_path: Path, signer: NoteSigner, filler: int
) -> None:
    with open_store(tmp_path / "ledger.db", signer) as store:
        store.append_many([decision(i) for i in range(filler)])
        first = store.append(decision(-1))
        at = store.append(pending(1, first))
        store.append_many([decision(i) for i in range(filler)])
        voted = store.append(vote(1, first, "user:alice"))
        found = [(s.index, s.entry["status"]) for s in store.of_type("approval")]
        assert found == [(at, "pending"), (voted, "vote")]
        assert [s.index for s in store.of_type("approval", at + 1)] == [voted]
        index = ApprovalIndex(store)
        index.sync()
        assert index.request_of("a1") == "r1"
        assert index.newest_first(T0, status="approved") == ["a1"]
        assert index.due(T0 + 900) == []


def test_another_writers_entries_are_adopted_with_their_checkpoint(
    tmp_path: Path, signer: NoteSigner
) -> None:
    path = tmp_path / "ledger.db"
    store = open_store(path, signer)
    try:
        first = store.append(decision(1))
        store.append(pending(1, first))
        index = ApprovalIndex(store)
        index.sync()
        assert index.newest_first(T0, status="pending") == ["a1"]
        generation = store.generation
        store.checkpoint_covering(store.size() - 1)
        with open_store(path, signer) as other:  # e.g. `clearance approvals approve`
            other.append(vote(1, first, "user:alice"))
        assert store.size() == 2  # not seen yet
        index.sync()  # adopts the row, proven to extend the tree, and its checkpoint
        assert store.size() == 3
        assert store.generation == generation + 1
        assert index.newest_first(T0, status="approved") == ["a1"]
        latest = store.latest_checkpoint()
        assert latest is not None
        assert latest.size == 3
        assert store.refresh() is False  # nothing new: one read, no adoption
        store.append(decision(2))
    finally:
        store.close()  # signs past the adopted checkpoint; no duplicate size
    assert verify(path).ok
