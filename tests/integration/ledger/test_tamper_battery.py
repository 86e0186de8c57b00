"""The tamper battery: an attacker who can write any file in the home but not read keys/log.skey.

Each test builds a real home (``init_home``, ``open_ledger``, policy, trace, decision
and execution entries), tampers with it the way the adversarial review did, and
asserts both halves of fail-closed rule 12 (docs/design.md §4): ``clearance log verify``
fails naming the first bad index (status 1), and ``open_ledger(home)`` refuses with
a TamperError carrying that index. Where no single entry is bad (deleted checkpoint
rows, a deleted anchor) the message names the checkpoint instead.

Regressions of the review, by its numbering: 5 (rewrite, re-hash, drop later
checkpoints; delete every checkpoint), 6 (roll ledger.db back), 7 (edit the unhashed
``type``/``ref``/``trace_id`` columns), 8 (trusting rows read after open: ``prove``).
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from clearance._cli.main import main
from clearance._internal.entries import timestamp
from clearance._internal.home import SETTINGS_FILE, Home, init_home
from clearance._internal.ledger.anchor import witness_file_name
from clearance._internal.wiring import open_ledger
from clearance.errors import TamperError

from .support import attacker, rehash_from

POLICY_DIGEST = "sha256:" + "ab" * 32
STAGES = ((10, 20, 30), (40, 50, 60))
SIZE = 60
EARLY = 30
CHILD = Path(__file__).with_name("anchor_child.py")


def content(i: int) -> dict[str, Any]:
    """Entry ``i`` of the battery's home: a policy, two traces, then decisions and outcomes."""
    at = timestamp(time.time())
    if i == 0:
        return {"type": "policy", "v": 1, "at": at, "digest": POLICY_DIGEST, "bundle": {}}
    trace = "t-1" if i % 2 else "t-2"
    if i in (1, 2):
        mandate = {"text": "pay the March invoices", "bounds": {"spend_cap": 500}}
        return {"type": "trace", "v": 1, "at": at, "trace_id": trace, "mandate": mandate}
    rid = f"r{i:04d}"
    if (i // 2) % 2 == 0:
        effect = "deny" if i % 3 == 0 else "allow"
        intent = {
            "principal": "agent:billing-bot",
            "action": "transfer_funds",
            "resource": None,
            "args": {"amount": i, "to": "acct-9"},
            "purpose": "pay an invoice",
            "trace_id": trace,
            "parent_id": None,
            "input": None,
        }
        return {
            "type": "decision",
            "v": 1,
            "at": at,
            "request_id": rid,
            "trace_id": trace,
            "intent": intent,
            "facts": {"id": trace, "depth": 1, "count": i, "untrusted": False},
            "now": at,
            "effect": effect,
            "reasons": [{"rule": "no-transfers" if effect == "deny" else "small-transfers"}],
            "policy_digest": POLICY_DIGEST,
        }
    return {
        "type": "execution",
        "v": 1,
        "at": at,
        "request_id": rid,
        "trace_id": trace,
        "status": "ok",
        "result_digest": "sha256:" + f"{i:064x}",
    }


def first(kind: str, *, trace: str | None = None, effect: str | None = None, after: int) -> int:
    """The first index ``>= after`` whose entry matches (by :func:`content`'s layout)."""
    for i in range(after, SIZE):
        e = content(i)
        found = (e["type"], e.get("trace_id"), e.get("effect"))
        if found == (kind, trace or found[1], effect or found[2]):
            return i
    raise AssertionError("no such entry in the battery's layout")


def _grow(home: Home, sizes: tuple[int, ...]) -> None:
    with open_ledger(home) as ledger:
        for size in sizes:
            base = ledger.size()
            ledger.append_many([content(i) for i in range(base, size)])
            ledger.checkpoint_covering(size - 1)


LEDGER_FILES = ("ledger.db", "ledger.db-wal", "ledger.db-shm")


def _save(home: Home, target: Path) -> None:
    """Copy the (closed) ledger files and the anchor to ``target``."""
    target.mkdir()
    for name in (*LEDGER_FILES, "checkpoints/latest"):
        source = home.path / name
        if source.exists():
            (target / name.replace("/", "_")).write_bytes(source.read_bytes())


def _restore(home: Home, saved: Path, *, anchor: bool) -> None:
    """Roll the ledger (and, if asked, the anchor) back to ``saved``; no stale -wal/-shm."""
    for name in LEDGER_FILES:
        (home.path / name).unlink(missing_ok=True)
        copy = saved / name
        if copy.exists():
            (home.path / name).write_bytes(copy.read_bytes())
    if anchor:
        (home.anchor_dir / "latest").write_bytes((saved / "checkpoints_latest").read_bytes())


def _configure(home: Home, **settings: Any) -> Home:
    """Change settings in ``clearance.yaml`` and reload the home."""
    path = home.path / SETTINGS_FILE
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw.update(settings)
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return Home.load(home.path)


@dataclass(frozen=True)
class Pristine:
    home: Path
    early: Path  # ledger files and anchor when the log had EARLY entries


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Pristine:
    root = tmp_path_factory.mktemp("battery")
    home = init_home(root / "home", now=time.time())
    _grow(home, STAGES[0])
    _save(home, root / "early")
    _grow(home, STAGES[1])
    return Pristine(home.path, root / "early")


@pytest.fixture
def home(pristine: Pristine, tmp_path: Path) -> Home:
    target = tmp_path / "home"
    shutil.copytree(pristine.home, target)
    return Home.load(target)


@pytest.fixture
def raw(home: Home) -> Iterator[sqlite3.Connection]:
    conn = attacker(home.ledger_path)
    try:
        yield conn
    finally:
        conn.close()


# --- helpers: the CLI in process, and the two halves of every assertion ------------------


def clearance(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``clearance ARGS`` through :func:`clearance._cli.main.main`; (status, stdout, stderr)."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return code, captured.out, captured.err


def verify_fails(
    capsys: pytest.CaptureFixture[str], home: Home, index: int | None, *words: str
) -> str:
    """``clearance log verify`` exits 1, names ``index`` (or no index) and ``words``."""
    code, out, err = clearance(capsys, "log", "verify", "--home", str(home.path))
    assert code == 1, (out, err)
    assert err.startswith("error: log verification FAILED"), err
    if index is None:
        assert "FAILED:" in err, err
    else:
        assert f"FAILED at index {index}:" in err, err
    for word in words:
        assert word in err, err
    return err


def open_refused(home: Home, index: int | None, *words: str) -> TamperError:
    """``open_ledger(home)`` raises TamperError(index=index) naming ``words``; writes nothing."""
    rows = _checkpoint_rows(home)
    anchored = (home.anchor_dir / "latest").read_bytes() if _anchored(home) else None
    with pytest.raises(TamperError) as failure:
        open_ledger(home)
    assert failure.value.index == index, str(failure.value)
    for word in words:
        assert word in str(failure.value)
    # The review's finding 5: the gate signed a new checkpoint over the forged tree.
    assert _checkpoint_rows(home) == rows
    assert ((home.anchor_dir / "latest").read_bytes() if _anchored(home) else None) == anchored
    return failure.value


def _anchored(home: Home) -> bool:
    return (home.anchor_dir / "latest").exists()


def _checkpoint_rows(home: Home) -> list[int]:
    if not home.ledger_path.exists():
        return []
    conn = sqlite3.connect(home.ledger_path)
    try:
        return [int(s) for (s,) in conn.execute("SELECT size FROM checkpoints ORDER BY size")]
    finally:
        conn.close()


def verify_passes(capsys: pytest.CaptureFixture[str], home: Home) -> str:
    code, out, err = clearance(capsys, "log", "verify", "--home", str(home.path))
    assert code == 0, (out, err)
    assert "OK" in out
    return out


# --- the untampered home -------------------------------------------------------------------


def test_the_pristine_home_opens_and_verifies(
    capsys: pytest.CaptureFixture[str], home: Home
) -> None:
    out = verify_passes(capsys, home)
    assert f"{SIZE} entries" in out
    assert "extends its 1 anchored checkpoint" in out
    with open_ledger(home) as ledger:
        assert ledger.size() == SIZE
        latest = ledger.latest_checkpoint()
    assert latest is not None
    assert (home.anchor_dir / "latest").read_text(encoding="utf-8") == latest.note


def test_a_home_reopened_many_times_still_opens_and_verifies(
    capsys: pytest.CaptureFixture[str], home: Home
) -> None:
    for round_no in range(25):
        with open_ledger(home) as ledger:
            base = ledger.size()
            ledger.append_many([content(SIZE + (round_no % 20) * 2 + k) for k in range(2)])
            assert ledger.size() == base + 2
    with open_ledger(home) as ledger:
        size = ledger.size()
        latest = ledger.latest_checkpoint()
    assert size == SIZE + 50
    assert latest is not None
    assert latest.size == size
    assert (home.anchor_dir / "latest").read_text(encoding="utf-8") == latest.note
    verify_passes(capsys, home)


def test_log_verify_writes_nothing(capsys: pytest.CaptureFixture[str], home: Home) -> None:
    def files() -> dict[str, bytes]:
        return {
            str(p.relative_to(home.path)): p.read_bytes()
            for p in home.path.rglob("*")
            if p.is_file() and not p.name.endswith(("-shm", "-wal"))
        }

    before = files()
    verify_passes(capsys, home)
    assert files() == before


# --- finding 5: rewrite and re-hash, then drop the checkpoints that no longer match ------------


def test_rewrite_rehash_and_dropped_checkpoints_are_refused(
    capsys: pytest.CaptureFixture[str], home: Home, raw: sqlite3.Connection
) -> None:
    k = first("decision", effect="deny", after=33)
    (leaf,) = raw.execute("SELECT leaf FROM entries WHERE idx = ?", (k,)).fetchone()
    forged = bytes(leaf).replace(b'"effect":"deny"', b'"effect":"allow"')
    assert forged != leaf
    raw.execute("UPDATE entries SET leaf = ? WHERE idx = ?", (forged, k))
    rehash_from(raw, k)
    raw.execute("DELETE FROM checkpoints WHERE size > ?", (k,))
    good = max(_checkpoint_rows(home))  # the newest checkpoint the attacker could keep
    assert good <= k
    verify_fails(capsys, home, good, "rewritten", "anchored")
    open_refused(home, good, "rewritten", "anchored")


def test_deleting_every_checkpoint_is_refused(
    capsys: pytest.CaptureFixture[str], home: Home, raw: sqlite3.Connection
) -> None:
    raw.execute("DELETE FROM checkpoints")
    verify_fails(capsys, home, None, f"checkpoint row of size {SIZE}", "deleted")
    open_refused(home, None, f"checkpoint row of size {SIZE}", "deleted")


# --- finding 6: rollback -------------------------------------------------------------------------


def test_a_rolled_back_ledger_is_refused(
    capsys: pytest.CaptureFixture[str], home: Home, pristine: Pristine
) -> None:
    _restore(home, pristine.early, anchor=False)
    verify_fails(capsys, home, EARLY, "removed")
    open_refused(home, EARLY, "rolled back")


def test_a_deleted_ledger_with_an_anchor_fails_verification(
    capsys: pytest.CaptureFixture[str], home: Home
) -> None:
    for name in LEDGER_FILES:
        (home.path / name).unlink(missing_ok=True)
    verify_fails(capsys, home, 0, "is missing")
    open_refused(home, 0, "removed")


def test_a_deleted_anchor_is_refused_until_adopted(
    capsys: pytest.CaptureFixture[str], home: Home
) -> None:
    (home.anchor_dir / "latest").unlink()
    verify_fails(capsys, home, None, "anchor missing")
    open_refused(home, None, "anchor missing", "clearance log anchor --adopt")
    code, out, err = clearance(capsys, "log", "anchor", "--home", str(home.path))
    assert code == 2
    assert "anchor missing" in err  # without --adopt, nothing is accepted
    code, out, err = clearance(capsys, "log", "anchor", "--adopt", "--home", str(home.path))
    assert code == 0, err
    assert "was missing" in out
    assert f"Adopted checkpoint {SIZE}" in out
    verify_passes(capsys, home)
    open_ledger(home).close()


def test_a_consistent_rollback_of_ledger_and_anchor_is_caught_only_by_a_witness(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    witness = tmp_path / "witness"
    witness.mkdir()
    home = _configure(init_home(tmp_path / "home", now=time.time()), witness_dirs=[str(witness)])
    _grow(home, STAGES[0])
    _save(home, tmp_path / "early")
    _grow(home, STAGES[1])
    anchored = witness / witness_file_name(home.settings.origin)
    assert anchored.read_text(encoding="utf-8").split("\n")[1] == str(SIZE)

    _restore(home, tmp_path / "early", anchor=True)  # an older pair, consistent with itself
    err = verify_fails(capsys, home, EARLY, "witness")
    assert str(anchored) in err
    open_refused(home, EARLY, "witness", "rolled back")

    # The documented limitation: without a witness, the same rollback is invisible.
    local_only = _configure(home, witness_dirs=[])
    verify_passes(capsys, local_only)
    with open_ledger(local_only) as ledger:
        assert ledger.size() == EARLY


def test_a_new_witness_needs_adoption(capsys: pytest.CaptureFixture[str], home: Home) -> None:
    witness = home.path.parent / "new-witness"
    witness.mkdir()
    home = _configure(home, witness_dirs=[str(witness)])
    open_refused(home, None, "anchor missing", "witness")
    code, _, err = clearance(capsys, "log", "anchor", "--adopt", "--home", str(home.path))
    assert code == 0, err
    assert (witness / witness_file_name(home.settings.origin)).is_file()
    verify_passes(capsys, home)


def test_an_unmounted_witness_directory_is_refused(home: Home) -> None:
    home = _configure(home, witness_dirs=[str(home.path.parent / "not-mounted")])
    open_refused(home, None, "anchor missing", "is it mounted")
    assert not (home.path.parent / "not-mounted").exists()  # never created


# --- finding 7: the derived columns no hash covers --------------------------------------------


def test_cleared_trace_ids_are_refused(
    capsys: pytest.CaptureFixture[str], home: Home, raw: sqlite3.Connection
) -> None:
    raw.execute("UPDATE entries SET trace_id = NULL WHERE trace_id = 't-1' AND idx >= 40")
    bad = first("decision", trace="t-1", after=40)
    bad = min(bad, first("execution", trace="t-1", after=40))
    verify_fails(capsys, home, bad, "trace_id column")
    open_refused(home, bad, "trace_id column")


@pytest.mark.parametrize(("column", "value"), [("type", "execution"), ("ref", "r-forged")])
def test_edited_type_and_ref_columns_are_refused(
    capsys: pytest.CaptureFixture[str],
    home: Home,
    raw: sqlite3.Connection,
    column: str,
    value: str,
) -> None:
    bad = first("decision", after=21)
    raw.execute(f"UPDATE entries SET {column} = ? WHERE idx = ?", (value, bad))
    verify_fails(capsys, home, bad, f"{column} column")
    open_refused(home, bad, f"{column} column")


CRAFTED = {
    "leaf stored as TEXT": ("UPDATE entries SET leaf = CAST(leaf AS TEXT) WHERE idx = ?", ()),
    "hashes stored as TEXT": ("UPDATE entries SET hashes = hex(hashes) WHERE idx = ?", ()),
    "leaf is a JSON list": ("UPDATE entries SET leaf = ? WHERE idx = ?", (b"[1]",)),
    "leaf is a JSON string": ("UPDATE entries SET leaf = ? WHERE idx = ?", (b'"x"',)),
    "leaf nested too deeply": (
        "UPDATE entries SET leaf = ? WHERE idx = ?",
        (b"[" * 100_000 + b"]" * 100_000,),
    ),
}


@pytest.mark.parametrize("craft", sorted(CRAFTED))
def test_crafted_rows_are_refused_without_a_traceback(
    capsys: pytest.CaptureFixture[str], home: Home, raw: sqlite3.Connection, craft: str
) -> None:
    bad = first("decision", after=44)
    sql, values = CRAFTED[craft]
    raw.execute(sql, (*values, bad))
    verify_fails(capsys, home, bad)
    open_refused(home, bad, f"entry {bad}")
    for command in (("log", "show", "--limit", "100"), ("replay", "--all")):
        code, _, err = clearance(capsys, *command, "--home", str(home.path))
        assert code == 2, err
        assert err.startswith("error: ")
        assert f"entry {bad}" in err


def test_invalid_utf8_is_named_by_verify_show_and_replay(
    capsys: pytest.CaptureFixture[str], home: Home, raw: sqlite3.Connection
) -> None:
    bad = first("execution", after=44)
    (leaf,) = raw.execute("SELECT leaf FROM entries WHERE idx = ?", (bad,)).fetchone()
    raw.execute(
        "UPDATE entries SET leaf = ? WHERE idx = ?",
        (bytes(leaf).replace(b'"status":"ok"', b'"status":"o\xff"'), bad),
    )
    verify_fails(capsys, home, bad, "not valid JSON")
    for command in (("log", "show", "--limit", "100"), ("replay", "--all")):
        code, _, err = clearance(capsys, *command, "--home", str(home.path))
        assert code == 2, err
        assert f"entry {bad}" in err


def test_a_malformed_decision_entry_is_named_by_replay(
    capsys: pytest.CaptureFixture[str], home: Home
) -> None:
    """A decision whose fields have the wrong shapes, appended through the store itself."""
    with open_ledger(home) as ledger:
        bad = ledger.append(
            {
                "type": "decision",
                "v": 1,
                "at": timestamp(time.time()),
                "request_id": "r-odd",
                "intent": [1],
                "facts": "x",
                "now": "yesterday",
                "policy_digest": POLICY_DIGEST,
            }
        )
    code, _, err = clearance(capsys, "replay", "--all", "--home", str(home.path))
    assert code == 2, err
    assert f"decision entry {bad} is malformed" in err
    code, out, err = clearance(capsys, "log", "show", "--from", str(bad), "--home", str(home.path))
    assert code == 0, err
    assert "r-odd" in out


# --- grace: entries no checkpoint covers -------------------------------------------------------


def _crash(home: Home, count: int, age: float) -> int:
    """Run the child, kill it once it has appended; returns the first uncovered index."""
    size = len(_checkpoint_rows(home)) and max(_checkpoint_rows(home))
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(home.path), str(count), str(age)],
        stdout=subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if k != "CLEARANCE_HOME"},
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    return size + 1  # the child's first append was signed at once; the rest were not


def test_a_crash_leaves_uncovered_entries_that_open_within_the_grace(
    capsys: pytest.CaptureFixture[str], home: Home
) -> None:
    uncovered = _crash(home, count=5, age=0)
    assert max(_checkpoint_rows(home)) == uncovered  # signed but not anchored: the lag
    verify_passes(capsys, home)
    with open_ledger(home) as ledger:
        assert ledger.size() == uncovered + 5
    cp = (home.anchor_dir / "latest").read_text(encoding="utf-8")
    assert cp.split("\n")[1] == str(uncovered + 5)  # close signed and anchored the rest
    verify_passes(capsys, home)


def test_uncovered_entries_older_than_the_grace_are_refused_until_adopted(
    capsys: pytest.CaptureFixture[str], home: Home
) -> None:
    grace = home.settings.checkpoint_grace
    uncovered = _crash(home, count=3, age=grace + 120)
    verify_fails(capsys, home, uncovered, "grace")
    open_refused(home, uncovered, "indistinguishable from forged")
    code, out, err = clearance(capsys, "log", "anchor", "--adopt", "--home", str(home.path))
    assert code == 0, err
    assert f"entries {uncovered}..{uncovered + 2}" in out
    assert f"Adopted checkpoint {uncovered + 3}" in out
    verify_passes(capsys, home)
    open_ledger(home).close()


def test_the_grace_is_measured_with_the_injected_clock(home: Home) -> None:
    uncovered = _crash(home, count=2, age=0)
    later = time.time() + home.settings.checkpoint_grace + 60
    with pytest.raises(TamperError) as failure:
        open_ledger(home, clock=lambda: later)
    assert failure.value.index == uncovered
    open_ledger(home).close()  # by the real clock it is still within the grace


# --- finding 8: decisions rest on proven bytes -----------------------------------------------


def test_prove_and_last_in_trace_catch_an_edit_made_after_open(home: Home) -> None:
    with open_ledger(home) as ledger:
        newest = ledger.last_in_trace("t-1", "decision")
        assert newest is not None
        k = newest.index
        assert k == max(i for i in range(SIZE) if content(i)["type"] == "decision" and i % 2)
        assert ledger.prove(newest) is newest
        trace = ledger.last_in_trace("t-1", "trace")
        assert trace is not None
        assert trace.index == 1
        assert ledger.last_in_trace("no-such-trace", "decision") is None

        conn = attacker(home.ledger_path)
        try:
            flipped = newest.leaf.replace(b'"effect":"allow"', b'"effect":"deny"')
            if flipped == newest.leaf:
                flipped = newest.leaf.replace(b'"effect":"deny"', b'"effect":"allow"')
            conn.execute("UPDATE entries SET leaf = ? WHERE idx = ?", (flipped, k))
        finally:
            conn.close()
        with pytest.raises(TamperError) as failure:
            ledger.last_in_trace("t-1", "decision")
        assert failure.value.index == k
        with pytest.raises(TamperError):
            ledger.prove(ledger.get(k))

        conn = attacker(home.ledger_path)  # re-hash everything: the in-memory root still holds
        try:
            rehash_from(conn, k)
        finally:
            conn.close()
        with pytest.raises(TamperError) as failure:
            ledger.last_in_trace("t-1", "decision")
        assert failure.value.index == k


def test_rows_relabelled_after_open_are_refused_by_lookups(home: Home) -> None:
    execution = max(i for i in range(SIZE) if content(i)["type"] == "execution" and i % 2)
    foreign = max(i for i in range(SIZE) if content(i)["type"] == "decision" and not i % 2)
    newest = max(i for i in range(SIZE) if content(i)["type"] == "decision" and i % 2)
    assert execution > newest
    with open_ledger(home) as ledger:
        conn = attacker(home.ledger_path)
        try:  # an outcome posing as the trace's newest decision; a decision moved into t-1
            conn.execute("UPDATE entries SET type = 'decision' WHERE idx = ?", (execution,))
            conn.execute("UPDATE entries SET trace_id = 't-1' WHERE idx = ?", (foreign,))
        finally:
            conn.close()
        with pytest.raises(TamperError) as failure:
            ledger.last_in_trace("t-1", "decision")
        assert failure.value.index == execution
        with pytest.raises(TamperError) as failure:
            ledger.trace("t-1")
        assert failure.value.index == foreign
        with pytest.raises(TamperError) as failure:
            ledger.find("decision", f"r{execution:04d}")
        assert failure.value.index == execution
    with pytest.raises(TamperError) as refused:
        open_ledger(home)
    assert refused.value.index == min(foreign, execution)


# --- the lag: what the anchor holds after a clean run -----------------------------------------


def test_close_anchors_the_final_checkpoint_and_never_goes_backwards(home: Home) -> None:
    latest = home.anchor_dir / "latest"
    with open_ledger(home) as ledger:
        ledger.append(content(SIZE))
        final = ledger.checkpoint_covering(SIZE)
    assert latest.read_text(encoding="utf-8") == final.note
    stale = home.path.parent / "stale"
    stale.write_bytes(latest.read_bytes())
    with open_ledger(home) as ledger:
        ledger.append(content(SIZE + 1))
    newer = latest.read_text(encoding="utf-8")
    assert newer.split("\n")[1] == str(SIZE + 2)
    # An anchor writer never replaces a bigger checkpoint with a smaller one.
    from clearance._internal.ledger.anchor import CheckpointAnchor
    from clearance._internal.ledger.checkpoint import NoteSigner

    verifier = NoteSigner.from_skey(home.read_log_skey()).verifier()
    anchor = CheckpointAnchor.for_home(home.anchor_dir, origin=home.settings.origin)
    anchor.advance(final, verifier)
    assert latest.read_text(encoding="utf-8") == newer
