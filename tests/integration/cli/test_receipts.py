"""``clearance receipt`` then ``clearance verify`` offline: no home, no database, only the vkey."""

from __future__ import annotations

import base64
import copy
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clearance._internal.home import Home, init_home

from .support import Run, assert_clean_error, governed_calls, read_file_intent


@pytest.fixture
def offline(tmp_path: Path) -> Path:
    """An empty directory with no home in it (and CLEARANCE_HOME is unset by ``cli``)."""
    path = tmp_path / "offline"
    path.mkdir()
    return path


def _receipt(cli: Run, home: Home, *args: str) -> str:
    rid = governed_calls(home, [read_file_intent(), read_file_intent("notes/b.md")])[1]
    result = cli("receipt", rid, "--home", str(home.path), *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    """One JSON receipt (made by the CLI) and the log's vkey, shared by the mutation cases."""
    base = tmp_path_factory.mktemp("receipt")
    home = init_home(base / "home", now=time.time())
    rid = governed_calls(home, [read_file_intent()])[0]
    result = subprocess.run(
        [sys.executable, "-m", "clearance", "receipt", rid, "--home", str(home.path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), home.log_vkey_path.read_text(encoding="ascii").strip()


def test_json_receipt_verifies_offline(cli: Run, home: Home, offline: Path) -> None:
    receipt = json.loads(_receipt(cli, home))
    assert receipt["entry"]["type"] == "decision"
    path = offline / "receipt.json"
    path.write_text(json.dumps(receipt), encoding="utf-8")
    vkey_file = offline / "log.vkey"
    vkey_file.write_text(home.log_vkey_path.read_text(encoding="ascii"), encoding="ascii")
    for vkey in (str(vkey_file), vkey_file.read_text(encoding="ascii").strip()):
        ok = cli("verify", "receipt.json", "--vkey", vkey, cwd=offline)
        assert ok.returncode == 0, ok.stderr
        assert "OK" in ok.stdout
        assert receipt["entry"]["request_id"] in ok.stdout
    assert sorted(p.name for p in offline.iterdir()) == ["log.vkey", "receipt.json"]


@pytest.mark.parametrize(
    ("mutate", "step"),
    [
        (lambda r: r["entry"].__setitem__("effect", "deny"), "inclusion"),
        (lambda r: r.__setitem__("tree_size", r["tree_size"] + 1), "tree-size"),
        (lambda r: r.__setitem__("checkpoint", r["checkpoint"].replace("\n", "\n\n", 1)), None),
        (lambda r: r.__setitem__("surprise", 1), "format"),
    ],
)
def test_mutated_receipt_fails_naming_the_step(
    cli: Run,
    issued: tuple[dict[str, Any], str],
    offline: Path,
    mutate: Callable[[dict[str, Any]], None],
    step: str | None,
) -> None:
    receipt, vkey = copy.deepcopy(issued[0]), issued[1]
    mutate(receipt)
    (offline / "bad.json").write_text(json.dumps(receipt), encoding="utf-8")
    err = assert_clean_error(cli("verify", "bad.json", "--vkey", vkey, cwd=offline), code=1)
    assert "does NOT verify" in err
    if step is not None:
        assert f"step '{step}'" in err


def test_receipt_under_another_logs_key_fails(
    cli: Run, issued: tuple[dict[str, Any], str], offline: Path, tmp_path: Path
) -> None:
    (offline / "r.json").write_text(json.dumps(issued[0]), encoding="utf-8")
    other = init_home(tmp_path / "other", now=time.time())
    other_vkey = other.log_vkey_path.read_text(encoding="ascii").strip()
    err = assert_clean_error(cli("verify", "r.json", "--vkey", other_vkey, cwd=offline), code=1)
    assert "step 'vkey'" in err


def test_tlog_proof_of_the_execution_entry(cli: Run, home: Home, offline: Path) -> None:
    text = _receipt(cli, home, "--entry", "execution", "--format", "tlog-proof")
    assert text.startswith("c2sp.org/tlog-proof@v1\nextra ")
    vkey = home.log_vkey_path.read_text(encoding="ascii").strip()
    (offline / "p.tlog").write_text(text, encoding="utf-8")
    ok = cli("verify", "p.tlog", "--vkey", vkey, cwd=offline)
    assert ok.returncode == 0, ok.stderr
    assert "execution" in ok.stdout
    # Without the extra line, the entry must be supplied; the right one verifies.
    extra_line = text.split("\n")[1]
    entry = json.loads(base64.b64decode(extra_line.removeprefix("extra ")))
    bare = text.replace(extra_line + "\n", "", 1)
    (offline / "bare.tlog").write_text(bare, encoding="utf-8")
    err = assert_clean_error(cli("verify", "bare.tlog", "--vkey", vkey, cwd=offline), code=1)
    assert "step 'format'" in err
    (offline / "entry.json").write_text(json.dumps(entry), encoding="utf-8")
    ok = cli("verify", "bare.tlog", "--vkey", vkey, "--entry", "entry.json", cwd=offline)
    assert ok.returncode == 0, ok.stderr
    entry["status"] = "error"
    (offline / "entry.json").write_text(json.dumps(entry), encoding="utf-8")
    bad = cli("verify", "bare.tlog", "--vkey", vkey, "--entry", "entry.json", cwd=offline)
    assert "step 'inclusion'" in assert_clean_error(bad, code=1)


def test_receipt_input_errors(cli: Run, home: Home, offline: Path) -> None:
    governed_calls(home, [read_file_intent()])
    err = assert_clean_error(cli("receipt", "rnope", "--home", str(home.path)))
    assert "no decision entry" in err
    err = assert_clean_error(cli("receipt", "rnope", "--entry", "grant", "--home", str(home.path)))
    assert "--entry must be" in err
    missing = cli("verify", "absent.json", "--vkey", "x+y+z", cwd=offline)
    assert "no such file" in assert_clean_error(missing)
