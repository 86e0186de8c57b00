"""``clearance init`` and ``clearance check``: real homes, real intents, exit codes 0/1/2/3."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from clearance._internal.home import Home
from clearance._internal.wiring import open_ledger

from .support import PRINCIPAL, Run, assert_clean_error, read_file_intent, write_json


def test_init_creates_private_keys_and_refuses_to_overwrite(cli: Run, tmp_path: Path) -> None:
    result = cli("init", "h")
    assert result.returncode == 0, result.stderr
    home = Home.load(tmp_path / "h")
    pems = list(home.grant_key_dir.glob("*.pem"))
    assert len(pems) == 1
    for secret in (*pems, home.log_skey_path):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
    assert home.ledger_path.is_file()
    vkey = home.log_vkey_path.read_text(encoding="ascii").strip()
    assert vkey in result.stdout
    assert "agent.yaml" in result.stdout
    again = cli("init", "h")
    assert "refusing to overwrite" in assert_clean_error(again)


def test_init_on_a_file_is_a_clean_error(cli: Run, tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("not a directory")
    stderr = assert_clean_error(cli("init", "taken"))
    assert "is a file, not a directory" in stderr
    assert (tmp_path / "taken").read_text() == "not a directory"  # nothing lost


def test_init_defaults_to_clearance_home_env(cli: Run, tmp_path: Path) -> None:
    result = cli("init", env={"CLEARANCE_HOME": str(tmp_path / "from-env")})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "from-env" / "clearance.yaml").is_file()
    assert not (tmp_path / ".clearance").exists()


def test_check_exit_codes_follow_the_decision(cli: Run, home: Home, tmp_path: Path) -> None:
    cases = {
        "allow.json": (read_file_intent(), 0, "allow"),
        "deny.json": (
            {"principal": PRINCIPAL, "action": "delete_file", "args": {"path": "a"}},
            1,
            "deny",
        ),
        "approval.json": (
            {
                "principal": PRINCIPAL,
                "action": "pay_invoice",
                "args": {"to": "acme-supplies", "amount": 900, "currency": "EUR"},
            },
            3,
            "approval_required",
        ),
    }
    for name, (intent, code, effect) in cases.items():
        path = write_json(tmp_path / name, intent)
        result = cli(
            "check", str(path), "--bounds", '{"spend_cap": 1000}', "--home", str(home.path)
        )
        assert result.returncode == code, (name, result.stdout, result.stderr)
        decision = json.loads(result.stdout)
        assert decision["effect"] == effect
        assert decision["policy_digest"].startswith("sha256:")
        assert decision["intent_digest"].startswith("sha256:")
        assert decision["facts"]["untrusted"] is False
        assert decision["reasons"], decision
    # A dry run writes nothing to the ledger.
    with open_ledger(home) as ledger:
        assert ledger.size() == 0


def test_check_reads_stdin_and_names_the_deciding_rule(cli: Run, home: Home) -> None:
    intent = {"principal": PRINCIPAL, "action": "delete_file", "args": {"path": "x"}}
    result = cli("check", "-", env={"CLEARANCE_HOME": str(home.path)}, stdin=json.dumps(intent))
    assert result.returncode == 1, result.stderr
    assert [r["rule"] for r in json.loads(result.stdout)["reasons"]] == ["no-deletes"]


def test_check_rejects_bad_input_with_a_clear_message(cli: Run, home: Home, tmp_path: Path) -> None:
    unknown = write_json(tmp_path / "unknown.json", {**read_file_intent(), "sudo": True})
    err = assert_clean_error(cli("check", str(unknown), "--home", str(home.path)))
    assert "unknown intent field" in err
    assert "sudo" in err
    broken = tmp_path / "broken.json"
    broken.write_text('{"principal": "agent:x",', encoding="utf-8")
    err = assert_clean_error(cli("check", str(broken), "--home", str(home.path)))
    assert "invalid JSON at line 1" in err
    dup = tmp_path / "dup.json"
    dup.write_text('{"principal": "a", "principal": "b", "action": "x"}', encoding="utf-8")
    assert "duplicate member" in assert_clean_error(
        cli("check", str(dup), "--home", str(home.path))
    )
    missing = cli("check", str(tmp_path / "nope.json"), "--home", str(home.path))
    assert "no such file" in assert_clean_error(missing)
    wrong_type = write_json(tmp_path / "list.json", [read_file_intent()])
    assert "JSON object" in assert_clean_error(
        cli("check", str(wrong_type), "--home", str(home.path))
    )


def test_check_without_a_home_says_how_to_make_one(cli: Run, tmp_path: Path) -> None:
    intent = write_json(tmp_path / "i.json", read_file_intent())
    err = assert_clean_error(cli("check", str(intent)))
    assert "clearance init" in err


def test_check_without_a_mandate_grants_no_bounded_action(
    cli: Run, home: Home, tmp_path: Path
) -> None:
    payment = {
        "principal": PRINCIPAL,
        "action": "pay_invoice",
        "args": {"to": "acme-supplies", "amount": 90, "currency": "EUR"},
    }
    path = write_json(tmp_path / "pay.json", payment)
    result = cli("check", str(path), "--home", str(home.path))
    assert result.returncode == 1, result.stderr
    rules = [r["rule"] for r in json.loads(result.stdout)["reasons"]]
    assert rules == ["payments-need-a-spend-cap"]
    named = write_json(tmp_path / "named.json", {**payment, "trace_id": "t" + "0" * 24})
    stderr = assert_clean_error(cli("check", str(named), "--home", str(home.path)))
    assert "remove trace_id" in stderr
    bad = cli("check", str(path), "--bounds", "[1]", "--home", str(home.path))
    assert bad.returncode == 2
    assert "bounds" in bad.stderr
