"""The demo's second act: the runtime API, with real processes on loopback.

:func:`run_remote_act` drives :class:`~clearance._demo.remote.RemoteAgent` against the
running gateway and tool service, prints what happened, and checks it afterwards
from independent sources: the tool service's own record, the ledger file (read-only:
the gateway is its only writer) and a receipt fetched over HTTP and verified
offline against the home's published vkey.

The log audit is ``clearance log verify``'s: every leaf, node and checkpoint, the
anchored checkpoint files and the grace rule. The gateway anchors its newest
checkpoint a tick after signing it, so the audit first waits (briefly) until the
anchor covers the whole log; otherwise an audit racing that write could compare a
snapshot with a newer anchor.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from clearance._cli.common import short
from clearance._demo.keys import TOOL_PRINCIPAL, DemoKey
from clearance._demo.remote import APPROVAL_DELAY, BOUNDS, MANDATE, RemoteAgent, RemoteStep
from clearance._demo.services import DemoServices
from clearance._internal.home import Home
from clearance._internal.ledger.sqlite_reader import LedgerReader
from clearance.errors import Error

_SETTLE: Final = 5.0
"""Longest wait (seconds) for the anchor to cover the whole log before the audit."""
_STYLES: Final = {
    "allowed": "green",
    "denied": "bold red",
    "refused": "bold magenta",
    "failed": "red",
}


@dataclass
class RemoteSummary:
    """The outcome of the runtime act; ``ok`` when every check passed."""

    gateway_url: str
    tool_url: str
    trace_id: str
    steps: list[RemoteStep]
    keys: list[dict[str, object]]
    checks: dict[str, bool] = field(default_factory=dict)
    receipt_path: Path | None = None

    @property
    def ok(self) -> bool:
        """True when there were checks and every one passed."""
        return bool(self.checks) and all(self.checks.values())

    def to_json(self) -> dict[str, Any]:
        """The ``remote`` member of ``last-run.json``."""
        return {
            "gateway_url": self.gateway_url,
            "tool_url": self.tool_url,
            "trace_id": self.trace_id,
            "ok": self.ok,
            "checks": self.checks,
            "keys": self.keys,
            "steps": [s.to_json() for s in self.steps],
            "receipt": str(self.receipt_path) if self.receipt_path else None,
        }


def _keys_table(keys: Mapping[str, DemoKey]) -> Table:
    table = Table(title="API keys (secrets in demo/keys/, mode 0600; never shown)")
    for name in ("role", "name", "scopes", "principal", "key", ""):
        table.add_column(name)
    for key in keys.values():
        table.add_row(
            key.role,
            key.name,
            ", ".join(sorted(key.scopes)),
            escape(key.principal),
            key.hint,
            "reused" if key.reused else "[green]created[/]",
        )
    return table


def _steps_table(steps: list[RemoteStep]) -> Table:
    table = Table(
        title="What the agent tried, through the gateway and at the tool service",
        title_justify="left",
        caption="ledger = the decision's index (for a call the tool refused: the refusal's); "
        "log = execution entries the step left (outcomes and refusals the tool reported)",
        caption_justify="left",
    )
    for name in ("step", "key", "action", "args", "outcome", "reason rule ids", "ledger"):
        table.add_column(name, justify="right" if name in ("step", "ledger") else "left")
    table.add_column("tool", no_wrap=True)
    table.add_column("log")
    for s in steps:
        label = s.outcome.upper()
        outcome = f"[{_STYLES.get(s.outcome, '')}]{label}[/] {escape(short(s.detail, 90))}"
        tool = "-" if s.tool_status is None else f"HTTP {s.tool_status}"
        if s.rows_after != s.rows_before:
            tool += f", +{s.rows_after - s.rows_before} paid"
        table.add_row(
            str(s.number),
            escape(s.actor),
            escape(s.action),
            escape(s.args),
            outcome,
            escape(", ".join(s.rules)) or "-",
            "-" if s.index is None else str(s.index),
            tool,
            ", ".join(map(str, s.logged)) or "-",
        )
    return table


class _Checks:
    """The act's checks, printed as a table and kept in the summary."""

    def __init__(self, summary: RemoteSummary) -> None:
        self.summary = summary
        self.table = Table(
            title="Checks of the runtime act (read back from the tool, the log and a receipt)",
            title_justify="left",
        )
        for name in ("", "check", "evidence"):
            self.table.add_column(name)

    def add(self, name: str, passed: bool, detail: str) -> None:
        self.summary.checks[name] = passed
        mark = "[bold green]PASS[/]" if passed else "[bold red]FAIL[/]"
        self.table.add_row(mark, escape(name), escape(detail))


def _entry(reader: LedgerReader, index: int | None) -> Mapping[str, Any]:
    if index is None:
        return {}
    try:
        return reader.entry(index).entry
    except Error:
        return {}


def _step_checks(checks: _Checks, agent: RemoteAgent, approver: DemoKey) -> None:
    named, reader = agent.named, agent.reader
    invoice = named.get("invoice")
    if invoice is None:
        checks.add("the allowed call ran once at the tool, with its grant", False, "not run")
    else:
        outcomes = [_entry(reader, i) for i in invoice.logged]
        by_tool = [e for e in outcomes if e.get("executor") == TOOL_PRINCIPAL]
        checks.add(
            "the allowed call ran once at the tool, with its grant",
            invoice.outcome == "allowed"
            and invoice.tool_status == 200
            and invoice.rows_after - invoice.rows_before == 1
            and _entry(reader, invoice.index).get("effect") == "allow"
            and [e.get("status") for e in by_tool] == ["ok"],
            f"decision {invoice.index} allow ({', '.join(invoice.rules)}); the tool recorded "
            f"{invoice.rows_after - invoice.rows_before} payment; its outcome entry: "
            f"{invoice.logged}",
        )
    delete = named.get("delete")
    checks.add(
        "the denied call ran nothing and names its rule",
        delete is not None
        and delete.outcome == "denied"
        and bool(delete.rules)
        and delete.tool_status is None
        and delete.rows_after == delete.rows_before
        and _entry(reader, delete.index).get("effect") == "deny",
        f"decision {delete.index} deny ({', '.join(delete.rules)})" if delete else "not run",
    )
    _approval_check(checks, agent, approver)
    for name, label, reason in (
        ("replay", "the same grant presented again is refused (403) and logged", "replayed"),
        ("direct", "a direct call without a grant is refused (403) and logged", "no grant"),
    ):
        step = named.get(name)
        refusal = _entry(reader, step.index if step else None)
        checks.add(
            label,
            step is not None
            and step.tool_status == 403
            and step.rows_after == step.rows_before
            and refusal.get("status") == "rejected"
            and refusal.get("executor") == TOOL_PRINCIPAL
            and reason in str(refusal.get("error_type")),
            f"tool answered HTTP {step.tool_status}; ledger {step.index}: rejected by "
            f"{refusal.get('executor')}, {refusal.get('error_type')!r}"
            if step
            else "not run",
        )


def _approval_check(checks: _Checks, agent: RemoteAgent, approver: DemoKey) -> None:
    step = agent.named.get("advance")
    name = "the approval came from the approver key while the agent waited; the body ran once"
    approval = (step.approval if step else None) or {}
    votes = approval.get("votes") or []
    approved = [
        v
        for v in votes
        if isinstance(v, Mapping)
        and v.get("approver") == approver.principal
        and v.get("decision") == "approve"
    ]
    vote_entry = _entry(agent.reader, approved[0].get("ledger_index") if approved else None)
    passed = (
        step is not None
        and step.outcome == "allowed"
        and bool(step.rules)
        and approval.get("decision_index") == step.index
        and approval.get("request_id") == step.request_id
        and bool(approved)
        and vote_entry.get("request_id") == step.request_id
        and step.waited is not None
        and step.waited >= APPROVAL_DELAY
        and step.rows_after - step.rows_before == 1
    )
    detail = (
        f"approval {approval.get('approval_id')} ({', '.join(approval.get('rules') or [])}) "
        f"approved by {approver.principal} at ledger "
        f"{approved[0].get('ledger_index') if approved else '?'}; the agent waited "
        f"{step.waited if step else '?'}s; the tool recorded "
        f"{(step.rows_after - step.rows_before) if step else 0} payment"
    )
    checks.add(name, passed, detail)


def verify_log(home: Home) -> tuple[bool, str]:
    """``clearance log verify`` on the home's ledger (read-only), once the anchor settled."""
    from clearance._internal.ledger.anchor import CheckpointAnchor
    from clearance._internal.ledger.audit import verify as audit
    from clearance._internal.ledger.checkpoint import NoteVerifier

    settings = home.settings
    vkey = home.log_vkey_path.read_text(encoding="ascii").strip()
    anchor = CheckpointAnchor.for_home(
        home.anchor_dir,
        home.witness_dirs,
        origin=settings.origin,
        sync=settings.durability == "durable",
    )
    verifier = NoteVerifier.from_vkey(vkey)
    reader = LedgerReader(home.ledger_path)
    try:
        deadline = time.monotonic() + _SETTLE
        while time.monotonic() < deadline:
            anchored = [f.read(verifier, settings.origin) for f in anchor.files]
            size = reader.stored_size()
            if all(cp is not None and cp.size == size for cp in anchored):
                break
            time.sleep(0.1)
    except Error:
        pass  # the audit below reports what is wrong with the anchor
    finally:
        reader.close()
    report = audit(
        home.ledger_path,
        vkey=vkey,
        origin=settings.origin,
        anchor=anchor,
        grace=settings.checkpoint_grace,
        now=time.time(),
    )
    if not report.ok:
        where = f" at index {report.first_bad_index}" if report.first_bad_index is not None else ""
        return False, f"FAILED{where}: {report.message}"
    return True, (
        f"{report.size} entries and {report.checkpoints} checkpoints verify; the ledger "
        f"extends its {report.anchors} anchored checkpoint(s)"
    )


def _receipt_check(
    checks: _Checks, home: Home, url: str, agent_key: DemoKey, request_id: str | None
) -> None:
    """Fetch the approved payment's outcome receipt as the agent, verify it offline."""
    from clearance._internal.ledger.receipts import verify_receipt

    name = "receipt for the approved payment's outcome (over HTTP) verifies offline"
    if request_id is None:
        checks.add(name, False, "no approved payment ran")
        return
    try:
        reply = httpx.get(
            f"{url}/v1/receipts/{request_id}",
            params={"entry": "execution", "format": "json"},
            headers={"Authorization": f"Bearer {agent_key.token}"},
            timeout=10.0,
        )
        reply.raise_for_status()
    except httpx.HTTPError as exc:
        checks.add(name, False, f"GET /v1/receipts/{request_id}: {exc}")
        return
    path = home.path / "demo" / f"receipt-{request_id}-execution.json"
    path.write_text(json.dumps(reply.json(), indent=2) + "\n", encoding="utf-8")
    checks.summary.receipt_path = path
    vkey = home.log_vkey_path.read_text(encoding="ascii").strip()  # the trusted copy
    try:
        proven = verify_receipt(path.read_text(encoding="utf-8"), vkey, origin=home.settings.origin)
    except Error as exc:
        checks.add(name, False, exc.diagnostics())
        return
    entry = proven.entry
    checks.add(
        name,
        entry.get("request_id") == request_id and entry.get("status") == "ok",
        f"outcome {entry.get('status')} by {entry.get('executor')} is leaf {proven.leaf_index} "
        f"of the signed tree of {proven.tree_size} ({path.name})",
    )


def run_remote_act(
    home: Home, services: DemoServices, keys: Mapping[str, DemoKey], console: Console
) -> RemoteSummary:
    """Run the runtime act against ``services`` and check it (prints as it goes)."""
    console.rule("[bold]Act 2: the same agent through the runtime API (clearance serve)")
    console.print(
        f"gateway      {services.gateway_url}   (OpenAPI: {services.gateway_url}/docs)\n"
        f"tool service {services.tool_url}   (POST /pay = payments.send, behind the grant "
        f"guard; {services.tool_dir})"
    )
    console.print(_keys_table(keys))
    agent = RemoteAgent(
        gateway_url=services.gateway_url,
        tool_url=services.tool_url,
        keys=keys,
        ledger_path=home.ledger_path,
        tool_state=services.tool_state,
        spool_dir=home.path / "demo" / "spool",
    )
    summary = RemoteSummary(
        services.gateway_url,
        services.tool_url,
        "",
        agent.steps,
        [key.to_json() for key in keys.values()],
    )
    try:
        agent.run()
        summary.trace_id = agent.trace_id
        console.print(
            Panel(
                f"[bold]{MANDATE}[/]\nbounds: {json.dumps(dict(BOUNDS))}\ntrace "
                f"{agent.trace_id}, opened by {keys['orchestrator'].principal} for "
                f"{keys['agent'].principal}",
                title="Mandate (opened over HTTP by the orchestrator key)",
                title_align="left",
            )
        )
        console.print(_steps_table(agent.steps))
        checks = _Checks(summary)
        _step_checks(checks, agent, keys["approver"])
        _receipt_check(checks, home, services.gateway_url, keys["agent"], agent.approved_request)
        ok, detail = verify_log(home)
        checks.add("log verify (as `clearance log verify`)", ok, detail)
        console.print(checks.table)
    finally:
        agent.close()
    if summary.receipt_path is not None:
        vkey = home.log_vkey_path.read_text(encoding="ascii").strip()
        console.print(
            f"Receipt written to {summary.receipt_path}; check it anywhere with:\n"
            f"  clearance verify {summary.receipt_path} --vkey '{vkey}'"
        )
    return summary


def print_explore_hints(
    console: Console,
    services: DemoServices,
    keys: Mapping[str, DemoKey],
    login: DemoKey | None = None,
) -> None:
    """What to try while the servers keep running: the console's URL and, with
    ``login`` (the console admin key), the admin's and the approver's secrets to log in
    with; the other secrets are read from their files.

    Printed without folding (``soft_wrap``), so the commands and keys copy and paste whole.
    """
    approver, url = keys["approver"], services.gateway_url
    console.rule("[bold]The gateway and the tool service keep running")
    lines = []
    if login is not None:
        lines += [
            f"console       {url}/console",
            f"admin key     {login.token}",
            f"              ({login.principal}: every page, and the runtime demo at "
            f"{url}/console/demo)",
            f"approver key  {approver.token}",
            f"              ({approver.principal}: the approvals inbox, where a payment waits)",
            "",
        ]
    lines += [
        f"gateway       {url}  (OpenAPI UI: {url}/docs)",
        f"tool service  {services.tool_url}",
        f"approver      {approver.name} ({approver.hint}), secret in {approver.path}",
        f"logs          {services.logs}",
        "",
        "Pending approvals, as the approver:",
        f'  curl -s -H "Authorization: Bearer $(cat {approver.path})" '
        f"'{url}/v1/approvals?status=pending'",
        "A direct call to the tool (refused with 403, and the refusal is logged):",
        f"  curl -si -X POST {services.tool_url}/pay -H 'Content-Type: application/json' "
        '-d \'{"to": "evil-corp", "amount": 450, "currency": "EUR"}\'',
        "",
    ]
    for line in lines:
        console.print(escape(line), soft_wrap=True, highlight=False)
    console.print("[bold]Press Ctrl-C to stop both servers.[/]")
