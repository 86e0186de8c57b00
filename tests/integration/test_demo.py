"""``clearance demo`` end to end: its output, then the ledger and the payments table it left.

The demo is run as a subprocess, twice in one home (it must be re-runnable): first with
``--exit`` on a fresh home, then without it but with stdin not a terminal (which must
behave as ``--exit``). Both runs include act 2, which starts ``clearance serve`` and the
example tool service. Everything the demo claims is checked independently afterwards:
rows in the payments database, the tool service's own record, entries in the ledger, a
full audit (as ``clearance log verify``), a replay of every decision, the API keys in
the store, and that no process the demo started is still running or listening.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from clearance._internal.apikeys import ApiKeyStore, api_keys_path
from clearance._internal.decision_replay import DecisionReplayer
from clearance._internal.home import Home, init_home
from clearance._internal.ledger.anchor import CheckpointAnchor
from clearance._internal.ledger.audit import verify
from clearance._internal.wiring import open_ledger

ROLES = {
    "orchestrator": ("service:demo-orchestrator", ["orchestrator"]),
    "agent": ("agent:ops-bot", ["agent"]),
    "approver": ("user:demo-approver", ["approver"]),
    "tool": ("service:payments", ["agent"]),
}


def _demo(home: Path, cwd: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CLEARANCE_HOME"}
    return subprocess.run(
        [sys.executable, "-m", "clearance", "demo", "--home", str(home), *flags],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,  # not a terminal: without --exit it must exit all the same
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _listening(url: str) -> bool:
    parsed = httpx.URL(url)
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((parsed.host, parsed.port or 80)) == 0


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of running processes that contain ``text`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{entry.name}: {cmdline}")
    return found


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
    """Run the demo twice in one home; return the home and both runs' reports.

    After each run: no process mentions the home any more and nothing listens on the
    gateway's or the tool service's port (the demo stopped them before exiting).
    """
    base = tmp_path_factory.mktemp("demo")
    home = base / "demo-home"
    reports = []
    outputs = []
    # The second run names the home relative to its working directory, as `make demo`
    # does (`--home .clearance-demo`): the servers it starts must still find it.
    for flags, named in ((["--exit"], home), ([], Path(home.name))):
        started = time.monotonic()
        result = _demo(named, base, *flags)
        assert result.returncode == 0, result.stdout + result.stderr
        assert time.monotonic() - started < 60
        assert "Traceback" not in result.stdout + result.stderr
        assert "all checks passed" in result.stdout
        assert "Press Ctrl-C" not in result.stdout
        for text in (
            "What the agent tried",
            "no-deletes",
            "payments-over-cap-need-approval",
            "no-ungrounded-payments-after-untrusted-input",
            "replayed jti",
            "Decision replay",
            "clearance verify",
            "Act 2",
            "payments-send-small",
            "payments-send-large-need-a-human",
            "no grant presented",
        ):
            assert text in result.stdout, text
        report = json.loads((home / "demo" / "last-run.json").read_text("utf-8"))
        remote = report["remote"]
        assert remote is not None, report["remote_note"]
        assert not _processes_mentioning(str(home)), "a demo server survived the demo"
        for url in (remote["gateway_url"], remote["tool_url"]):
            assert not _listening(url), f"{url} still listens after the demo exited"
        reports.append(report)
        outputs.append(result.stdout + result.stderr)
    for token in _secrets(home):
        assert not any(token in text for text in outputs), "an API key secret was printed"
        assert token not in json.dumps(reports)
    return home, reports


def _secrets(home: Path) -> list[str]:
    return [p.read_text("ascii").strip() for p in sorted((home / "demo" / "keys").glob("*.key"))]


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
        decided = [s["index"] for r in reports for s in r["steps"] if s["outcome"] != "refused"] + [
            s["index"]
            for r in reports
            for s in r["remote"]["steps"]
            if s["outcome"] != "refused"  # the tool refused these: no decision of their own
        ]
        assert sorted(r.index for r in results) == sorted(decided)
        assert {r.status for r in results} == {"match"}
        assert len(ledger.find("trace", reports[0]["trace_id"])) == 1
        assert len(ledger.find("trace", reports[0]["remote"]["trace_id"])) == 1
    assert "log extends the previous run's checkpoint" in reports[1]["checks"]
    # As `clearance log verify`: with the anchored checkpoint and the grace rule.
    anchored = verify(
        located.ledger_path,
        vkey=vkey,
        origin=located.settings.origin,
        anchor=CheckpointAnchor.for_home(
            located.anchor_dir, located.witness_dirs, origin=located.settings.origin
        ),
        grace=located.settings.checkpoint_grace,
        now=time.time(),
    )
    assert anchored.ok, anchored.message
    assert anchored.anchors >= 1
    for r in reports:
        assert r["remote"]["checks"]["log verify (as `clearance log verify`)"] is True


def test_demo_refuses_a_home_it_did_not_create(tmp_path: Path) -> None:
    home = init_home(tmp_path / "real", now=time.time())
    result = _demo(home.path, tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ")
    assert "did not create" in result.stderr


def _remote_step(report: dict[str, Any], needle: str) -> dict[str, Any]:
    return next(s for s in report["remote"]["steps"] if needle in s["args"])


def test_remote_act_outcomes_come_from_the_gateway_and_the_tool(
    demo_run: tuple[Path, list[dict[str, Any]]],
) -> None:
    home, reports = demo_run
    tool_record = home / "demo" / "tool-state" / "payments.jsonl"
    paid = [json.loads(line) for line in tool_record.read_text("utf-8").splitlines() if line]
    # Two payments per run reached the tool: the small one and the approved one.
    assert [(p["to"], p["amount"]) for p in paid] == [
        ("acme-supplies", 120.0),
        ("acme-supplies", 640.0),
    ] * len(reports)
    with open_ledger(Home.load(home)) as ledger:

        def logged(index: int) -> dict[str, Any]:
            return dict(ledger.get(index).entry)

        for report in reports:
            remote = report["remote"]
            assert remote["ok"]
            assert all(remote["checks"].values())
            trace = ledger.find("trace", remote["trace_id"])[0].entry
            assert trace["opened_by"] == "service:demo-orchestrator"
            assert trace["principal"] == "agent:ops-bot"

            small = _remote_step(report, "120.0 EUR")
            assert (small["outcome"], small["tool_status"]) == ("allowed", 200)
            decision = logged(small["index"])
            assert decision["effect"] == "allow"
            assert decision["trace_id"] == remote["trace_id"]
            assert small["rules"] == [r["rule"] for r in decision["reasons"]]
            outcomes = ledger.find("execution", small["request_id"])
            assert [(e.entry["status"], e.entry["executor"]) for e in outcomes[:1]] == [
                ("ok", "service:payments")
            ]

            delete = _remote_step(report, "notes/plan.md")
            assert delete["outcome"] == "denied"
            assert delete["rules"] == ["no-deletes"]
            assert logged(delete["index"])["effect"] == "deny"
            assert delete["tool_status"] is None

            # The approval: granted by the approver key while the agent waited.
            advance = _remote_step(report, "640.0 EUR")
            assert advance["outcome"] == "allowed"
            assert advance["waited"] >= 1.0
            assert advance["rows_after"] - advance["rows_before"] == 1
            pending = logged(advance["index"])
            assert pending["effect"] == "approval_required"
            assert pending["reasons"][0]["rule"] == "payments-send-large-need-a-human"
            steps = [e.entry for e in ledger.find("approval", advance["request_id"])]
            assert [e["status"] for e in steps] == ["pending", "vote", "approved", "collected"]
            vote = steps[1]
            assert (vote["approver"], vote["decision"]) == ("user:demo-approver", "approve")
            # The vote came after the agent asked, and before the tool ran the body (once).
            ran = [
                e
                for e in ledger.find("execution", advance["request_id"])
                if e.entry["status"] == "ok" and e.entry["executor"] == "service:payments"
            ]
            assert len(ran) == 1  # the tool's own account: it ran the body once
            assert advance["index"] < advance["approval"]["votes"][0]["ledger_index"] < ran[0].index

            # Refusals at the tool: 403, nothing paid, each one a `rejected` entry.
            replay = _remote_step(report, "same grant again")
            direct = _remote_step(report, "direct, no grant")
            for step, reason in ((replay, "replayed"), (direct, "no grant presented")):
                assert step["tool_status"] == 403
                assert step["rows_after"] == step["rows_before"]
                refusal = logged(step["index"])
                assert refusal["type"] == "execution"
                assert refusal["status"] == "rejected"
                assert refusal["executor"] == "service:payments"
                assert reason in refusal["error_type"]
            assert logged(replay["index"])["request_id"] == small["request_id"]

            receipt = Path(remote["receipt"])
            assert receipt.exists()
            assert (
                json.loads(receipt.read_text("utf-8"))["entry"]["request_id"]
                == (advance["request_id"])
            )


def test_api_keys_are_created_once_and_reused(
    demo_run: tuple[Path, list[dict[str, Any]]],
) -> None:
    home, reports = demo_run
    first, second = (r["remote"]["keys"] for r in reports)
    assert [k["reused"] for k in first] == [False] * 4
    assert [k["reused"] for k in second] == [True] * 4
    assert [k["key_id"] for k in first] == [k["key_id"] for k in second]
    with ApiKeyStore.open(api_keys_path(home)) as store:
        keys = store.list()
    assert {k.name: (k.principal, sorted(k.scopes)) for k in keys} == {
        f"demo-{'payments-service' if role == 'tool' else role}": (principal, scopes)
        for role, (principal, scopes) in ROLES.items()
    }
    folder = home / "demo" / "keys"
    assert folder.stat().st_mode & 0o777 == 0o700
    for path in folder.glob("*.key"):
        assert path.stat().st_mode & 0o777 == 0o600
    with open_ledger(Home.load(home)) as ledger:
        created = [e.entry for e in ledger.scan() if e.entry.get("type") == "apikey"]
    assert sorted(e["name"] for e in created) == sorted(k.name for k in keys)
