"""``clearance demo``: a scripted agent against real tools, through the real gate.

The demo home is an ordinary clearance home (``clearance init``) plus a
``demo/`` directory holding the agent's file sandbox, a SQLite payments
database, the checkpoint saved by the previous run and the last run's report
(``demo/last-run.json``). Re-running reuses the home: each run opens a new
trace, the log keeps growing, and each run first proves that the log still
extends the checkpoint the previous run saved (RFC 9162 §2.1.4). The demo's
bundle is refreshed from the packaged example on every run, so an old demo
home picks up a newer example (the change is logged as a new ``policy``
entry; old decisions still replay under their own bundle).

Two acts. Act 1 runs the scripted agent through the in-process gate
(:mod:`.agent`). Act 2 (:mod:`.remote_run`) then starts ``clearance serve`` for the
same home and the example tool service (:mod:`.services`), and runs part of the
agent through the remote SDK with API keys made by the real key store
(:mod:`.keys`); the demo bundle then also holds the tool service's
``payments.yaml``. The ledger has one writer at a time: act 1 and the key creation
run while this process holds the home's serve lock, which it releases before the
gateway takes it; a demo whose gateway still runs on the home refuses to start.

Nothing shown is hard-coded: outcomes, rule ids and ledger indices come from
the gate, and the checks at the end of each act (payments table, tool record, log
audit, decision replay, receipt) read the database and the log afresh.
"""

from __future__ import annotations

import base64
import json
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from clearance._cli.common import short
from clearance._demo.agent import MANDATE, PRINCIPAL, DemoAgent, StepResult
from clearance._demo.tools import INVOICE_NAME, INVOICE_TEXT, MARKER, Payments, Sandbox
from clearance._internal.entries import timestamp
from clearance._internal.home import SETTINGS_FILE, Home, init_home
from clearance.errors import Error, InputError

if TYPE_CHECKING:
    from clearance._demo.remote_run import RemoteSummary

DEFAULT_DEMO_HOME = ".clearance-demo"
"""Where ``clearance demo`` runs when no ``--home`` is given."""

_REFUSED = ("denied", "approval_required", "refused")
_STYLES = {
    "allowed": "green",
    "denied": "bold red",
    "approval_required": "yellow",
    "refused": "bold magenta",
    "failed": "red",
    "skipped": "dim",
}


@dataclass
class DemoSummary:
    """The outcome of one demo run; ``ok`` when every end-of-run check passed."""

    home: Path
    trace_id: str
    steps: list[StepResult]
    checks: dict[str, bool] = field(default_factory=dict)
    receipt_path: Path | None = None
    remote: RemoteSummary | None = None
    """The runtime act (None when it did not run: see ``remote_note``)."""
    remote_note: str | None = None

    @property
    def ok(self) -> bool:
        """True when every check of both acts passed."""
        return all(self.checks.values()) and (self.remote is None or self.remote.ok)

    def to_json(self) -> dict[str, Any]:
        """The ``last-run.json`` report."""
        return {
            "home": str(self.home),
            "trace_id": self.trace_id,
            "ok": self.ok,
            "checks": self.checks,
            "steps": [s.to_json() for s in self.steps],
            "receipt": str(self.receipt_path) if self.receipt_path else None,
            "remote": self.remote.to_json() if self.remote is not None else None,
            "remote_note": self.remote_note,
        }


def prepare_home(path: Path, console: Console) -> Home:
    """Create the demo home, or reuse one the demo created; refuse any other directory."""
    from clearance._internal.wiring import open_ledger

    marker = path / MARKER
    if (path / SETTINGS_FILE).exists():
        if not marker.exists():
            raise InputError(
                f"{path} is a clearance home that the demo did not create; the demo will not "
                "touch it. Pass --home with a new directory (e.g. --home .clearance-demo)"
            )
        home = Home.load(path)
        console.print(f"Reusing demo home [bold]{path}[/] (a new trace is opened for this run)")
    else:
        if path.exists() and any(path.iterdir()):
            raise InputError(f"{path} exists and is not empty; pass --home with a new directory")
        home = init_home(path, now=time.time())
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("created by `clearance demo`\n", encoding="utf-8")
        with open_ledger(home):
            pass
        console.print(f"Created demo home [bold]{path}[/] (clearance init)")
    return home


def refresh_bundle(home: Home, console: Console, tool_dir: Path | None) -> None:
    """Keep the demo home's bundle equal to the packaged example bundle, plus the example
    tool service's ``payments.yaml`` (the runtime act's ``payments.send`` rules)."""
    source = resources.files("clearance.examples") / "policies"
    for item in source.iterdir():
        if not item.name.endswith((".yaml", ".yml")):
            continue
        with resources.as_file(item) as src:
            _copy_if_changed(src, home.policy_dir / item.name, console, "the packaged example")
    if tool_dir is not None:
        _copy_if_changed(
            tool_dir / "payments.yaml", home.policy_dir / "payments.yaml", console, str(tool_dir)
        )


def _copy_if_changed(src: Path, target: Path, console: Console, origin: str) -> None:
    if not target.exists() or target.read_bytes() != src.read_bytes():
        shutil.copyfile(src, target)
        console.print(f"  bundle file {target.name} refreshed from {origin}")


def _steps_table(steps: list[StepResult]) -> Table:
    table = Table(
        title="What the agent tried",
        title_justify="left",
        caption="trace = the trace facts the policy saw, as logged in the decision entry: "
        "fetch_document's output is untrusted, so later decisions see trace.untrusted",
        caption_justify="left",
    )
    table.add_column("step", justify="right")
    table.add_column("action", no_wrap=True)
    table.add_column("args", max_width=34)
    table.add_column("outcome", max_width=44)
    table.add_column("reason rule ids", no_wrap=True)
    table.add_column("ledger", justify="right")
    table.add_column("trace", no_wrap=True)
    for s in steps:
        style = _STYLES.get(s.outcome, "")
        label = s.outcome.upper().replace("_", " ")
        outcome = f"[{style}]{label}[/] {escape(short(s.detail, 70))}"
        trust = "" if s.untrusted is None else ("[red]untrusted[/]" if s.untrusted else "trusted")
        table.add_row(
            str(s.number),
            escape(s.action),
            escape(s.args),
            outcome,
            escape(", ".join(s.rules)) or "-",
            "-" if s.index is None else str(s.index),
            trust,
        )
    return table


def _check(summary: DemoSummary, table: Table, name: str, passed: bool, detail: str) -> None:
    summary.checks[name] = passed
    mark = "[bold green]PASS[/]" if passed else "[bold red]FAIL[/]"
    table.add_row(mark, escape(name), escape(detail))


def _side_effect_checks(
    summary: DemoSummary, table: Table, payments: Payments, agent: DemoAgent
) -> None:
    rows = payments.rows(summary.trace_id)
    not_allowed = [s for s in summary.steps if s.outcome in _REFUSED]
    untouched = all(not s.body_ran and s.payments_before == s.payments_after for s in not_allowed)
    _check(
        summary,
        table,
        "refused steps never ran their tool",
        untouched,
        f"{len(not_allowed)} refused steps; payments table unchanged across each of them",
    )
    paid = {(p.payee, p.amount) for p in rows}
    allowed_pays = [
        s for s in summary.steps if s.action == "pay_invoice" and s.outcome == "allowed"
    ]
    _check(
        summary,
        table,
        "payments table holds exactly the allowed payments",
        len(rows) == len(allowed_pays) and all(p.request_id for p in rows),
        f"this run's rows: {sorted(paid) or 'none'}",
    )
    asked = [p for p in rows if (p.payee, p.amount) == ("acme-supplies", 120.0)]
    _check(
        summary,
        table,
        "the invoice the mandate names was paid once",
        len(asked) == 1,
        f"rows to acme-supplies for 120.00 in this run: {len(asked)}",
    )
    injected = agent.injected_payment()
    planted = str(injected["to"]) if injected else None
    leaked = [p for p in payments.rows() if p.payee == planted]
    _check(
        summary,
        table,
        "the payee planted in the document was never paid",
        planted is not None and not leaked,
        f"rows to {planted!r} in the whole table: {len(leaked)}"
        if planted
        else "the injected instruction was not read (fetch_document did not run)",
    )


def _ledger_report(
    summary: DemoSummary, home: Home, console: Console, checks: Table, legit: str | None
) -> None:
    from clearance._internal.decision_replay import DecisionReplayer
    from clearance._internal.ledger.audit import verify as audit
    from clearance._internal.ledger.checkpoint import NoteVerifier
    from clearance._internal.ledger.consistency import check_consistency_with
    from clearance._internal.ledger.receipts import build_receipt, verify_receipt
    from clearance._internal.wiring import open_ledger

    vkey = home.log_vkey_path.read_text(encoding="ascii").strip()
    saved_path = home.path / "demo" / "checkpoint.txt"
    with open_ledger(home) as ledger:
        size = ledger.size()
        by_type = Counter(str(e.entry.get("type")) for e in ledger.scan())
        head = ledger.checkpoint_covering(size - 1, timeout=2.0)
        if saved_path.exists():
            try:
                check_consistency_with(
                    ledger, saved_path.read_text(encoding="utf-8"), NoteVerifier.from_vkey(vkey)
                )
                _check(
                    summary,
                    checks,
                    "log extends the previous run's checkpoint",
                    True,
                    f"RFC 9162 consistency proof from {saved_path.name}",
                )
            except Error as exc:
                _check(
                    summary,
                    checks,
                    "log extends the previous run's checkpoint",
                    False,
                    exc.diagnostics(),
                )
        results = list(DecisionReplayer(ledger).replay_all())
        receipt: dict[str, Any] | None = None
        if legit is not None:
            decision = ledger.find("decision", legit)[0]
            covering = ledger.checkpoint_covering(decision.index, timeout=2.0)
            proof = ledger.inclusion_proof(decision.index, covering.size)
            receipt = build_receipt(decision.entry, decision.index, covering, proof, ledger.vkey)
    saved_path.write_text(head.note, encoding="utf-8")

    report = audit(home.ledger_path, vkey=vkey, origin=home.settings.origin)
    summary_table = Table.grid(padding=(0, 2))
    summary_table.add_row(
        "entries by type", ", ".join(f"{k} {v}" for k, v in sorted(by_type.items()))
    )
    summary_table.add_row("tree size", str(size))
    summary_table.add_row(
        "checkpoint", f"size {head.size}, root {base64.b64encode(head.root).decode('ascii')}"
    )
    summary_table.add_row("log vkey", vkey)
    console.print(Panel(summary_table, title="Ledger", title_align="left"))
    _check(
        summary,
        checks,
        "log verify (full audit)",
        report.ok,
        short(report.message, 90),
    )

    mine = [r for r in results if r.request_id in {s.request_id for s in summary.steps}]
    replay = Table(title="Decision replay (this run)", title_justify="left")
    for name in ("ledger", "request id", "logged", "replayed", "status"):
        replay.add_column(name)
    for r in mine:
        replayed = r.replayed or {}
        replay.add_row(
            str(r.index),
            r.request_id,
            escape(f"{r.logged.get('effect')} {', '.join(map(str, r.logged.get('rules') or []))}"),
            escape(f"{replayed.get('effect')} {', '.join(map(str, replayed.get('rules') or []))}"),
            r.status,
        )
    console.print(replay)
    mismatches = [r for r in results if r.status == "mismatch"]
    matched = [r for r in mine if r.status == "match"]
    _check(
        summary,
        checks,
        "every decision replays to the same result",
        not mismatches and bool(mine) and len(matched) == len(mine),
        f"this run: {len(matched)}/{len(mine)} match; whole log: {len(results)} decisions, "
        f"{len(mismatches)} mismatches",
    )

    if receipt is not None:
        path = home.path / "demo" / f"receipt-{legit}.json"
        path.write_text(json.dumps(receipt, indent=2) + "\n", encoding="utf-8")
        summary.receipt_path = path
        try:
            # Offline: only the file and the published vkey, as `clearance verify` does.
            proven = verify_receipt(path.read_text(encoding="utf-8"), vkey)
            ok, detail = (
                True,
                (
                    f"decision {legit} is leaf {proven.leaf_index} of the signed "
                    f"tree of {proven.tree_size}"
                ),
            )
        except Error as exc:
            ok, detail = False, exc.diagnostics()
        _check(summary, checks, "receipt for the payment decision verifies offline", ok, detail)
        console.print(
            f"Receipt written to {path}; check it anywhere with:\n"
            f"  clearance verify {path} --vkey '{vkey}'"
        )


def run_demo(path: Path, console: Console, *, keep_running: bool = False) -> DemoSummary:
    """Run both acts in the home at ``path``; prints as it goes; returns the summary.

    Act 1 runs in process while this process holds the home's serve lock (so it never
    writes a ledger a server still holds); act 2 then starts the gateway and the tool
    service, which are stopped before this returns or raises. ``keep_running``: after
    the run, keep them up until Ctrl-C, the gateway serving the console (with its
    runtime demo page) to a console admin key made for it.
    """
    from clearance._demo.keys import CONSOLE_ADMIN, demo_keys
    from clearance._demo.remote_run import print_explore_hints, run_remote_act
    from clearance._demo.services import DemoServices, exits_on_signals, find_tool_service
    from clearance._internal.server.lock import ServeLock

    started = time.perf_counter()
    # Absolute: the gateway and the tool service run with their own working directory.
    home = prepare_home(Path(path).absolute(), console)
    tool_dir = find_tool_service()
    with ServeLock.acquire(home.path):
        refresh_bundle(home, console, tool_dir)
        summary = _in_process_act(home, console)
        keys = demo_keys(home) if tool_dir is not None else None
        # Made only to serve the console: a run that exits creates no admin key.
        login = demo_keys(home, (CONSOLE_ADMIN,))["console"] if keys and keep_running else None
    if tool_dir is None or keys is None:
        summary.remote_note = (
            "act 2 (the runtime API) was skipped: it runs the example tool service from a "
            "source checkout (examples/tool_service), which this installation lacks"
        )
        console.print(f"[yellow]{summary.remote_note}[/]")
        _finish(summary, home, console, started)
        return summary
    with (
        exits_on_signals(),
        DemoServices(home, tool_dir, keys["tool"].token, demo_page=True) as services,
    ):
        summary.remote = run_remote_act(home, services, keys, console)
        _finish(summary, home, console, started)
        if keep_running:
            print_explore_hints(console, services, keys, login)
            services.wait_until_interrupted()
            console.print("Stopping the tool service and the gateway…")
    if keep_running:
        console.print("Stopped.")
    return summary


def _finish(summary: DemoSummary, home: Home, console: Console, started: float) -> None:
    (home.path / "demo" / "last-run.json").write_text(
        json.dumps(summary.to_json(), indent=2) + "\n", encoding="utf-8"
    )
    verdict = "[bold green]all checks passed[/]" if summary.ok else "[bold red]a check FAILED[/]"
    console.print(
        f"Demo finished in {time.perf_counter() - started:.2f}s: {verdict}. "
        f"Report: {home.path / 'demo' / 'last-run.json'}"
    )


def _in_process_act(home: Home, console: Console) -> DemoSummary:
    """Act 1: the scripted agent through the in-process gate (the gate is closed after)."""
    from clearance._internal.grants.keys import GrantKeyRing
    from clearance._internal.wiring import open_gate

    console.rule("[bold]Act 1: a scripted agent through the in-process gate")
    sandbox = Sandbox(home.path / "demo" / "sandbox")
    sandbox.write(INVOICE_NAME, INVOICE_TEXT)
    payments = Payments(home.path / "demo" / "payments.db")
    kid = GrantKeyRing.load(home.grant_key_dir).active_kid
    # Room for the invoice (120) and the freight payment (560) the agent asks approval
    # for: a pending approval reserves its amount in trace.totals, so a cap of 600 would
    # deny the invoice itself; the 490 advance still exceeds the cap.
    bounds = {"spend_cap": 700, "currency": "EUR", "expires_at": timestamp(time.time() + 900)}
    with (
        open_gate(home.path, principal=PRINCIPAL) as gate,
        gate.trace(MANDATE, bounds=bounds, opened_by="clearance demo") as trace,
    ):
        console.print(
            Panel(
                f"[bold]{MANDATE}[/]\nbounds: {json.dumps(bounds)}\ntrace {trace.trace_id} · "
                f"principal {PRINCIPAL} · bundle {gate.engine.digest[:23]}…",
                title="Mandate (opened by trusted code, recorded once in the ledger)",
                title_align="left",
            )
        )
        agent = DemoAgent(gate, sandbox, payments, trace)
        steps = agent.run(kid)
    summary = DemoSummary(home.path, trace.trace_id, steps)
    console.print(_steps_table(steps))
    rows = payments.rows(trace.trace_id)
    table = Table(
        title=f"payments table ({payments.path.name}), rows of this run", title_justify="left"
    )
    for name in ("id", "payee", "amount", "currency", "request id"):
        table.add_column(name)
    for p in rows:
        table.add_row(str(p.id), escape(p.payee), f"{p.amount:.2f}", p.currency, p.request_id)
    console.print(table)

    checks = Table(title="Checks (read back from the database and the log)", title_justify="left")
    for name in ("", "check", "evidence"):
        checks.add_column(name)
    _side_effect_checks(summary, checks, payments, agent)
    _ledger_report(summary, home, console, checks, agent.legit_payment)
    console.print(checks)
    return summary
