"""Clearance for Google ADK agents: a plugin at ``before_tool_callback``.

``App(name=..., root_agent=agent, plugins=[ClearancePlugin(gate)])``, run by a
``Runner`` (or ``InMemoryRunner``), turns every tool call of every agent the runner
drives into an intent (action = the tool's name or its configured action, args = the model's
arguments), decided by the gate in process or by ``clearance serve`` through
:class:`clearance.Client`:

* **allow** — the tool runs inside the governed call, from the plugin's
  ``before_tool_callback`` (``tool.run_async`` with the decided arguments, exactly what
  ADK would call); its return value is recorded in the execution entry and becomes the
  call's response, which the ``after_tool_callback`` chain still sees.
* **deny** — the tool does not run: the call's response is a dict whose ``error`` names
  the rule ids and messages (and ``clearance``/``reasons`` carry them as data), so the
  model reads why and can change course.
* **approval_required** — ADK's tool confirmation flow: the plugin calls
  ``tool_context.request_confirmation`` (the payload holds ``clearance_approval_id``), so
  the run yields an ``adk_request_confirmation`` call for the client, and the call's
  response names the approval. Confirm in ADK once a human decided in clearance (or give
  ``wait`` to let the call wait for them): ADK then calls the tool again and, if the
  human approved, it runs once under the approval's grant. Denied, expired or still
  pending in clearance, or rejected in ADK, it does not run and the model reads why
  (ADK asks for a confirmation once per call; a model that calls again is decided anew).

Invariants:

* Neither ADK's confirmation nor clearance's approval is enough alone: a call that needed
  a clearance approval runs only with the grant collected from that approval, for the
  approved arguments, after the client confirmed it in ADK.
* The tool never runs outside a governed call (see :mod:`._tool_calls`): the plugin
  answers every call it governs, so ADK's own runner never calls the tool afterwards;
  any clearance error before the tool runs is a refusal the model reads. Because the
  plugin answers the call, agent-level before-tool callbacks and plugins registered
  after it do not run for governed calls: register the plugins that must see every call
  first. An exception the tool raises is recorded as its outcome and fails the run (ADK
  wraps it in the ``RuntimeError`` it raises for a failing plugin callback). A tool that
  asks for ADK confirmation itself (``require_confirmation``) is confirmed in ADK before
  clearance decides it; if clearance then asks for an approval, the call cannot be
  paused again (ADK confirms a call once) and its response names the approval.
* One trace per ADK session (app, user and session id), opened before the session's
  first run (``before_run_callback``, so a trace that cannot be opened fails the run
  before the model is asked anything) with the session's first user message as mandate
  (the user's task, never the model's words); tools the bundle marks
  ``untrusted_output`` taint it at their decision. The session's trace and its pending
  approvals are remembered in this plugin object: a session continued in another
  process opens a new trace and decides a confirmed call again.
"""

from __future__ import annotations

import asyncio as _asyncio
import threading as _threading
from typing import TYPE_CHECKING, Any

from google.adk.plugins import BasePlugin as _BasePlugin

from clearance.integrations._tool_calls import Ran as _Ran
from clearance.integrations._tool_calls import Refusal as _Refusal
from clearance.integrations._tool_calls import ToolCall as _ToolCall
from clearance.integrations._tool_calls import ToolGovernor as _ToolGovernor

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import timedelta

    from google.adk.agents.invocation_context import InvocationContext
    from google.adk.sessions import Session
    from google.adk.tools.base_tool import BaseTool
    from google.adk.tools.tool_context import ToolContext
    from google.genai import types

    from clearance._internal.gate.core import Gate
    from clearance._internal.gate.traces import Trace
    from clearance._internal.remote.client import Client
    from clearance.integrations._tool_calls import ActionMap, TraceOpener

__all__ = ["ClearancePlugin"]

_APPROVAL_KEY = "clearance_approval_id"


class ClearancePlugin(_BasePlugin):
    """Govern every tool call of the agents an ADK runner drives with clearance.

    ``clearance`` is a :class:`clearance.Gate` (in process) or a
    :class:`clearance.Client`. ``actions`` maps tool names to intent actions (a dict,
    tools not in it keep their name, or a function); ``resource`` and ``purpose`` go
    into every intent; ``bounds`` are the bounds of the traces it opens; ``wait``
    (seconds) lets a call that needs an approval wait that long for the human before
    asking for ADK confirmation. ``trace_opener`` (trusted code: mandate -> trace id)
    opens each session's trace instead, for a :class:`clearance.Client` whose ``agent``
    key may not open traces; it sets the bounds. See the module docstring.
    """

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
        name: str = "clearance",
    ) -> None:
        super().__init__(name=name)
        self.governor = _ToolGovernor(
            clearance,
            actions,
            resource=resource,
            purpose=purpose,
            bounds=bounds,
            wait=wait,
            trace_opener=trace_opener,
        )
        self._sessions: dict[str, Trace] = {}
        self._pending: dict[str, str] = {}
        self._opening = _threading.Lock()

    async def before_run_callback(self, *, invocation_context: InvocationContext) -> None:
        """Open the session's trace before the model is asked anything (once per session).

        A trace that cannot be opened fails the run here, before any tool is called.
        """
        await self._trace_of(invocation_context.session, invocation_context.user_content)

    async def before_tool_callback(
        self,
        *,
        tool: BaseTool,
        tool_args: dict[str, Any],
        tool_context: ToolContext,
    ) -> dict[str, Any] | None:
        """Decide the call; answer it with the governed run, the refusal, or a
        confirmation request. Returns None only to let ADK ask for a confirmation the
        tool itself requires (the tool does not run then)."""
        call = _ToolCall(tool.name, dict(tool_args), tool_context.function_call_id)
        confirmation = tool_context.tool_confirmation
        pending_key = f"{_session_key(tool_context.session)}/{call.call_id}"

        async def body(args: Mapping[str, Any]) -> Any:
            return await tool.run_async(args=dict(args), tool_context=tool_context)

        approval_id = self._pending.pop(pending_key, None) if confirmation is not None else None
        if confirmation is not None and approval_id is not None:
            if not confirmation.confirmed:
                return _rejected_in_adk(tool.name, approval_id)
            # ADK asks for a confirmation once per call: still pending now, the call is
            # answered with the refusal naming the approval (the model may call again).
            ruled = await self.governor.arun_approved(approval_id, call, body, _outcome)
        else:
            if await tool.check_require_confirmation(tool_args, tool_context) and (
                confirmation is None or not confirmation.confirmed
            ):
                return None  # ADK's own confirmation gate answers; the tool does not run
            trace = await self._trace_of(tool_context.session, tool_context.user_content)
            ruled = await self.governor.arun(call, trace, body, _outcome)
            # A call ADK already confirmed (the tool's own confirmation) cannot be paused
            # again: its refusal names the approval.
            if isinstance(ruled, _Refusal) and ruled.approval_id and confirmation is None:
                return self._ask_confirmation(ruled, pending_key, tool_context)
        if isinstance(ruled, _Ran):
            return _response(ruled.value, tool)
        return _refused(ruled)

    def _ask_confirmation(
        self, refusal: _Refusal, pending_key: str, tool_context: ToolContext
    ) -> dict[str, Any]:
        """Pause the call with ADK's confirmation flow and remember its approval."""
        approval_id = str(refusal.approval_id)
        self._pending[pending_key] = approval_id
        tool_context.request_confirmation(
            hint=refusal.message(), payload={_APPROVAL_KEY: approval_id}
        )
        # As ADK's own confirmation gate does: the pause is not a result for the model to
        # summarize (it would call the tool again).
        tool_context.actions.skip_summarization = True
        return _refused(refusal)

    async def _trace_of(self, session: Session, current: types.Content | None) -> Trace:
        mandate = _mandate(session) or _text(current)
        return await _asyncio.to_thread(self._open_once, _session_key(session), mandate)

    def _open_once(self, key: str, mandate: str) -> Trace:
        """The session's trace, opened once even when ADK runs tool calls in parallel."""
        with self._opening:
            handle = self._sessions.get(key)
            if handle is None:
                handle = self.governor.open_trace(mandate)
                self._sessions[key] = handle
            return handle


def _session_key(session: Session) -> str:
    return f"{session.app_name}/{session.user_id}/{session.id}"


def _mandate(session: Session) -> str:
    """The text of the session's first user message: the user's task."""
    for event in session.events:
        if event.author == "user" and (text := _text(event.content)):
            return text
    return ""


def _text(content: types.Content | None) -> str:
    if content is None or not content.parts:
        return ""
    return "\n".join(part.text for part in content.parts if part.text)


def _response(value: Any, tool: BaseTool) -> dict[str, Any]:
    """The call's response as ADK shapes a tool's return value (never None, which would
    let ADK run the tool again; an empty dict keeps a long-running tool's answer pending)."""
    if isinstance(value, dict):
        return value
    if value is None and tool.is_long_running:
        return {}
    return {"result": value}


def _refused(refusal: _Refusal) -> dict[str, Any]:
    return {
        "error": refusal.message(),
        "clearance": refusal.kind,
        "reasons": [{"rule": rule, "message": text} for rule, text in refusal.reasons],
        "approval_id": refusal.approval_id,
    }


def _rejected_in_adk(tool: str, approval_id: str) -> dict[str, Any]:
    return {
        "error": f"the call to {tool} was rejected at confirmation; it did not run",
        "clearance": "rejected",
        "reasons": [],
        "approval_id": approval_id,
    }


def _outcome(value: Any) -> Any:
    """What the ledger records of a tool's return value (the governor notes a non-JSON one)."""
    return value
