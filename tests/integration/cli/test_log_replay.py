"""``clearance replay`` and ``clearance log …`` over ledgers written by real governed calls."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from clearance._internal.home import Home, init_home

from .support import Run, assert_clean_error, governed_calls, read_file_intent


def _calls(home: Home) -> list[str]:
    return governed_calls(
        home,
        [
            read_file_intent("notes/a.md"),
            read_file_intent("notes/b.md"),
            read_file_intent("../secrets"),  # denied: no rule allows it
            {"principal": "agent:ops-bot", "action": "delete_file", "args": {"path": "x"}},
        ],
    )


def _tamper_leaf(home: Home, index: int) -> None:
    """Flip one byte of a stored entry with raw sqlite3 (dropping the append-only trigger)."""
    conn = sqlite3.connect(home.ledger_path)
    try:
        conn.execute("DROP TRIGGER entries_no_update")
        (leaf,) = conn.execute("SELECT leaf FROM entries WHERE idx = ?", (index,)).fetchone()
        data = bytearray(leaf)
        at = bytes(data).index(b'"effect":"') + len('"effect":"')
        data[at] ^= 0x20  # "allow" -> "Allow", still valid JSON
        conn.execute("UPDATE entries SET leaf = ? WHERE idx = ?", (bytes(data), index))
        conn.commit()
    finally:
        conn.close()


def test_replay_all_matches_after_governed_calls(cli: Run, home: Home) -> None:
    ids = _calls(home)
    result = cli("replay", "--all", "--home", str(home.path), "--json")
    assert result.returncode == 0, result.stderr
    replayed = json.loads(result.stdout)
    assert [r["request_id"] for r in replayed] == ids
    assert {r["status"] for r in replayed} == {"match"}
    assert [r["logged"]["effect"] for r in replayed] == ["allow", "allow", "deny", "deny"]
    one = cli("replay", ids[3], "--home", str(home.path))
    assert one.returncode == 0, one.stderr
    assert "no-deletes" in one.stdout
    assert "1 decisions: 1 match" in one.stdout


def test_replay_input_errors(cli: Run, home: Home) -> None:
    _calls(home)
    err = assert_clean_error(cli("replay", "--home", str(home.path)))
    assert "REQUEST_ID or --all" in err
    err = assert_clean_error(cli("replay", "r000000000000000000000000", "--home", str(home.path)))
    assert "no decision with request id" in err


def test_log_verify_passes_then_names_the_tampered_index(cli: Run, home: Home) -> None:
    _calls(home)
    ok = cli("log", "verify", "--home", str(home.path))
    assert ok.returncode == 0, ok.stderr
    assert "OK" in ok.stdout
    decision = next(
        r["index"]
        for r in json.loads(cli("log", "show", "--json", "--home", str(home.path)).stdout)
        if r["entry"]["type"] == "decision"
    )
    _tamper_leaf(home, decision)
    bad = cli("log", "verify", "--home", str(home.path))
    err = assert_clean_error(bad, code=1)
    assert f"at index {decision}" in err
    # Replay notices the rewritten effect too.
    replay = cli("replay", "--all", "--home", str(home.path))
    assert replay.returncode == 1
    assert "mismatch" in replay.stdout


def test_log_consistency_with_a_saved_checkpoint(cli: Run, home: Home, tmp_path: Path) -> None:
    _calls(home)
    saved = cli("log", "checkpoint", "--home", str(home.path))
    assert saved.returncode == 0, saved.stderr
    origin, size, _root = saved.stdout.split("\n")[:3]
    assert origin == home.settings.origin
    assert int(size) > 0
    saved_path = tmp_path / "saved.checkpoint"
    saved_path.write_text(saved.stdout, encoding="utf-8")
    _calls(home)  # the log grows
    ok = cli("log", "consistency", str(saved_path), "--home", str(home.path))
    assert ok.returncode == 0, ok.stderr
    assert f"extends the saved checkpoint at size {size}" in ok.stdout
    # A checkpoint whose text was edited no longer verifies.
    forged = tmp_path / "forged.checkpoint"
    forged.write_text(saved.stdout.replace(f"\n{size}\n", f"\n{int(size) - 1}\n", 1), "utf-8")
    err = assert_clean_error(cli("log", "consistency", str(forged), "--home", str(home.path)), 1)
    assert "step 'signature'" in err
    # A checkpoint from another log (another key) is refused too.
    other = init_home(tmp_path / "other", now=time.time())
    governed_calls(other, [read_file_intent()])
    foreign = tmp_path / "foreign.checkpoint"
    foreign.write_text(cli("log", "checkpoint", "--home", str(other.path)).stdout, "utf-8")
    assert_clean_error(cli("log", "consistency", str(foreign), "--home", str(home.path)), 1)


def test_log_show_vkey_and_empty_log(cli: Run, home: Home) -> None:
    empty = cli("log", "checkpoint", "--home", str(home.path))
    assert "empty" in assert_clean_error(empty)
    ids = _calls(home)
    shown = cli("log", "show", "--home", str(home.path))
    assert shown.returncode == 0, shown.stderr
    for column in ("index", "type", "at", "request id", "summary"):
        assert column in shown.stdout
    assert ids[0] in shown.stdout
    assert "[files-in-sandbox]" in shown.stdout  # rule ids are not eaten as markup
    page = json.loads(
        cli("log", "show", "--from", "2", "--limit", "3", "--json", "--home", str(home.path)).stdout
    )
    assert [r["index"] for r in page] == [2, 3, 4]
    vkey = cli("log", "vkey", "--home", str(home.path))
    assert vkey.stdout.strip() == home.log_vkey_path.read_text(encoding="ascii").strip()
    bad = cli("log", "show", "--from", "-1", "--home", str(home.path))
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
    past = cli("log", "show", "--from", "100000", "--home", str(home.path))
    assert "past the end of the log" in assert_clean_error(past)


def test_a_deleted_anchor_is_refused_until_an_operator_adopts_the_ledger(
    cli: Run, home: Home
) -> None:
    _calls(home)
    anchored = home.anchor_dir / "latest"
    assert anchored.is_file()  # the gate anchored its checkpoints on close
    assert "anchored checkpoint" in cli("log", "verify", "--home", str(home.path)).stdout
    anchored.unlink()
    err = assert_clean_error(cli("log", "verify", "--home", str(home.path)), code=1)
    assert "anchor missing" in err
    for command in (("replay", "--all"), ("log", "show"), ("log", "anchor")):
        err = assert_clean_error(cli(*command, "--home", str(home.path)))
        assert "anchor missing" in err
    adopted = cli("log", "anchor", "--adopt", "--home", str(home.path))
    assert adopted.returncode == 0, adopted.stderr
    assert "was missing" in adopted.stdout
    assert anchored.is_file()
    ok = cli("log", "verify", "--home", str(home.path))
    assert ok.returncode == 0, ok.stderr


def test_log_verify_names_a_cleared_trace_id(cli: Run, home: Home) -> None:
    _calls(home)
    conn = sqlite3.connect(home.ledger_path)
    try:
        conn.execute("DROP TRIGGER entries_no_update")
        (index,) = conn.execute(
            "SELECT min(idx) FROM entries WHERE trace_id IS NOT NULL AND type = 'decision'"
        ).fetchone()
        conn.execute("UPDATE entries SET trace_id = NULL WHERE idx = ?", (index,))
        conn.commit()
    finally:
        conn.close()
    err = assert_clean_error(cli("log", "verify", "--home", str(home.path)), code=1)
    assert f"at index {index}" in err
    assert "trace_id column" in err
    err = assert_clean_error(cli("replay", "--all", "--home", str(home.path)))
    assert f"entry {index}" in err
