"""One tool call of an agent framework, governed: intent, decision, governed run, approval.

The framework adapters (:mod:`.langchain`, :mod:`.openai_agents`, :mod:`.pydantic_ai`)
translate their framework's tool-call hook into a :class:`ToolCall` and hand it here;
everything that decides whether and how the tool runs lives in this module, once.

Invariants:

* **The tool body runs only inside a governed call**: inside ``clearance(...)`` of the
  gate or the remote client (after the decision is durable and the grant verified), or
  inside ``gate.execute`` / ``client.resume`` for an approved request. Every other path
  returns a :class:`Refusal` and never calls the body (fail-closed rule 9): a denial, a
  pending approval, and any clearance error before the body (binding, malformed intent,
  unreachable gateway, ledger failure).
* **A refusal says why**, in terms a model can act on: the rule ids and messages of the
  decision, or the approval id to wait for. Gate errors that are not decisions are
  opaque to the model (they are logged precisely on ``clearance.integrations``).
* **An approved call runs the approved intent, once**: the approval's one grant is
  collected and verified against the intent rebuilt from this call's arguments, so a
  call whose arguments differ from what the human approved is refused; a second
  collection is refused by the gate (Conflict).
* **The outcome is recorded**: the body's result (or a JSON projection the adapter
  chooses) goes into the execution entry; a tool the bundle marks ``untrusted_output``
  taints the trace at its decision, and its recorded result feeds value provenance.
* Errors raised by the body itself propagate unchanged (the outcome is recorded as
  ``error``); they are never mistaken for refusals.
* **Traces are opened by trusted code only**: by the governor itself with the user's
  task as mandate (a gate, or a client whose key has the ``orchestrator`` scope), or,
  with a :data:`TraceOpener`, by the application (for a client whose ``agent`` key may
  not open traces: the application opens the trace for the agent's principal with its
  own orchestrator key, and the governor resumes it by id through its own client). A
  trace that cannot be opened or resumed raises; no tool runs outside its trace.

Async frameworks use the ``a``-prefixed methods: the blocking exchanges with the gate or
gateway run in a worker thread (:func:`asyncio.to_thread`), and the tool's coroutine runs
on the caller's event loop, so the loop is never blocked by a decision or an approval wait.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from clearance._internal.gate.core import Gate
from clearance._internal.intent import Intent
from clearance.errors import ApprovalRequired, Denied, Error, InputError

if TYPE_CHECKING:
    from clearance._internal.gate.cleared import Authorization, Cleared
    from clearance._internal.gate.traces import Trace
    from clearance._internal.remote.client import Client

T = TypeVar("T")

log = logging.getLogger("clearance.integrations")

ActionMap = Mapping[str, str] | Callable[[str], str]
"""Tool name → intent action: a mapping (tools not in it keep their name) or a function."""

TraceOpener = Callable[[str], "str | Trace"]
"""Trusted code that opens a conversation's trace: given the mandate (the user's task), it
returns the id (or handle) of a trace opened for the governed principal."""


@dataclass(frozen=True)
class ToolCall:
    """One tool call the model asked for: the tool's name, its arguments and the call id."""

    name: str
    args: Mapping[str, Any]
    call_id: str | None = None


@dataclass(frozen=True)
class Refusal:
    """The tool did not run: why, for the model (and the application)."""

    tool: str
    reasons: tuple[tuple[str, str], ...]
    """``(rule id, message)`` pairs from the decision (or a gate reason)."""
    approval_id: str | None = None
    """Set when the policy asks for a human approval: the pending approval's id."""
    kind: str = "denied"
    """``denied``, ``approval_required`` or ``error`` (clearance could not decide)."""

    @property
    def rule_ids(self) -> list[str]:
        """The rule ids that decided the refusal."""
        return [rule for rule, _ in self.reasons]

    def message(self) -> str:
        """A text a model can act on: what happened to the call and the reasons."""
        reasons = "; ".join(f"{rule}: {text}" if text else rule for rule, text in self.reasons)
        if self.kind == "approval_required":
            head = (
                f"clearance: the call to {self.tool} needs a human approval "
                f"(approval {self.approval_id}); it has not run"
            )
        elif self.kind == "error":
            head = f"clearance could not decide the call to {self.tool}; it did not run"
        else:
            head = f"clearance denied the call to {self.tool}; it did not run"
        return f"{head}. Reasons: {reasons}" if reasons else f"{head}."


@dataclass(frozen=True)
class Ran(Generic[T]):
    """The tool ran inside a governed call; ``value`` is what it returned."""

    value: T
    request_id: str


def refusal_for(tool: str, exc: Error) -> Refusal:
    """The :class:`Refusal` for a clearance error raised before a tool body could run."""
    if isinstance(exc, Denied):
        reasons = tuple(
            (str(r.get("rule", "")), str(r.get("message", "")))
            if isinstance(r, Mapping)
            else (str(r), "")
            for r in exc.decision.get("reasons", [])
        )
        if isinstance(exc, ApprovalRequired):
            return Refusal(tool, reasons, exc.approval_id, "approval_required")
        return Refusal(tool, reasons or (("denied", str(exc)),), None, "denied")
    log.warning("clearance refused a %s call: %s", tool, exc.diagnostics())
    if isinstance(exc, InputError):
        # About the arguments the model wrote: telling it lets it correct the call.
        return Refusal(tool, (("invalid-intent", str(exc)),), None, "error")
    return Refusal(tool, (("gate-error", type(exc).__name__),), None, "error")


def json_outcome(value: Any) -> Any:
    """The default projection of a tool's result for the ledger: the value itself."""
    return value


@dataclass
class ToolGovernor:
    """The framework-neutral core of an adapter: builds intents and governs tool calls.

    ``clearance`` is a :class:`~clearance.Gate` or a :class:`~clearance.Client`.
    ``actions`` maps tool names to intent actions (default: the tool's name).
    ``resource`` and ``purpose`` are copied into every intent. ``bounds`` are the
    bounds of every trace the adapter opens (``spend_cap``, ``expires_at``...).
    ``wait`` is how long a call that needs a human approval waits for it before it is
    refused as pending (None: not at all; the framework's own approval flow continues).
    ``trace_opener`` opens the traces instead of ``clearance`` (see :data:`TraceOpener`;
    it sets the bounds itself, so ``bounds`` must then be None).
    """

    clearance: Gate | Client
    actions: ActionMap | None = None
    resource: str | None = None
    purpose: str | None = None
    bounds: Mapping[str, Any] | None = None
    wait: float | timedelta | None = None
    trace_opener: TraceOpener | None = None
    _traces: dict[str, Trace] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.trace_opener is not None and self.bounds is not None:
            raise InputError(
                "bounds are set by the trace_opener that opens the traces; give one or the other"
            )

    # -- intents -------------------------------------------------------------------------

    def action_for(self, tool: str) -> str:
        """The intent action of tool ``tool``."""
        if self.actions is None:
            return tool
        if callable(self.actions):
            return self.actions(tool)
        return self.actions.get(tool, tool)

    def intent_for(self, call: ToolCall) -> dict[str, Any]:
        """The intent of ``call`` (the principal is the gate's or the API key's)."""
        intent: dict[str, Any] = {"action": self.action_for(call.name), "args": dict(call.args)}
        if self.resource is not None:
            intent["resource"] = self.resource
        if self.purpose is not None:
            intent["purpose"] = self.purpose
        return intent

    # -- traces --------------------------------------------------------------------------

    def open_trace(self, mandate: str) -> Trace:
        """Open a trace with the user's task as mandate (trusted code only) and keep it.

        With a :attr:`trace_opener`, the application opens it and the trace is resumed
        by id through :attr:`clearance` (a client's key must belong to the trace's
        principal).
        """
        if self.trace_opener is not None:
            opened = self.trace_opener(mandate)
            return self.trace(opened if isinstance(opened, str) else opened.trace_id)
        handle: Trace = self.clearance.open_trace(mandate, bounds=self.bounds)
        self._traces[handle.trace_id] = handle
        return handle

    def trace(self, trace_id: str) -> Trace:
        """The handle of a trace this adapter opened (or one resumed from the ledger)."""
        handle = self._traces.get(trace_id)
        if handle is None:
            handle = self.clearance.resume_trace(trace_id)
            self._traces[trace_id] = handle
        return handle

    # -- governed runs -------------------------------------------------------------------

    def run(
        self,
        call: ToolCall,
        trace: Trace | None,
        body: Callable[[Mapping[str, Any]], T],
        outcome: Callable[[T], Any] = json_outcome,
    ) -> Ran[T] | Refusal:
        """Decide ``call`` and, when allowed, run ``body(args)`` inside the governed call.

        ``outcome`` projects the body's value to the JSON recorded in the ledger. With
        :attr:`wait`, a call that needs an approval waits for it and runs once approved.
        """
        entered = False
        try:
            with self.clearance.clearance(
                self.intent_for(call), trace=trace, wait=self.wait
            ) as cleared:
                entered = True
                value = body(call.args)
                _record(cleared, outcome(value))
                return Ran(value, cleared.request_id)
        except Error as exc:
            if entered:
                raise
            return refusal_for(call.name, exc)

    def run_approved(
        self,
        approval_id: str,
        call: ToolCall,
        body: Callable[[Mapping[str, Any]], T],
        outcome: Callable[[T], Any] = json_outcome,
    ) -> Ran[T] | Refusal:
        """Run ``call`` under approval ``approval_id``, once, if a human approved it.

        Waits up to :attr:`wait` for the decision. Pending, denied, expired or already
        collected approvals, and an approval of other arguments, return a Refusal; the
        body never runs for them.
        """
        if isinstance(self.clearance, Gate):
            return self._run_approved_in_process(self.clearance, approval_id, call, body, outcome)
        entered = False
        try:
            with self.clearance.resume(approval_id, wait=self.wait) as cleared:
                entered = True
                approved = cleared.authorization.intent
                if approved.action != self.action_for(call.name) or dict(approved.args) != dict(
                    call.args
                ):
                    raise _NotTheApprovedCall(call.name)
                value = body(call.args)
                _record(cleared, outcome(value))
                return Ran(value, cleared.request_id)
        except _NotTheApprovedCall:
            return _mismatch(call)
        except Error as exc:
            if entered:
                raise
            return refusal_for(call.name, exc)

    def _run_approved_in_process(
        self,
        gate: Gate,
        approval_id: str,
        call: ToolCall,
        body: Callable[[Mapping[str, Any]], T],
        outcome: Callable[[T], Any],
    ) -> Ran[T] | Refusal:
        try:
            authorization = gate.resume(approval_id, wait=self.wait)
        except Error as exc:
            return refusal_for(call.name, exc)
        return self.execute(authorization, call, body, outcome)

    # -- decide here, execute later (in process) ----------------------------------------

    def decide(self, call: ToolCall, trace: Trace | None) -> Authorization | Refusal:
        """Decide ``call`` now (ledger first) and return its grant, or why it may not run.

        For frameworks whose hook that decides is not the hook that runs the tool: hand
        the Authorization to :meth:`execute`, which verifies its single-use grant.
        """
        try:
            authorization: Authorization = self.clearance.authorize(
                self.intent_for(call), trace=trace
            )
        except Error as exc:
            return refusal_for(call.name, exc)
        return authorization

    def execute(
        self,
        authorization: Authorization,
        call: ToolCall,
        body: Callable[[Mapping[str, Any]], T],
        outcome: Callable[[T], Any] = json_outcome,
    ) -> Ran[T] | Refusal:
        """Run ``body(args)`` under ``authorization`` if its grant verifies for this call.

        In process only: the gate verifies the grant (signature, expiry, single use,
        intent digest of this call's arguments) and records the outcome. A grant that
        does not verify is a Refusal and the body never runs.
        """
        gate = self.clearance
        if not isinstance(gate, Gate):
            return refusal_for(call.name, InputError("executing a grant needs an in-process gate"))
        ran: list[T] = []

        def governed_body() -> Any:
            ran.append(body(call.args))
            return outcome(ran[0])

        try:
            gate.execute(authorization.grant, _with_args(authorization, call), governed_body)
        except Error as exc:
            if ran:
                raise
            return refusal_for(call.name, exc)
        return Ran(ran[0], authorization.request_id)

    async def adecide(self, call: ToolCall, trace: Trace | None) -> Authorization | Refusal:
        """:meth:`decide` without blocking the event loop."""
        return await asyncio.to_thread(self.decide, call, trace)

    async def aexecute(
        self,
        authorization: Authorization,
        call: ToolCall,
        body: Callable[[Mapping[str, Any]], Awaitable[T]],
        outcome: Callable[[T], Any] = json_outcome,
    ) -> Ran[T] | Refusal:
        """:meth:`execute` for a coroutine tool."""
        return await asyncio.to_thread(self.execute, authorization, call, _on_loop(body), outcome)

    # -- async ---------------------------------------------------------------------------

    async def arun(
        self,
        call: ToolCall,
        trace: Trace | None,
        body: Callable[[Mapping[str, Any]], Awaitable[T]],
        outcome: Callable[[T], Any] = json_outcome,
    ) -> Ran[T] | Refusal:
        """:meth:`run` for a coroutine tool; the gate's exchanges run in a worker thread."""
        return await asyncio.to_thread(self.run, call, trace, _on_loop(body), outcome)

    async def arun_approved(
        self,
        approval_id: str,
        call: ToolCall,
        body: Callable[[Mapping[str, Any]], Awaitable[T]],
        outcome: Callable[[T], Any] = json_outcome,
    ) -> Ran[T] | Refusal:
        """:meth:`run_approved` for a coroutine tool."""
        return await asyncio.to_thread(
            self.run_approved, approval_id, call, _on_loop(body), outcome
        )

    async def aapproval_status(self, approval_id: str) -> str:
        """:meth:`approval_status` without blocking the event loop."""
        return await asyncio.to_thread(self.approval_status, approval_id)

    def approval_status(self, approval_id: str) -> str:
        """``approved``, ``denied``, ``expired``, ``collected`` or ``pending`` (after :attr:`wait`).

        In process only (the gate's approval book); a remote client reads the outcome
        when it collects (:meth:`run_approved`), so it answers ``pending`` here and the
        collection decides. Any error reading the approval answers ``denied``.
        """
        if not isinstance(self.clearance, Gate):
            return "pending"
        try:
            if self.wait:
                return self.clearance.wait_for_approval(approval_id, _seconds(self.wait)).status
            return self.clearance.approval(approval_id).status
        except Error as exc:
            log.warning("approval %s could not be read: %s", approval_id, exc.diagnostics())
            return "denied"


class _NotTheApprovedCall(Exception):
    """Raised inside a remote resumed call whose approved intent is not this call."""


def _mismatch(call: ToolCall) -> Refusal:
    return Refusal(
        call.name,
        (("not-the-approved-call", "the approval was given for other arguments"),),
        None,
        "denied",
    )


def _with_args(authorization: Authorization, call: ToolCall) -> Intent:
    """The decided intent with this call's arguments: its grant verifies only if they match.

    The gate may hand back the logged intent, whose sensitive arguments are redacted; the
    call's own arguments are the real ones, and the grant's intent digest decides.
    """
    return Intent.from_json({**authorization.intent.to_json(), "args": dict(call.args)})


def _record(cleared: Cleared, value: Any) -> None:
    try:
        cleared.record_result(value)
    except InputError as exc:  # the tool ran: say in the entry why its result is not there
        cleared.note_unrecordable(value, str(exc))


def _seconds(wait: float | timedelta) -> float:
    return wait.total_seconds() if isinstance(wait, timedelta) else float(wait)


def _on_loop(
    body: Callable[[Mapping[str, Any]], Awaitable[T]],
) -> Callable[[Mapping[str, Any]], T]:
    """A blocking body for a worker thread that runs ``body`` on the caller's event loop."""
    loop = asyncio.get_running_loop()

    def blocking(args: Mapping[str, Any]) -> T:
        async def run() -> T:
            return await body(args)

        return asyncio.run_coroutine_threadsafe(run(), loop).result()

    return blocking
