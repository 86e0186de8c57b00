"""The runtime act's agent: part of the scripted agent, through ``clearance serve``.

Three parties hold API keys, as they would in production: trusted orchestrator code
opens the trace with the human's mandate, the agent makes its tool calls with the
remote SDK (:class:`clearance.Client`: every grant is verified here before a body
runs), and a human approver decides the payment that needs one, over HTTP, from
another thread, while the agent waits. The tool is a separate service behind the
grant guard; it reports its outcomes and refusals to the gateway's log.

Every field of a :class:`RemoteStep` is read from a real answer: the gateway's
decision (effect, rule ids, ledger index), the tool service's HTTP status and its
own record of payments, and the ledger file (read-only) for the entries the tool
reported. Nothing is decided or filled in by this module.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import httpx

from clearance._demo.keys import TOOL_PRINCIPAL, DemoKey
from clearance._internal.ledger.sqlite_reader import LedgerReader
from clearance._internal.ledger.store import StoredEntry
from clearance.errors import ApprovalRequired, Denied, Error

if TYPE_CHECKING:
    from clearance._internal.gate.traces import Trace
    from clearance._internal.remote.client import Client

MANDATE: Final = (
    "Pay acme-supplies' March invoice (EUR 120) and the April advance (EUR 640) "
    "through the payments service"
)
"""The human's instruction for the runtime act; the orchestrator opens the trace with it."""
BOUNDS: Final[Mapping[str, Any]] = {"spend_cap": 800, "currency": "EUR"}
APPROVAL_DELAY: Final = 1.0
"""Seconds the approver takes before approving (so the agent visibly waits)."""
APPROVAL_WAIT: Final = timedelta(seconds=30)
"""How long the agent waits for the approval before giving up."""
ACTION: Final = "payments.send"
"""The tool service's route ``POST /pay`` is this action (examples/tool_service/app.py)."""


@dataclass
class RemoteStep:
    """One step of the runtime act, as observed from the gateway, the tool and the log."""

    number: int
    actor: str
    """Who acted: the role of the key used (``agent``), or ``no key`` for a direct call."""
    action: str
    args: str
    outcome: str
    """allowed, denied, refused (by the tool), failed."""
    detail: str
    rules: list[str] = field(default_factory=list)
    index: int | None = None
    """The decision's ledger index; for a call the tool refused, the refusal's."""
    request_id: str | None = None
    tool_status: int | None = None
    """The HTTP status the tool service answered (None: the tool was not called)."""
    rows_before: int = 0
    rows_after: int = 0
    """The tool's own record of payments (payments.jsonl) before and after the step."""
    logged: list[int] = field(default_factory=list)
    """Ledger indexes of the execution entries the step left (outcomes, refusals)."""
    approval: dict[str, Any] | None = None
    """The approval as the approver's vote answered it (approval steps only)."""
    waited: float | None = None
    """Seconds the agent waited for the approval (approval steps only)."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form (written to ``last-run.json``)."""
        return dict(self.__dict__)


class ToolRecord:
    """The tool service's own record of the payments it made (one JSON line each)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "payments.jsonl"

    def count(self) -> int:
        """How many payments the tool has recorded (0 before the first)."""
        try:
            return sum(1 for line in self.path.read_text(encoding="utf-8").splitlines() if line)
        except FileNotFoundError:
            return 0


class Approver(threading.Thread):
    """The human approver: finds the agent's pending approval, waits a moment, approves.

    Uses only the approver key over HTTP (``GET /v1/approvals?status=pending``, then
    ``POST /v1/approvals/{id}``). ``answer`` is the approval the vote returned;
    ``error`` says what went wrong instead (the thread never raises). :meth:`cancel`
    ends the search early (the agent's call ended without waiting for a vote).
    """

    def __init__(self, url: str, key: DemoKey, trace_id: str, *, delay: float) -> None:
        super().__init__(name="demo-approver", daemon=True)
        self.url, self.key, self.trace_id, self.delay = url, key, trace_id, delay
        self.answer: dict[str, Any] | None = None
        self.error: str | None = None
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        """Stop looking for the approval (a vote already being sent still completes)."""
        self._cancelled.set()

    def run(self) -> None:
        """Poll the pending list (the agent's request appears there), then vote."""
        headers = {"Authorization": f"Bearer {self.key.token}"}
        deadline = time.monotonic() + APPROVAL_WAIT.total_seconds()
        try:
            with httpx.Client(base_url=self.url, headers=headers, timeout=10.0) as http:
                while time.monotonic() < deadline and not self._cancelled.is_set():
                    listed = http.get("/v1/approvals", params={"status": "pending"})
                    listed.raise_for_status()
                    for item in listed.json()["approvals"]:
                        if item.get("trace_id") == self.trace_id and item.get("action") == ACTION:
                            if self._cancelled.wait(self.delay):
                                break
                            vote = {
                                "decision": "approve",
                                "reason": "advance agreed with acme-supplies (demo approver)",
                            }
                            answer = http.post(f"/v1/approvals/{item['approval_id']}", json=vote)
                            answer.raise_for_status()
                            self.answer = dict(answer.json())
                            return
                    self._cancelled.wait(0.1)
            self.error = "no pending approval of the demo's trace was voted on"
        except (httpx.HTTPError, KeyError, TypeError, ValueError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"


def _rules(decision: Mapping[str, Any]) -> list[str]:
    return [str(r.get("rule")) for r in decision.get("reasons") or [] if isinstance(r, Mapping)]


def _summary(args: Mapping[str, Any]) -> str:
    if "to" in args:
        return f"to={args['to']} {args.get('amount')} {args.get('currency', '')}".strip()
    return ", ".join(f"{k}={v}" for k, v in args.items())


class RemoteAgent:
    """Runs the runtime act's plan against a running gateway and tool service."""

    def __init__(
        self,
        *,
        gateway_url: str,
        tool_url: str,
        keys: Mapping[str, DemoKey],
        ledger_path: Path,
        tool_state: Path,
        spool_dir: Path,
    ) -> None:
        self.gateway_url, self.tool_url, self.keys = gateway_url, tool_url, keys
        self.reader = LedgerReader(ledger_path)
        self.record = ToolRecord(tool_state)
        self.spool_dir = spool_dir
        self.steps: list[RemoteStep] = []
        self.named: dict[str, RemoteStep] = {}
        """The steps by what they show: invoice, delete, advance, replay, direct."""
        self.trace_id = ""
        self.approved_request: str | None = None
        """Request id of the approved payment (its outcome's receipt is checked)."""
        self._first_grant: tuple[str, dict[str, str], dict[str, Any]] | None = None

    # -- plumbing -------------------------------------------------------------------------

    def _step(self, name: str, actor: str, action: str, args: Mapping[str, Any]) -> RemoteStep:
        rows = self.record.count()
        step = RemoteStep(len(self.steps) + 1, actor, action, _summary(args), "failed", "")
        step.rows_before = step.rows_after = rows
        self.steps.append(step)
        self.named[name] = step
        return step

    def _executions(self, since: int, request_id: str | None) -> list[StoredEntry]:
        """Execution entries appended since ``since`` (of ``request_id`` when given)."""
        size = self.reader.stored_size()
        if request_id is not None:
            return [e for e in self.reader.find("execution", request_id, size) if e.index >= since]
        return [e for e in self.reader.scan(since, size) if e.entry.get("type") == "execution"]

    def _finish(self, step: RemoteStep, since: int) -> None:
        step.rows_after = self.record.count()
        step.logged = [e.index for e in self._executions(since, step.request_id)]

    def _pay(self, args: Mapping[str, Any], headers: Mapping[str, str]) -> httpx.Response:
        return httpx.post(f"{self.tool_url}/pay", json=dict(args), headers=headers, timeout=10.0)

    def _denied(self, step: RemoteStep, exc: Denied) -> None:
        step.rules = _rules(exc.decision)
        index = exc.decision.get("index")
        step.index = index if isinstance(index, int) else None
        rid = exc.decision.get("request_id")
        step.request_id = rid if isinstance(rid, str) else None
        step.outcome = "denied"
        messages = [
            str(r.get("message"))
            for r in exc.decision.get("reasons") or []
            if isinstance(r, Mapping) and r.get("message")
        ]
        step.detail = messages[0] if messages else str(exc)

    # -- the plan ---------------------------------------------------------------------------

    def run(self) -> list[RemoteStep]:
        """Open the trace as the orchestrator, then make the agent's calls (see the module)."""
        from clearance import Client

        with Client(self.gateway_url, self.keys["orchestrator"].token) as orchestrator:
            opened = orchestrator.open_trace(
                MANDATE, bounds=BOUNDS, principal=self.keys["agent"].principal
            )
        self.trace_id = opened.trace_id
        with Client(
            self.gateway_url,
            self.keys["agent"].token,
            spool_dir=self.spool_dir,
            executor="clearance-demo-agent",
        ) as client:
            trace = client.resume_trace(self.trace_id)  # the agent gets the trace id only
            invoice = {"to": "acme-supplies", "amount": 120.0, "currency": "EUR"}
            self.governed_payment("invoice", client, trace, invoice)
            self.denied_delete(client, trace)
            advance = {"to": "acme-supplies", "amount": 640.0, "currency": "EUR"}
            self.governed_payment("advance", client, trace, advance, approver=self.keys["approver"])
        self.replayed_grant()
        self.direct_call({"to": "evil-corp", "amount": 450.0, "currency": "EUR"})
        return self.steps

    def governed_payment(
        self,
        name: str,
        client: Client,
        trace: Trace,
        args: Mapping[str, Any],
        approver: DemoKey | None = None,
    ) -> None:
        """``client.clearance`` around a call to the tool with the grant; with ``approver``,
        the agent waits while the approver thread decides."""
        from clearance import grant_headers

        step = self._step(name, "agent", ACTION, args)
        since = self.reader.stored_size()
        voter = None
        if approver is not None:
            voter = Approver(self.gateway_url, approver, self.trace_id, delay=APPROVAL_DELAY)
            voter.start()
        started = time.monotonic()
        try:
            with client.clearance(
                {"action": ACTION, "args": dict(args)},
                trace=trace,
                wait=APPROVAL_WAIT if approver is not None else None,
            ) as cleared:
                if approver is not None:
                    step.waited = round(time.monotonic() - started, 2)
                auth = cleared.authorization
                step.rules, step.index = auth.decision.rule_ids, auth.decision_index
                step.request_id = auth.request_id
                headers = grant_headers(cleared.grant, auth.intent)
                reply = self._pay(args, headers)
                step.tool_status = reply.status_code
                if reply.is_success:
                    paid = reply.json()
                    cleared.record_result(paid)
                    step.outcome = "allowed"
                    step.detail = f"the tool checked the grant, paid {paid.get('payment_id')}"
                    if self._first_grant is None:
                        self._first_grant = (auth.request_id, headers, dict(args))
                else:
                    step.outcome, step.detail = "refused", f"the tool answered {reply.text}"
        except ApprovalRequired as exc:
            self._denied(step, exc)
            step.outcome = "failed"
            step.detail = f"approval {exc.approval_id} still pending after the wait"
        except Denied as exc:
            self._denied(step, exc)
        except (Error, httpx.HTTPError) as exc:
            step.outcome, step.detail = "failed", f"{type(exc).__name__}: {exc}"
        if voter is not None and approver is not None:
            if step.outcome != "allowed":
                voter.cancel()
            voter.join(timeout=APPROVAL_WAIT.total_seconds() + 5)
            step.approval = voter.answer
            if voter.answer is not None:
                # The collected grant's own reason is "approved"; show the rule that asked.
                step.rules = [str(rule) for rule in voter.answer.get("rules") or []]
            if voter.error is not None:
                step.detail += f" (approver: {voter.error})"
            elif step.outcome == "allowed":
                self.approved_request = step.request_id
                step.detail = f"{approver.principal} approved after {step.waited}s; {step.detail}"
        self._finish(step, since)

    def denied_delete(self, client: Client, trace: Trace) -> None:
        """An action the bundle forbids outright: the policy's rule id comes back."""
        args = {"path": "notes/plan.md"}
        step = self._step("delete", "agent", "delete_file", args)
        since = self.reader.stored_size()
        try:
            with client.clearance({"action": "delete_file", "args": args}, trace=trace):
                step.outcome, step.detail = "allowed", "the body ran (it must not)"
        except Denied as exc:
            self._denied(step, exc)
        except Error as exc:
            step.outcome, step.detail = "failed", f"{type(exc).__name__}: {exc}"
        self._finish(step, since)

    def replayed_grant(self) -> None:
        """The first payment's grant presented to the tool a second time."""
        if self._first_grant is None:
            return
        request_id, headers, args = self._first_grant
        step = self._step("replay", "agent", ACTION, args)
        step.args += " (same grant again)"
        step.request_id = request_id
        self._call_tool(step, args, headers)

    def direct_call(self, args: Mapping[str, Any]) -> None:
        """Anyone on the network calling the tool directly, without a grant."""
        step = self._step("direct", "no key", ACTION, args)
        step.args += " (direct, no grant)"
        self._call_tool(step, args, {})

    def _call_tool(
        self, step: RemoteStep, args: Mapping[str, Any], headers: Mapping[str, str]
    ) -> None:
        since = self.reader.stored_size()
        try:
            reply = self._pay(args, headers)
        except httpx.HTTPError as exc:
            step.outcome, step.detail = "failed", f"{type(exc).__name__}: {exc}"
            self._finish(step, since)
            return
        step.tool_status = reply.status_code
        self._finish(step, since)
        if reply.is_success:
            step.outcome, step.detail = "allowed", f"the tool paid (it must not): {reply.text}"
            return
        step.outcome = "refused"
        refusals = [
            e
            for e in self._executions(since, None)
            if e.entry.get("status") == "rejected" and e.entry.get("executor") == TOOL_PRINCIPAL
        ]
        if refusals:
            step.index = refusals[-1].index
            reason = refusals[-1].entry.get("error_type")
            step.detail = f"HTTP {reply.status_code} from the tool; logged: {reason}"
        else:
            step.detail = f"HTTP {reply.status_code} from the tool; no refusal in the log"

    def close(self) -> None:
        """Release the ledger reader."""
        self.reader.close()
