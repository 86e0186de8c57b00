"""The scripted agent's steps one at a time, through a running server's own gate.

The console's runtime demo page (``/console/demo`` of ``clearance serve --demo``)
runs these steps when a visitor presses a button, so each decision appears at once in
the decision feed, the approvals inbox and the lineage graph of the same server. They
are the scenes of the demo's first act (:class:`~clearance._demo.agent.DemoAgent`):
an allowed payment, a call denied for its arguments, the payee planted in an
untrusted document refused, a payment that needs a human (left pending in the
inbox), a forged grant and a replayed grant refused by the executor.

Invariants:

* Every outcome comes from the gate and the demo's real tools (the sandbox and the
  SQLite payments table under ``HOME/demo``), as in act 1; nothing here decides.
* Steps run one at a time (one lock), each in the current demo trace: trusted code
  (this module) opens it with the demo's mandate for the agent's principal, on the
  first step or on :meth:`LiveDemo.new_trace`. A step that needs an earlier one's
  result (the replayed grant needs a grant) makes it first, and reports both calls.
* Each decision a step makes is reported to ``counted`` (the server's metrics), as a
  decision over HTTP is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from clearance._demo.agent import MANDATE, PRINCIPAL, DemoAgent, StepResult
from clearance._demo.tools import INVOICE_NAME, INVOICE_TEXT, Payments, Sandbox
from clearance._internal.gate.cleared import Authorization
from clearance._internal.gate.core import Gate
from clearance._internal.gate.traces import Trace
from clearance.errors import Error

BOUNDS: Final[Mapping[str, Any]] = {"spend_cap": 1000, "currency": "EUR"}
"""The live trace's bounds: room for the asked payment, a second one and the pending
approval's reserved amount (120 + 120 + 560), so each step shows its own rule."""
ASKED: Final[Mapping[str, Any]] = {
    "to": "acme-supplies",
    "amount": 120.0,
    "currency": "EUR",
    "memo": "invoice 2026-03, ref ACME-2026-03",
}
"""The payment the mandate asks for."""
OVER_LIMIT: Final[Mapping[str, Any]] = {
    "to": "globex-logistics",
    "amount": 560.0,
    "currency": "EUR",
    "memo": "Q1 freight, settled while at it",
}
PLANTED_FALLBACK: Final[Mapping[str, Any]] = {"to": "evil-corp", "amount": 450.0, "currency": "EUR"}
"""What the forger pays when the planted instruction was not read in this trace."""

EFFECTS: Final = {
    "allowed": "allow",
    "denied": "deny",
    "approval_required": "approval_required",
    "refused": "rejected",
    "failed": "failed",
    "skipped": "other",
}
"""A call's outcome -> the badge the page shows (the console's effect classes)."""


@dataclass(frozen=True)
class LiveStep:
    """One button of the demo page."""

    number: int
    title: str
    shows: str
    """What the step demonstrates, in a sentence."""
    expect: str
    """The outcome the demo's bundle gives it (the page says so before it runs)."""


STEPS: Final[tuple[LiveStep, ...]] = (
    LiveStep(
        1,
        "Pay the invoice the human asked for",
        "The agent pays acme-supplies EUR 120, as the mandate says; the executor checks "
        "the grant before the payments table is touched.",
        "allowed",
    ),
    LiveStep(
        2,
        "Read a file outside the sandbox",
        "The agent asks to read ../keys/log.skey: the policy denies it for its arguments, "
        "before the file tool runs.",
        "denied",
    ),
    LiveStep(
        3,
        "Obey the payee planted in a fetched document",
        "The agent fetches the supplier's invoice (its output is untrusted) and then tries "
        "to pay the payee an instruction hidden in it names.",
        "denied",
    ),
    LiveStep(
        4,
        "Pay more than 500",
        "A EUR 560 freight payment needs a human: it waits in the approvals inbox.",
        "approval_required",
    ),
    LiveStep(
        5,
        "Present a forged grant",
        "An attacker signs a grant with their own key under the gate's real key id; the "
        "executor refuses it and logs why.",
        "refused",
    ),
    LiveStep(
        6,
        "Present the same grant twice",
        "The grant of an allowed payment is presented to the executor again; its single "
        "use is already spent.",
        "refused",
    ),
)


@dataclass(frozen=True)
class LiveCall:
    """One call of a step, as the gate and the ledger answered it."""

    action: str
    args: str
    outcome: str
    effect: str
    detail: str
    reasons: list[dict[str, str]]
    """``rule`` and ``message`` of each reason (from the ledger's decision entry)."""
    index: int | None
    request_id: str | None
    decided: bool
    """Whether ``request_id`` has a decision (so it has a request page)."""


@dataclass(frozen=True)
class LiveResult:
    """What one press of a step's button did."""

    step: int
    title: str
    trace_id: str
    calls: list[LiveCall] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "step": self.step,
            "title": self.title,
            "trace_id": self.trace_id,
            "calls": [dict(call.__dict__) for call in self.calls],
        }


class LiveDemo:
    """The demo steps against ``gate`` (see the module docstring)."""

    def __init__(
        self,
        gate: Gate,
        demo_dir: Path,
        *,
        signing_kid: Callable[[], str | None],
        counted: Callable[[str, str], None],
    ) -> None:
        """Steps use the tools under ``demo_dir``; ``signing_kid`` is the gate's active
        grant key id (the forger copies it); ``counted(effect, action)`` hears each
        decision."""
        self._gate = gate
        self._sandbox = Sandbox(demo_dir / "sandbox")
        self._sandbox.write(INVOICE_NAME, INVOICE_TEXT)
        self._payments = Payments(demo_dir / "payments.db")
        self._signing_kid = signing_kid
        self._counted = counted
        self._lock = threading.Lock()
        self._trace: Trace | None = None
        self._agent: DemoAgent | None = None
        self._grant: tuple[Authorization, float] | None = None
        """The newest allowed payment's authorization and when (monotonic) it was made."""

    @property
    def trace_id(self) -> str | None:
        """The current demo trace (None before the first step)."""
        return self._trace.trace_id if self._trace is not None else None

    def new_trace(self, opened_by: str) -> str:
        """Open a new demo trace for the next steps; returns its id."""
        with self._lock:
            return self._open(opened_by).trace.trace_id

    def _open(self, opened_by: str) -> DemoAgent:
        trace = self._gate.open_trace(
            MANDATE, bounds=dict(BOUNDS), opened_by=opened_by, principal=PRINCIPAL
        )
        self._trace, self._grant = trace, None
        self._agent = DemoAgent(self._gate, self._sandbox, self._payments, trace)
        return self._agent

    def run(self, number: int, opened_by: str) -> LiveResult:
        """Run step ``number`` (1-based) in the current trace, opening one if needed.

        ValueError for a number that names no step.
        """
        if not 1 <= number <= len(STEPS):
            raise ValueError(f"there is no step {number}: steps are 1 to {len(STEPS)}")
        with self._lock:
            agent = self._agent if self._agent is not None else self._open(opened_by)
            first = len(agent.steps)
            scenes: tuple[Callable[[DemoAgent], None], ...] = (
                self._pay_asked,
                self._outside_sandbox,
                self._planted_payee,
                self._over_limit,
                self._forged_grant,
                self._replayed_grant,
            )
            with agent.trace.active():
                scenes[number - 1](agent)
            calls = [self._call(step) for step in agent.steps[first:]]
            return LiveResult(number, STEPS[number - 1].title, agent.trace.trace_id, calls)

    # --- the scenes -------------------------------------------------------------------

    def _pay_asked(self, agent: DemoAgent) -> None:
        auth = agent.pay_with_grant(ASKED)
        if auth is not None:
            self._grant = (auth, time.monotonic())

    def _outside_sandbox(self, agent: DemoAgent) -> None:
        path = "../keys/log.skey"
        agent.governed(
            "read_file",
            {"path": path},
            lambda _: f"{len(self._sandbox.read(path))} characters read",
        )

    def _planted_payee(self, agent: DemoAgent) -> None:
        def fetch(_: str) -> str:
            agent.document = self._sandbox.read(INVOICE_NAME)
            return f"{len(agent.document)} characters read"

        agent.governed("fetch_document", {"path": INVOICE_NAME}, fetch)
        planted = agent.injected_payment()
        if planted is not None:
            agent.governed("pay_invoice", planted, agent.pay_body(planted))

    def _over_limit(self, agent: DemoAgent) -> None:
        agent.governed("pay_invoice", OVER_LIMIT, agent.pay_body(OVER_LIMIT))

    def _forged_grant(self, agent: DemoAgent) -> None:
        kid = self._signing_kid()
        if kid is None:
            number = len(agent.steps) + 1
            detail = "the gate has no grant key to imitate"
            agent.steps.append(StepResult(number, "pay_invoice", "forged grant", "failed", detail))
            return
        agent.forge(agent.injected_payment() or PLANTED_FALLBACK, kid)

    def _replayed_grant(self, agent: DemoAgent) -> None:
        # A grant lives grant_lifetime seconds: an older one would be refused as expired,
        # not as replayed, so the step then makes a fresh payment to replay.
        fresh = self._gate.limits.grant_lifetime / 2
        if self._grant is None or time.monotonic() - self._grant[1] > fresh:
            self._grant = None
            self._pay_asked(agent)
        if self._grant is not None:
            agent.present_again(self._grant[0], ASKED)

    # --- reporting --------------------------------------------------------------------

    def _call(self, step: StepResult) -> LiveCall:
        """``step`` with its reasons from the ledger; a decision it made is counted here."""
        ledger = self._gate.ledger
        reasons: list[dict[str, str]] = []
        entry: Mapping[str, Any] = {}
        if step.index is not None:
            try:
                entry = ledger.get(step.index).entry
            except Error:
                entry = {}
        if entry.get("type") == "decision":
            self._counted(str(entry.get("effect")), step.action)
            reasons = [
                {"rule": str(r.get("rule")), "message": str(r.get("message") or "")}
                for r in entry.get("reasons") or []
                if isinstance(r, Mapping)
            ]
        # A refused grant's request may still have a decision (the replayed one has);
        # a forged one has none.
        decided = step.request_id is not None and bool(ledger.find("decision", step.request_id))
        repeated = step.detail in {reason["message"] for reason in reasons}
        return LiveCall(
            action=step.action,
            args=step.args,
            outcome=step.outcome,
            effect=EFFECTS.get(step.outcome, "other"),
            detail="" if repeated else step.detail,
            reasons=reasons,
            index=step.index,
            request_id=step.request_id,
            decided=decided,
        )
