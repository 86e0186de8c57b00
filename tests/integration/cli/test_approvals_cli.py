"""``clearance approvals list|show|approve|deny``: the real command on a real home."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clearance._internal.home import Home, init_home
from clearance._internal.intent import Intent
from clearance._internal.wiring import open_gate
from clearance.errors import ApprovalRequired

from .support import PRINCIPAL, assert_clean_error


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clearance", "approvals", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def approvals(tmp_path_factory: pytest.TempPathFactory) -> tuple[Home, list[str]]:
    """A home with three pending approvals (the example bundle: payments over 500)."""
    home = init_home(tmp_path_factory.mktemp("approvals") / "home", now=time.time())
    ids = []
    with (
        open_gate(home.path, principal=PRINCIPAL, durability="relaxed") as gate,
        gate.trace("Pay the ACME invoices", bounds={"spend_cap": 5000}),
    ):
        for amount in (600.0, 700.0, 800.0):
            intent = Intent.create(
                principal=PRINCIPAL,
                action="pay_invoice",
                args={"to": "acme-supplies", "amount": amount, "currency": "EUR"},
            )
            with pytest.raises(ApprovalRequired) as needed:
                gate.authorize(intent)
            ids.append(needed.value.approval_id)
    return home, ids


def test_list_shows_the_approvals_newest_first(approvals: tuple[Home, list[str]]) -> None:
    home, ids = approvals
    listed = run(home.path, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    document = json.loads(listed.stdout)
    assert [a["approval_id"] for a in document["approvals"]] == ids[::-1]
    assert {a["principal"] for a in document["approvals"]} == {PRINCIPAL}
    table = run(home.path, "list", "--status", "pending")
    assert table.returncode == 0, table.stderr
    assert ids[2] in table.stdout
    assert "pay_invoice" in table.stdout
    assert "payments-over-cap-need-approval" in table.stdout


def test_approve_records_the_vote_and_a_second_vote_is_refused(
    approvals: tuple[Home, list[str]],
) -> None:
    home, ids = approvals
    voted = run(
        home.path, "approve", ids[0], "--approver", "user:alice", "--reason", "invoice matches"
    )
    assert voted.returncode == 0, voted.stderr
    assert "user:alice approved approval" in voted.stdout
    assert "approved (1/1 approvals)" in voted.stdout
    shown = run(home.path, "show", ids[0], "--json")
    assert shown.returncode == 0, shown.stderr
    approval = json.loads(shown.stdout)
    assert approval["status"] == "approved"
    assert approval["votes"][0]["approver"] == "user:alice"
    assert approval["votes"][0]["reason"] == "invoice matches"
    again = run(home.path, "deny", ids[0], "--approver", "user:bob", "--reason", "changed mind")
    assert "is approved: it takes no more votes" in assert_clean_error(again)


def test_deny_denies_and_show_says_who(approvals: tuple[Home, list[str]]) -> None:
    home, ids = approvals
    denied = run(home.path, "deny", ids[1], "--approver", "user:bob", "--reason", "duplicate")
    assert denied.returncode == 0, denied.stderr
    assert "now denied" in denied.stdout
    shown = run(home.path, "show", ids[1])
    assert shown.returncode == 0, shown.stderr
    assert "denied" in shown.stdout
    assert "user:bob deny" in shown.stdout
    assert "duplicate" in shown.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--approver", PRINCIPAL, "--reason", "mine"), "their own principal"),
        (("--approver", "user alice", "--reason", "ok"), "must be a principal id"),
        (("--approver", "user:alice", "--reason", " "), "needs a reason"),
    ],
)
def test_refused_votes_are_clean_errors(
    approvals: tuple[Home, list[str]], args: tuple[str, ...], message: str
) -> None:
    home, ids = approvals
    assert message in assert_clean_error(run(home.path, "approve", ids[2], *args))


def test_unknown_ids_and_bad_options_are_clean_errors(approvals: tuple[Home, list[str]]) -> None:
    home, _ = approvals
    assert "no approval 'a-nope'" in assert_clean_error(run(home.path, "show", "a-nope"))
    assert "status must be one of" in assert_clean_error(run(home.path, "list", "--status", "x"))
    missing = run(home.path, "approve", "a-nope", "--approver", "user:alice")
    assert missing.returncode == 2
    assert "--reason" in missing.stderr


def test_the_log_verifies_after_the_votes(approvals: tuple[Home, list[str]]) -> None:
    home, _ = approvals
    audit = subprocess.run(
        [sys.executable, "-m", "clearance", "log", "verify", "--home", str(home.path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr
