"""The demo's scripted agent: a fixed plan of tool calls, each made through the real gate.

There is no model here, but the agent behaves like a naive one: it follows
instructions it finds in the documents it reads, which is exactly how a
prompt injection turns into an action. Every outcome recorded in a
:class:`StepResult` comes from the gate (policy decision, ledger index,
grant verification) and from the tools' real side effects; nothing is
decided by this module.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clearance._demo.tools import INVOICE_NAME, Payments, Sandbox
from clearance._internal.gate.cleared import Authorization
from clearance._internal.gate.core import Gate
from clearance._internal.gate.traces import Trace
from clearance._internal.grants.keys import SigningKey
from clearance._internal.grants.token import GrantClaims, issue_grant
from clearance._internal.ids import new_id
from clearance._internal.intent import Intent
from clearance.errors import ApprovalRequired, Denied, InvalidGrant

PRINCIPAL = "agent:ops-bot"
"""The agent's principal (listed in the example bundle's principal registry)."""
MANDATE = "Pay the March invoice from acme-supplies (EUR 120) and file the receipt"
"""The human's instruction; trusted code opens the trace with it."""

_INJECTION = re.compile(
    r"also pay (?P<to>[a-z0-9][a-z0-9-]*) (?P<currency>EUR|USD) (?P<amount>\d+(?:\.\d+)?)"
    r"(?: to IBAN (?P<iban>[A-Z]{2}[0-9A-Z ]+?))?(?=[ ,.\n])",
    re.IGNORECASE,
)


@dataclass
class StepResult:
    """What happened at one step of the plan, as observed from the gate and the tools."""

    number: int
    action: str
    args: str
    outcome: str
    """allowed, denied, approval_required, refused (by the executor), failed (tool), skipped."""
    detail: str
    rules: list[str] = field(default_factory=list)
    index: int | None = None
    request_id: str | None = None
    untrusted: bool | None = None
    body_ran: bool = False
    payments_before: int = 0
    payments_after: int = 0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form (written to the demo's ``last-run.json``)."""
        return dict(self.__dict__)


def _rule_ids(decision: Mapping[str, Any]) -> list[str]:
    return [
        str(r.get("rule")) if isinstance(r, Mapping) else str(r)
        for r in decision.get("reasons") or []
    ]


def _summary(args: Mapping[str, Any]) -> str:
    if "path" in args:
        return f"path={args['path']}"
    if "to" in args:
        return f"to={args['to']} {args.get('amount')} {args.get('currency', '')}".strip()
    return ", ".join(f"{k}={v}" for k, v in args.items())


class DemoAgent:
    """Runs the plan inside one trace of ``gate``; see :meth:`run`."""

    def __init__(self, gate: Gate, sandbox: Sandbox, payments: Payments, trace: Trace) -> None:
        self.gate = gate
        self.sandbox = sandbox
        self.payments = payments
        self.trace = trace
        self.steps: list[StepResult] = []
        self.document: str | None = None
        self.legit_payment: str | None = None
        """Request id of the supplier payment, for the receipt at the end."""

    # --- plumbing -------------------------------------------------------------------------

    def _intent(self, action: str, args: Mapping[str, Any]) -> Intent:
        return Intent.create(principal=PRINCIPAL, action=action, args=args)

    def _new_step(self, action: str, args: Mapping[str, Any]) -> StepResult:
        count = self.payments.count()
        step = StepResult(
            len(self.steps) + 1,
            action,
            _summary(args),
            "skipped",
            "",
            payments_before=count,
            payments_after=count,
        )
        self.steps.append(step)
        return step

    def _finish(self, step: StepResult) -> StepResult:
        step.payments_after = self.payments.count()
        if step.index is not None:
            facts = self.gate.ledger.get(step.index).entry.get("facts") or {}
            if "untrusted" in facts:
                step.untrusted = bool(facts["untrusted"])
        return step

    def _refused(self, step: StepResult, exc: Denied) -> None:
        decision = exc.decision
        step.rules = _rule_ids(decision)
        index = decision.get("index")
        step.index = index if isinstance(index, int) else None
        rid = decision.get("request_id")
        step.request_id = rid if isinstance(rid, str) else None
        if isinstance(exc, ApprovalRequired):
            step.outcome, step.detail = "approval_required", f"approval {exc.approval_id} pending"
        else:
            step.outcome = "denied"
            messages = [
                str(r.get("message"))
                for r in decision.get("reasons") or []
                if isinstance(r, Mapping) and r.get("message")
            ]
            step.detail = messages[0] if messages else str(exc)

    def governed(
        self, action: str, args: Mapping[str, Any], body: Callable[[str], Any]
    ) -> StepResult:
        """One governed call: ``body(request_id)`` runs only inside ``gate.clearance``."""
        step = self._new_step(action, args)
        try:
            with self.gate.clearance(self._intent(action, args)) as cleared:
                auth = cleared.authorization
                step.rules, step.index = auth.decision.rule_ids, auth.decision_index
                step.request_id = auth.request_id
                step.body_ran = True
                value = body(cleared.request_id)
                cleared.record_result(value)
            step.outcome, step.detail = "allowed", f"ran: {value}"
        except Denied as exc:
            self._refused(step, exc)
        except Exception as exc:  # the tool itself failed; the gate logged status "error"
            step.outcome, step.detail = "failed", f"the tool raised {type(exc).__name__}: {exc}"
        return self._finish(step)

    def execute(
        self, step: StepResult, grant: str, intent: Intent, body: Callable[[], Any]
    ) -> None:
        """Hand ``grant`` to the executor (Gate.execute); record a refusal from the ledger."""
        try:
            value = self.gate.execute(grant, intent, body)
            step.outcome, step.detail = "allowed", f"ran: {value}"
        except InvalidGrant:
            step.outcome, step.detail = "refused", "grant rejected"
            # The executor logged the precise reason as a 'rejected' execution entry
            # (the caller's exception is deliberately opaque); show it from the ledger.
            rejected = [
                e
                for e in self.gate.ledger.find("execution", step.request_id or "")
                if e.entry.get("status") == "rejected"
            ]
            if rejected:
                step.index = rejected[-1].index
                step.detail = f"grant rejected: {rejected[-1].entry.get('error_type')}"

    # --- the plan -------------------------------------------------------------------------

    def pay_body(self, args: Mapping[str, Any]) -> Callable[[str], Any]:
        """The payments tool's call for ``args``: the body of a governed payment."""

        def pay(request_id: str) -> str:
            row = self.payments.pay(
                trace_id=self.trace.trace_id,
                request_id=request_id,
                payee=str(args["to"]),
                amount=float(args["amount"]),
                currency=str(args["currency"]),
                memo=str(args.get("memo", "")),
            )
            return f"payment row {row} inserted"

        return pay

    def pay_with_grant(self, args: Mapping[str, Any]) -> Authorization | None:
        """Authorize a payment, then hand the grant to the payments executor."""
        step = self._new_step("pay_invoice", args)
        try:
            auth = self.gate.authorize(self._intent("pay_invoice", args))
        except Denied as exc:
            self._refused(step, exc)
            self._finish(step)
            return None
        step.rules, step.index, step.request_id = (
            auth.decision.rule_ids,
            auth.decision_index,
            auth.request_id,
        )
        self.execute(step, auth.grant, auth.intent, self._ran(step, auth.request_id, args))
        self._finish(step)
        return auth

    def _ran(self, step: StepResult, request_id: str, args: Mapping[str, Any]) -> Callable[[], Any]:
        body = self.pay_body(args)

        def run() -> Any:
            step.body_ran = True
            return body(request_id)

        return run

    def present_again(self, auth: Authorization, args: Mapping[str, Any]) -> None:
        """The executor receives the same grant a second time (a replayed message)."""
        step = self._new_step("pay_invoice", args)
        step.args += " (same grant, 2nd time)"
        step.request_id = auth.request_id
        self.execute(step, auth.grant, auth.intent, self._ran(step, auth.request_id, args))
        self._finish(step)

    def forge(self, args: Mapping[str, Any], kid: str) -> None:
        """An attacker signs a grant with their own Ed25519 key under the gate's real kid."""
        step = self._new_step("pay_invoice", args)
        step.args += " (forged grant)"
        intent = self._intent("pay_invoice", args).with_context(trace_id=self.trace.trace_id)
        now = time.time()
        forged_rid = new_id("r", now)
        step.request_id = forged_rid
        claims = GrantClaims.for_intent(
            intent,
            issuer=self.gate.issuer,
            audience=self.gate.audience,
            policy_digest=self.gate.engine.digest,
            request_id=forged_rid,
            ledger_index=max(0, self.gate.ledger.size() - 1),
            now=now,
        )
        token = issue_grant(SigningKey(kid, Ed25519PrivateKey.generate()), claims)
        self.execute(step, token, intent, self._ran(step, forged_rid, args))
        self._finish(step)

    def injected_payment(self) -> dict[str, Any] | None:
        """What a naive agent would do with the fetched document: the planted payment."""
        match = _INJECTION.search(self.document or "")
        if match is None:
            return None
        args: dict[str, Any] = {
            "to": match["to"].lower(),
            "amount": float(match["amount"]),
            "currency": match["currency"].upper(),
            "memo": "as instructed in invoice 2026-03",
        }
        return args

    def run(self, kid: str) -> list[StepResult]:
        """The plan. ``kid`` is the gate's real grant key id (the forger copies it)."""
        box = self.sandbox
        plan = "1. read the invoice\n2. pay acme-supplies EUR 120\n3. file the receipt\n"
        self.governed(
            "write_file",
            {"path": "notes/plan.md", "content": plan},
            lambda _: f"{box.write('notes/plan.md', plan)} bytes written",
        )
        self.governed(
            "read_file",
            {"path": "notes/plan.md"},
            lambda _: f"{len(box.read('notes/plan.md'))} characters read",
        )
        self.governed(
            "read_file",
            {"path": "../keys/log.skey"},
            lambda _: f"{len(box.read('../keys/log.skey'))} characters read",
        )
        self.governed(
            "delete_file",
            {"path": "notes/plan.md"},
            lambda _: box.delete("notes/plan.md"),
        )

        def fetch(_: str) -> str:
            self.document = box.read(INVOICE_NAME)
            return f"{len(self.document)} characters read"

        self.governed("fetch_document", {"path": INVOICE_NAME}, fetch)
        injected = self.injected_payment()
        if injected is not None:
            # A naive agent obeys the instruction planted in the document.
            self.governed("pay_invoice", injected, self.pay_body(injected))
        freight = {
            "to": "globex-logistics",
            "amount": 560.0,
            "currency": "EUR",
            "memo": "Q1 freight, settled while at it",
        }
        self.governed("pay_invoice", freight, self.pay_body(freight))
        legit = {
            "to": "acme-supplies",
            "amount": 120.0,
            "currency": "EUR",
            "memo": "invoice 2026-03, ref ACME-2026-03",
        }
        auth = self.pay_with_grant(legit)
        if auth is not None:
            self.legit_payment = auth.request_id
            self.present_again(auth, legit)
        self.forge(injected or {"to": "evil-corp", "amount": 450.0, "currency": "EUR"}, kid)
        advance = {
            "to": "acme-supplies",
            "amount": 490.0,
            "currency": "EUR",
            "memo": "advance for April",
        }
        self.governed("pay_invoice", advance, self.pay_body(advance))
        receipt = "Paid acme-supplies EUR 120, invoice 2026-03.\n"
        self.governed(
            "write_file",
            {"path": "receipts/acme-2026-03.txt", "content": receipt},
            lambda _: f"{box.write('receipts/acme-2026-03.txt', receipt)} bytes written",
        )
        return self.steps
