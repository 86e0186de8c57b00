"""PolicyHolder: change detection, refusing bad bundles, keeping the last good one."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest

from clearance._internal.policy.cel_engine import CelPolicyEngine
from clearance._internal.policy.reload import PolicyHolder
from clearance.errors import PolicyError

from .support import request, write

GOOD = "version: 1\nrules:\n  - {id: allow-all, effect: allow}\n"
OTHER = "version: 1\nrules:\n  - {id: deny-all, effect: deny}\n"
BROKEN = "version: 1\nrules:\n  - {id: broken, effect: allow, when: 'args.x <'}\n"


def rewrite(path: Path, text: str) -> None:
    """Write ``text`` and move the mtime forward, so the change is visible on any filesystem."""
    before = path.stat().st_mtime_ns
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(before + 10**9, before + 10**9))


def test_first_load_failure_raises(tmp_path: Path) -> None:
    write(tmp_path, BROKEN)
    with pytest.raises(PolicyError, match=r"rules\[0\] \(broken\).when"):
        PolicyHolder.load(tmp_path)
    with pytest.raises(PolicyError, match="no such policy file"):
        PolicyHolder.load(tmp_path / "absent")


def test_change_break_fix_cycle(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    holder = PolicyHolder.load(tmp_path, interval=1.0)
    first = holder.digest
    assert holder.engine.evaluate(request()).effect == "allow"

    rewrite(path, OTHER)
    assert holder.maybe_reload(100.0) is True
    second = holder.digest
    assert second != first
    assert holder.engine.evaluate(request()).rule_ids == ["deny-all"]
    assert holder.last_error is None

    rewrite(path, BROKEN)
    assert holder.maybe_reload(101.0) is False
    assert holder.digest == second
    assert holder.last_error is not None
    assert "syntax error" in holder.last_error
    assert holder.engine.evaluate(request()).rule_ids == ["deny-all"]

    rewrite(path, GOOD)
    assert holder.maybe_reload(102.0) is True
    assert holder.digest == first
    assert holder.last_error is None


def test_checks_at_most_once_per_interval(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    holder = PolicyHolder.load(tmp_path, interval=5.0)
    assert holder.maybe_reload(10.0) is False  # first look: unchanged
    rewrite(path, OTHER)
    assert holder.maybe_reload(14.9) is False  # too soon to look again
    assert holder.maybe_reload(15.0) is True


def test_a_failed_signature_is_not_retried_until_the_files_change(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    calls: list[Path] = []

    def loader(root: Path) -> CelPolicyEngine:
        calls.append(root)
        return CelPolicyEngine.from_directory(root)

    holder = PolicyHolder.load(tmp_path, interval=0.0, loader=loader)
    rewrite(path, BROKEN)
    holder.maybe_reload(1.0)
    holder.maybe_reload(2.0)
    assert len(calls) == 2  # the initial load and one failed attempt
    assert holder.reload() is False  # forced: tried again, still broken
    assert len(calls) == 3


def test_new_and_removed_files_are_changes(tmp_path: Path) -> None:
    write(tmp_path, GOOD, "a.yaml")
    holder = PolicyHolder.load(tmp_path, interval=0.0)
    first = holder.digest
    extra = write(tmp_path, "version: 1\nrules:\n  - {id: extra, effect: deny}\n", "b.yaml")
    assert holder.maybe_reload(1.0) is True
    assert holder.engine.evaluate(request()).rule_ids == ["extra"]
    extra.unlink()
    assert holder.maybe_reload(2.0) is True
    assert holder.digest == first


def test_deleting_every_file_keeps_the_last_good_bundle(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    holder = PolicyHolder.load(tmp_path, interval=0.0)
    first = holder.digest
    path.unlink()
    assert holder.maybe_reload(1.0) is False
    assert holder.digest == first
    assert holder.last_error is not None
    assert "no *.yaml or *.yml policy files" in holder.last_error


def test_unchanged_policy_keeps_the_same_engine(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    holder = PolicyHolder.load(tmp_path, interval=0.0)
    engine = holder.engine
    rewrite(path, GOOD + "# a comment changes the file, not the policy\n")
    assert holder.maybe_reload(1.0) is False
    assert holder.engine is engine


def test_a_loader_bug_keeps_the_last_good_bundle(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    loads: list[Path] = []

    def loader(root: Path) -> CelPolicyEngine:
        loads.append(root)
        if len(loads) > 1:
            raise RuntimeError("boom")
        return CelPolicyEngine.from_directory(root)

    holder = PolicyHolder.load(tmp_path, interval=0.0, loader=loader)
    first = holder.digest
    rewrite(path, OTHER)
    assert holder.maybe_reload(1.0) is False
    assert holder.digest == first
    assert holder.last_error == "unexpected error while loading the bundle: RuntimeError('boom')"


def test_concurrent_readers_always_see_a_complete_engine(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    holder = PolicyHolder.load(tmp_path, interval=0.0)
    digests = {holder.digest}
    stop = threading.Event()
    seen: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            engine = holder.engine
            decision = engine.evaluate(request())
            seen.append(decision.policy_digest)
            if decision.policy_digest != engine.digest:
                seen.append("mismatch")

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    for i, text in enumerate([OTHER, GOOD, OTHER, GOOD]):
        rewrite(path, text)
        holder.maybe_reload(float(i + 1))
        digests.add(holder.digest)
    stop.set()
    for thread in threads:
        thread.join()
    assert "mismatch" not in seen
    assert set(seen) <= digests


def test_a_refused_reload_is_logged_with_the_loaders_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, GOOD)
    holder = PolicyHolder.load(tmp_path, interval=0.0)
    good = holder.digest
    rewrite(path, BROKEN)
    with caplog.at_level(logging.WARNING, logger="clearance.policy"):
        assert holder.engine_at(1.0).digest == good  # the last good bundle stays active
        assert holder.engine_at(2.0).digest == good  # same files: not retried, not logged
    (record,) = [r for r in caplog.records if r.name == "clearance.policy"]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        f"policy bundle {tmp_path}: reload refused, keeping bundle {good}: {holder.last_error}"
    )
    assert "syntax error" in record.getMessage()


def test_an_unreadable_bundle_is_logged_once_per_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, GOOD)
    holder = PolicyHolder.load(tmp_path, interval=0.0)
    path.unlink()
    with caplog.at_level(logging.WARNING, logger="clearance.policy"):
        for now in (1.0, 2.0, 3.0):
            holder.maybe_reload(now)
    messages = [r.getMessage() for r in caplog.records if r.name == "clearance.policy"]
    assert len(messages) == 1
    assert "reload refused" in messages[0]
    assert "no *.yaml or *.yml policy files" in messages[0]
