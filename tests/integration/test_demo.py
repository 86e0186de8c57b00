"""``clearance demo`` end to end: its output, then the ledger and the payments table it left.

The demo is run as a subprocess, twice (it must be re-runnable), and everything
it claims is checked independently afterwards: rows in the payments database,
entries in the ledger, a full audit and a replay of every decision.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from clearance._internal.decision_replay import DecisionReplayer
from clearance._internal.home import Home, init_home
from clearance._internal.ledger.audit import verify
from clearance._internal.wiring import open_ledger


def _demo(home: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CLEARANCE_HOME"}
    return subprocess.run(
        [sys.executable, "-m", "clearance", "demo", "--home", str(home)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _payments(home: Path) -> list[tuple[str, str, float, str]]:
    conn = sqlite3.connect(home / "demo" / "payments.db")
    try:
        return conn.execute(
            "SELECT trace_id, payee, amount, request_id FROM payments ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """Run the demo twice in one home; return the home and both runs' reports."""
    base = tmp_path_factory.mktemp("demo")
    home = base / "demo-home"
    reports = []
    for _ in range(2):
        started = time.monotonic()
        result = _demo(home, base)
        assert result.returncode == 0, result.stdout + result.stderr
        assert time.monotonic() - started < 20
        assert "Traceback" not in result.stdout + result.stderr
        assert "all checks passed" in result.stdout
        for text in (
            "What the agent tried",
            "no-deletes",
            "payments-over-cap-need-approval",
            "no-ungrounded-payments-after-untrusted-input",
            "replayed jti",
            "Decision replay",
            "clearance verify",
        ):
            assert text in result.stdout, text
        reports.append(json.loads((home / "demo" / "last-run.json").read_text("utf-8")))
    return home, reports


def _step(report: dict[str, Any], action: str, needle: str = "") -> dict[str, Any]:
    return next(s for s in report["steps"] if s["action"] == action and needle in s["args"])


def test_demo_outcomes_come_from_the_gate(demo_run: tuple[Path, list[dict[str, Any]]]) -> None:
    home, reports = demo_run
    report = reports[-1]
    assert report["ok"]
    assert all(report["checks"].values())
    with open_ledger(Home.load(home)) as ledger:

        def logged(step: dict[str, Any]) -> dict[str, Any]:
            return dict(ledger.get(step["index"]).entry)

        write = _step(report, "write_file", "notes/plan.md")
        assert write["outcome"] == "allowed"
        assert write["body_ran"]
        assert logged(write)["effect"] == "allow"
        traversal = _step(report, "read_file", "..")
        assert traversal["outcome"] == "denied"
        assert not traversal["body_ran"]
        assert logged(traversal)["effect"] == "deny"
        delete = _step(report, "delete_file")
        assert delete["outcome"] == "denied"
        assert delete["rules"] == ["no-deletes"]
        assert (home / "demo" / "sandbox" / "notes" / "plan.md").exists()

        fetch = _step(report, "fetch_document")
        assert fetch["outcome"] == "allowed"
        assert fetch["untrusted"] is False
        injected = _step(report, "pay_invoice", "evil-corp")  # first: the planted payment
        assert injected["outcome"] == "denied"
        assert "no-ungrounded-payments-after-untrusted-input" in injected["rules"]
        assert logged(injected)["facts"]["untrusted"] is True

        approval = next(s for s in report["steps"] if s["outcome"] == "approval_required")
        approval_id = logged(approval)["approval_id"]
        assert approval_id
        assert approval_id in approval["detail"]
        assert (
            ledger.find("approval", logged(approval)["request_id"])[0].entry["status"] == "pending"
        )

        refused = [s for s in report["steps"] if s["outcome"] == "refused"]
        assert len(refused) == 2
        reasons = [logged(s)["error_type"] for s in refused]
        assert [logged(s)["status"] for s in refused] == ["rejected", "rejected"]
        assert any("replayed" in r for r in reasons)
        assert any("signature" in r for r in reasons)
        for step in refused:
            assert not step["body_ran"]
            assert step["payments_before"] == step["payments_after"]


def test_payments_table_holds_only_the_allowed_payment(
    demo_run: tuple[Path, list[dict[str, Any]]],
) -> None:
    home, reports = demo_run
    rows = _payments(home)
    assert len(rows) == 2  # one per run
    for report in reports:
        mine = [r for r in rows if r[0] == report["trace_id"]]
        (_trace_id, payee, amount, request_id) = mine[0]
        assert (payee, amount) == ("acme-supplies", 120.0)
        assert len(mine) == 1
        allowed = [
            s for s in report["steps"] if s["action"] == "pay_invoice" and s["outcome"] == "allowed"
        ]
        assert [s["request_id"] for s in allowed] == [request_id]
        for step in report["steps"]:
            if step["outcome"] != "allowed":
                assert not step["body_ran"]
                assert step["payments_before"] == step["payments_after"]
    assert not [r for r in rows if r[1] == "evil-corp"]


def test_ledger_verifies_and_every_decision_replays(
    demo_run: tuple[Path, list[dict[str, Any]]],
) -> None:
    home, reports = demo_run
    located = Home.load(home)
    vkey = located.log_vkey_path.read_text("ascii").strip()
    report = verify(located.ledger_path, vkey=vkey, origin=located.settings.origin)
    assert report.ok, report.message
    with open_ledger(located) as ledger:
        results = list(DecisionReplayer(ledger).replay_all())
        assert len(results) == sum(
            1 for r in reports for s in r["steps"] if s["outcome"] != "refused"
        )
        assert {r.status for r in results} == {"match"}
        assert len(ledger.find("trace", reports[0]["trace_id"])) == 1
    assert "log extends the previous run's checkpoint" in reports[1]["checks"]


def test_demo_refuses_a_home_it_did_not_create(tmp_path: Path) -> None:
    home = init_home(tmp_path / "real", now=time.time())
    result = _demo(home.path, tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ")
    assert "did not create" in result.stderr
