"""Leader/follower group commit: results, batching, failures and the commit role."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from clearance._internal.ledger.groupcommit import GroupCommit
from clearance.errors import LedgerError, TamperError


class Recorder:
    """A commit function that records its batches and returns ``item * 10`` per item."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()

    def __call__(self, items: Sequence[int]) -> list[int]:
        self.entered.set()
        assert self.release.wait(10)
        self.batches.append(list(items))
        return [item * 10 for item in items]


def test_a_lone_submitter_commits_its_item_alone() -> None:
    commit = Recorder()
    group: GroupCommit[int, int] = GroupCommit(commit)
    assert [group.submit(n) for n in range(3)] == [0, 10, 20]
    assert commit.batches == [[0], [1], [2]]
    assert (group.batches, group.items) == (3, 3)


def test_submitters_arriving_during_a_commit_share_the_next_one() -> None:
    commit = Recorder()
    commit.release.clear()
    group: GroupCommit[int, int] = GroupCommit(commit)
    results: dict[int, int] = {}

    def submit(n: int) -> None:
        results[n] = group.submit(n)

    first = threading.Thread(target=submit, args=(0,))
    first.start()
    assert commit.entered.wait(10)  # item 0 is being committed and holds the role
    others = [threading.Thread(target=submit, args=(n,)) for n in range(1, 6)]
    for thread in others:
        thread.start()
    while len(group._queue) < 5:  # white-box: wait until all five queued behind the holder
        threading.Event().wait(0.001)
    commit.release.set()
    for thread in [first, *others]:
        thread.join(10)
    assert results == {n: n * 10 for n in range(6)}
    assert commit.batches == [[0], [1, 2, 3, 4, 5]]
    assert (group.batches, group.items) == (2, 6)


@pytest.mark.parametrize("concurrent", [False, True])
def test_a_failed_commit_raises_a_fresh_ledger_error_and_frees_the_role(concurrent: bool) -> None:
    failure = RuntimeError("disk on fire")
    calls: list[int] = []

    def commit(items: Sequence[int]) -> list[int]:
        calls.append(len(items))
        if len(calls) == 1:
            raise failure
        return list(items)

    group: GroupCommit[int, int] = GroupCommit(commit)
    errors: list[BaseException] = []

    def submit() -> None:
        try:
            group.submit(7)
        except LedgerError as exc:
            errors.append(exc)

    if concurrent:
        thread = threading.Thread(target=submit)
        thread.start()
        thread.join(10)
    else:
        submit()
    (error,) = errors
    assert type(error) is LedgerError
    assert "disk on fire" in str(error)
    assert error.__cause__ is failure
    assert group.submit(8) == 8  # the role was handed back


def test_a_tamper_error_stays_a_tamper_error() -> None:
    def commit(items: Sequence[int]) -> list[int]:
        raise TamperError("root mismatch", index=4)

    group: GroupCommit[int, int] = GroupCommit(commit)
    with pytest.raises(TamperError, match="root mismatch") as caught:
        group.submit(1)
    assert caught.value.index == 4


def test_a_keyboard_interrupt_propagates_unchanged_and_frees_the_role() -> None:
    interrupted: list[bool] = []

    def commit(items: Sequence[int]) -> list[int]:
        if not interrupted:
            interrupted.append(True)
            raise KeyboardInterrupt
        return list(items)

    group: GroupCommit[int, int] = GroupCommit(commit)
    with pytest.raises(KeyboardInterrupt):
        group.submit(1)
    assert group.submit(2) == 2


def test_a_commit_returning_the_wrong_number_of_results_fails() -> None:
    group: GroupCommit[int, int] = GroupCommit(lambda items: [])
    with pytest.raises(LedgerError, match="wrong number of results"):
        group.submit(1)


def test_exclusive_holds_back_commits_until_it_ends() -> None:
    commit = Recorder()
    group: GroupCommit[int, int] = GroupCommit(commit)
    result: list[int] = []
    with group.exclusive():
        thread = threading.Thread(target=lambda: result.append(group.submit(3)))
        thread.start()
        thread.join(0.2)
        assert thread.is_alive()
        assert commit.batches == []
    thread.join(10)
    assert result == [30]


def test_wait_until_sees_every_commit() -> None:
    commit = Recorder()
    group: GroupCommit[int, int] = GroupCommit(commit)
    threading.Timer(0.05, lambda: group.submit(1)).start()
    assert group.wait_until(lambda: group.items == 1, timeout=10)
    assert not group.wait_until(lambda: group.items == 2, timeout=0.05)
