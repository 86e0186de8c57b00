"""Clearance for LangChain v1 agents: an ``AgentMiddleware`` at ``wrap_tool_call``.

``create_agent(model, tools, middleware=[ClearanceMiddleware(gate)], checkpointer=...)``
turns every tool call of the agent into an intent (action = the tool's name or its
configured action, args = the call's arguments), decided by the gate in process or by
``clearance serve`` through :class:`clearance.Client`:

* **allow** — the tool runs inside the governed call; its result (the ``ToolMessage``
  content) is recorded in the execution entry.
* **deny** — the tool does not run; the model receives a ``ToolMessage`` with
  ``status="error"`` naming the rule ids and messages, so it can change course.
* **approval_required** — a LangGraph interrupt (``langgraph.types.interrupt``) whose
  value carries ``clearance_approval_id``. Resume the graph (``Command(resume=...)``,
  any value) after the human decided: clearance, not the resume value, says what
  happened. Approved, the tool runs once with the approved intent; denied or expired,
  the model gets a ``ToolMessage`` with the reasons; still pending, the graph
  interrupts again. The interrupt needs a checkpointer.

Invariants:

* One trace per conversation thread, opened by ``before_agent`` with the first
  ``HumanMessage`` as mandate (the user's task, written by trusted code, never the
  model) and kept in the graph state (``clearance_trace_id``, private to the graph).
  With a :class:`clearance.Client`, opening needs an ``orchestrator`` key; an agent
  whose key has the ``agent`` scope only gets its traces from trusted code
  (``trace_opener``: the application opens the trace for the agent's principal with its
  own orchestrator key and returns the id; the middleware resumes it with the agent's
  key). A trace that cannot be opened fails the run before any tool is called.
  Tools the bundle marks ``untrusted_output`` taint that trace at their decision.
* The tool never runs outside a governed call (see :mod:`._tool_calls`); any clearance
  error before it runs is a refusal the model sees, never a silent pass.
* Across an interrupt the pending approval is remembered (by trace and call id) in this
  middleware object: resume in the process that interrupted. A process that did not
  see the interrupt decides the call again (a new approval is asked for).
"""

from __future__ import annotations

import asyncio as _asyncio
from typing import TYPE_CHECKING, Annotated, Any, NotRequired, TypeVar

from langchain.agents.middleware import AgentMiddleware as _AgentMiddleware
from langchain.agents.middleware import AgentState as _AgentState
from langchain.agents.middleware.types import PrivateStateAttr as _PrivateStateAttr
from langchain_core.messages import HumanMessage as _HumanMessage
from langchain_core.messages import ToolMessage as _ToolMessage
from langgraph.types import interrupt as _interrupt

from clearance.integrations._tool_calls import Ran as _Ran
from clearance.integrations._tool_calls import Refusal as _Refusal
from clearance.integrations._tool_calls import ToolCall as _ToolCall
from clearance.integrations._tool_calls import ToolGovernor as _ToolGovernor

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping
    from datetime import timedelta

    from langchain.agents.middleware import ToolCallRequest
    from langchain_core.messages import ToolMessage
    from langgraph.runtime import Runtime
    from langgraph.types import Command

    from clearance._internal.gate.core import Gate
    from clearance._internal.gate.traces import Trace
    from clearance._internal.remote.client import Client
    from clearance.integrations._tool_calls import ActionMap, TraceOpener

    ToolResult = ToolMessage | Command[Any]

__all__ = ["ClearanceMiddleware", "ClearanceState"]

_TRACE_KEY = "clearance_trace_id"
"""The state key holding the conversation's trace id."""

_T = TypeVar("_T")


class ClearanceState(_AgentState[Any]):
    """The agent state plus the id of the conversation's clearance trace (private)."""

    clearance_trace_id: NotRequired[Annotated[str, _PrivateStateAttr]]


class ClearanceMiddleware(_AgentMiddleware[ClearanceState, Any, Any]):
    """Govern every tool call of a ``create_agent`` agent with clearance.

    ``clearance`` is a :class:`clearance.Gate` (in process) or a
    :class:`clearance.Client`. ``actions`` maps tool names to intent actions (a dict,
    tools not in it keep their name, or a function); ``resource`` and ``purpose`` go
    into every intent; ``bounds`` are the bounds of the traces it opens (``spend_cap``
    ...). ``wait`` (seconds) lets a call that needs an approval wait that long before
    interrupting. ``trace_opener`` (trusted code: mandate -> trace id) opens each
    thread's trace instead, for a :class:`clearance.Client` whose ``agent`` key may not
    open traces; it sets the bounds. See the module docstring for what each decision does.
    """

    state_schema = ClearanceState

    def __init__(
        self,
        clearance: Gate | Client,
        *,
        actions: ActionMap | None = None,
        resource: str | None = None,
        purpose: str | None = None,
        bounds: Mapping[str, Any] | None = None,
        wait: float | timedelta | None = None,
        trace_opener: TraceOpener | None = None,
    ) -> None:
        super().__init__()
        self.governor = _ToolGovernor(
            clearance,
            actions,
            resource=resource,
            purpose=purpose,
            bounds=bounds,
            wait=wait,
            trace_opener=trace_opener,
        )
        self._pending: dict[str, str] = {}

    # -- the trace -----------------------------------------------------------------------

    def before_agent(self, state: ClearanceState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        """Open the thread's trace with the first human message as mandate (once)."""
        if state.get(_TRACE_KEY):
            return None
        handle = self.governor.open_trace(_mandate(state))
        return {_TRACE_KEY: handle.trace_id}

    async def abefore_agent(
        self, state: ClearanceState, runtime: Runtime[Any]
    ) -> dict[str, Any] | None:
        """:meth:`before_agent` without blocking the event loop."""
        return await _to_thread(self.before_agent, state, runtime)

    def _trace_of(self, state: Any) -> Trace | None:
        trace_id = state.get(_TRACE_KEY) if isinstance(state, dict) else None
        return self.governor.trace(trace_id) if trace_id else None

    # -- tool calls ----------------------------------------------------------------------

    def wrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], ToolResult],
    ) -> ToolResult:
        """Decide the call; run it governed, refuse it with reasons, or interrupt."""
        call = _call_of(request)
        approval_id = self._pending.get(_pending_key(request))
        if approval_id is None:
            ruled = self.governor.run(
                call, self._trace_of(request.state), lambda _: handler(request), _outcome
            )
            if isinstance(ruled, _Ran):
                return ruled.value
            if ruled.approval_id is None:
                return _refused(ruled, call)
            approval_id = self._remember(request, ruled)
        while True:
            _interrupt(_approval_request(call, approval_id))
            ruled = self.governor.run_approved(
                approval_id, call, lambda _: handler(request), _outcome
            )
            if isinstance(ruled, _Ran) or ruled.kind != "approval_required":
                self._pending.pop(_pending_key(request), None)
                return ruled.value if isinstance(ruled, _Ran) else _refused(ruled, call)

    async def awrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[ToolResult]],
    ) -> ToolResult:
        """:meth:`wrap_tool_call` for ``ainvoke``/``astream``; the tool runs on the loop."""
        call = _call_of(request)
        approval_id = self._pending.get(_pending_key(request))
        if approval_id is None:
            trace = await _to_thread(self._trace_of, request.state)
            ruled = await self.governor.arun(call, trace, lambda _: handler(request), _outcome)
            if isinstance(ruled, _Ran):
                return ruled.value
            if ruled.approval_id is None:
                return _refused(ruled, call)
            approval_id = self._remember(request, ruled)
        while True:
            _interrupt(_approval_request(call, approval_id))
            ruled = await self.governor.arun_approved(
                approval_id, call, lambda _: handler(request), _outcome
            )
            if isinstance(ruled, _Ran) or ruled.kind != "approval_required":
                self._pending.pop(_pending_key(request), None)
                return ruled.value if isinstance(ruled, _Ran) else _refused(ruled, call)

    def _remember(self, request: ToolCallRequest, ruled: _Refusal) -> str:
        approval_id = str(ruled.approval_id)
        self._pending[_pending_key(request)] = approval_id
        return approval_id


def _pending_key(request: ToolCallRequest) -> str:
    """A pending approval's key: the thread's trace and the call id (models reuse call ids)."""
    state = request.state
    trace_id = state.get(_TRACE_KEY) if isinstance(state, dict) else None
    return f"{trace_id}/{request.tool_call.get('id')}"


def _mandate(state: Mapping[str, Any]) -> str:
    """The first human message's text: the user's task."""
    for message in state.get("messages", ()):
        if isinstance(message, _HumanMessage):
            return message.text
    return ""


def _call_of(request: ToolCallRequest) -> _ToolCall:
    tool_call = request.tool_call
    return _ToolCall(tool_call["name"], tool_call.get("args") or {}, tool_call.get("id"))


def _outcome(result: ToolResult) -> Any:
    """What the ledger records of a tool's result: the ToolMessage's content."""
    if isinstance(result, _ToolMessage):
        return result.content
    return {"command": type(result).__name__}


def _refused(refusal: _Refusal, call: _ToolCall) -> ToolMessage:
    return _ToolMessage(
        content=refusal.message(),
        tool_call_id=str(call.call_id),
        name=call.name,
        status="error",
        artifact={
            "clearance": refusal.kind,
            "reasons": [{"rule": r, "message": m} for r, m in refusal.reasons],
            "approval_id": refusal.approval_id,
        },
    )


def _approval_request(call: _ToolCall, approval_id: str) -> dict[str, Any]:
    """The interrupt's value: enough for a UI to show the request and find the approval."""
    return {
        "clearance_approval_id": approval_id,
        "tool": call.name,
        "args": dict(call.args),
        "tool_call_id": call.call_id,
    }


async def _to_thread(fn: Callable[..., _T], *args: Any) -> _T:
    return await _asyncio.to_thread(fn, *args)
