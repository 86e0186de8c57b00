"""Clearance for the OpenAI Agents SDK: ``needs_approval``, a tool input guardrail, a
governed ``on_invoke_tool``.

``guard = ClearanceGuard(gate)`` and ``Agent(tools=guard.govern([...function tools]))``
give every function tool three hooks that the SDK's own loop calls, in this order:

1. ``needs_approval`` — decides the call with the gate (ledger first) and keeps the
   ruling by call id. ``approval_required`` answers True: the run stops with an
   interruption (``result.interruptions``), exactly as for a tool that always needs
   approval.
2. a **tool input guardrail** — a denial becomes ``reject_content`` with the rule ids and
   messages, so the model reads why and continues; an SDK approval that clearance has
   not (yet) approved is rejected the same way.
3. ``on_invoke_tool`` — runs the original tool only under the decision's single-use grant
   (verified by the gate for this call's arguments) or the approval's one grant, and
   records its outcome.

After an interruption, :meth:`ClearanceGuard.resolve` asks clearance what the humans
decided and approves or rejects each interruption in the SDK's ``RunState``; run it again
with ``Runner.run(agent, state)``. Pending approvals stay interrupted.

Invariants:

* The SDK's approval is never enough: a tool that needed a clearance approval runs only
  with the grant collected from that approval (:meth:`ToolGovernor.run_approved`).
* A call that reaches ``on_invoke_tool`` without a ruling of this guard (a hook bypassed,
  or another process) does not run: its result is the refusal text (fail closed).
* Open the trace with the user's task around the run (``with gate.trace(task):``);
  asyncio tasks the SDK starts inherit it. Tools the bundle marks ``untrusted_output``
  taint it at their decision. In process only (a :class:`clearance.Gate`): the hook that
  decides is not the one that runs the tool, so the guard executes a signed grant.
"""

from __future__ import annotations

import dataclasses as _dataclasses
import json as _json
from typing import TYPE_CHECKING, Any

from agents import FunctionTool as _FunctionTool
from agents import ToolGuardrailFunctionOutput as _GuardrailOutput
from agents import ToolInputGuardrail as _ToolInputGuardrail

from clearance._internal.gate.cleared import Authorization as _Authorization
from clearance.integrations._tool_calls import Ran as _Ran
from clearance.integrations._tool_calls import Refusal as _Refusal
from clearance.integrations._tool_calls import ToolCall as _ToolCall
from clearance.integrations._tool_calls import ToolGovernor as _ToolGovernor

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from datetime import timedelta

    from agents import RunContextWrapper, RunState, Tool, ToolContext, ToolInputGuardrailData

    from clearance._internal.gate.core import Gate
    from clearance.integrations._tool_calls import ActionMap

__all__ = ["ClearanceGuard"]


class ClearanceGuard:
    """Clearance hooks for OpenAI Agents SDK function tools (see the module docstring).

    ``gate`` is an in-process :class:`clearance.Gate`. ``actions`` maps tool names to
    intent actions; ``resource`` and ``purpose`` go into every intent; ``wait`` is how
    long :meth:`resolve` (and the run after it) waits for a pending approval.
    """

    def __init__(
        self,
        gate: Gate,
        *,
        actions: ActionMap | None = None,
        resource: str | None = None,
        purpose: str | None = None,
        wait: float | timedelta | None = None,
    ) -> None:
        self.governor = _ToolGovernor(gate, actions, resource=resource, purpose=purpose, wait=wait)
        self._rulings: dict[str, _Authorization | _Refusal] = {}
        self.guardrail: _ToolInputGuardrail[Any] = _ToolInputGuardrail(
            guardrail_function=self._check, name="clearance"
        )
        """The tool input guardrail (added to every tool :meth:`govern` returns)."""

    def govern(self, tools: Iterable[_FunctionTool]) -> list[Tool]:
        """Copies of ``tools`` governed by clearance (the originals are left unchanged).

        A list of ``agents.Tool``, ready for ``Agent(tools=...)``.
        """
        return [self.govern_tool(tool) for tool in tools]

    def govern_tool(self, tool: _FunctionTool) -> _FunctionTool:
        """A copy of ``tool`` whose calls are decided, guarded and executed by clearance."""
        if not isinstance(tool, _FunctionTool):
            raise TypeError(f"clearance governs function tools, not {type(tool).__name__}")
        invoke = tool.on_invoke_tool

        async def needs_approval(
            context: RunContextWrapper[Any], params: dict[str, Any], call_id: str
        ) -> bool:
            ruling = await self._decide(_ToolCall(tool.name, params, call_id))
            return isinstance(ruling, _Refusal) and ruling.kind == "approval_required"

        async def on_invoke_tool(context: ToolContext[Any], arguments: str) -> Any:
            call = _ToolCall(tool.name, _args(arguments), context.tool_call_id)
            ruling = self._rulings.pop(context.tool_call_id, None)

            async def body(_: Mapping[str, Any]) -> Any:
                return await invoke(context, arguments)

            if isinstance(ruling, _Authorization):
                ran = await self.governor.aexecute(ruling, call, body, _outcome)
            elif ruling is not None and ruling.approval_id is not None:
                ran = await self.governor.arun_approved(ruling.approval_id, call, body, _outcome)
            else:
                ran = ruling or _unruled(call)
            return ran.value if isinstance(ran, _Ran) else ran.message()

        return _dataclasses.replace(
            tool,
            on_invoke_tool=on_invoke_tool,
            needs_approval=needs_approval,
            tool_input_guardrails=[*(tool.tool_input_guardrails or ()), self.guardrail],
        )

    async def resolve(self, interrupted: Any) -> RunState[Any]:
        """The run's state with each clearance approval's outcome applied to its interruption.

        ``interrupted`` is a run result with ``interruptions``. Approved → approved in the
        state; denied, expired or collected → rejected with the reasons; pending (after
        ``wait``) → left pending, so the next run interrupts again.
        """
        state: RunState[Any] = interrupted.to_state()
        for item in interrupted.interruptions:
            ruling = self._rulings.get(str(item.call_id))
            if not isinstance(ruling, _Refusal) or ruling.approval_id is None:
                continue
            status = await self.governor.aapproval_status(ruling.approval_id)
            if status == "approved":
                state.approve(item)
            elif status != "pending":
                state.reject(item, rejection_message=_closed(ruling, status))
        return state

    # -- hooks ---------------------------------------------------------------------------

    async def _decide(self, call: _ToolCall) -> _Authorization | _Refusal:
        ruling = await self.governor.adecide(call, None)
        self._rulings[str(call.call_id)] = ruling
        return ruling

    async def _check(self, data: ToolInputGuardrailData) -> _GuardrailOutput:
        context = data.context
        ruling = self._rulings.get(context.tool_call_id)
        if ruling is None:  # needs_approval was not asked (an SDK path without it): decide now
            call = _ToolCall(context.tool_name, _args(context.tool_arguments), context.tool_call_id)
            ruling = await self._decide(call)
        if isinstance(ruling, _Authorization):
            return _GuardrailOutput.allow(output_info={"request_id": ruling.request_id})
        if ruling.approval_id is not None:
            status = await self.governor.aapproval_status(ruling.approval_id)
            if status == "approved":  # the SDK's approval alone is not enough: clearance's is
                return _GuardrailOutput.allow(output_info={"approval_id": ruling.approval_id})
            self._rulings.pop(context.tool_call_id, None)
            return _GuardrailOutput.reject_content(_closed(ruling, status), _info(ruling))
        self._rulings.pop(context.tool_call_id, None)
        return _GuardrailOutput.reject_content(ruling.message(), _info(ruling))


def _args(arguments: str) -> dict[str, Any]:
    try:
        parsed = _json.loads(arguments or "{}")
    except ValueError:
        return {"_unparsed": arguments}
    return parsed if isinstance(parsed, dict) else {"_value": parsed}


def _outcome(value: Any) -> Any:
    """What the ledger records of a tool's return value: it, or its text when not JSON."""
    try:
        _json.dumps(value)
    except (TypeError, ValueError):
        return str(value)
    return value


def _unruled(call: _ToolCall) -> _Refusal:
    return _Refusal(
        call.name, (("not-decided", "no clearance decision for this call"),), None, "error"
    )


def _closed(ruling: _Refusal, status: str) -> str:
    return (
        f"clearance: the approval {ruling.approval_id} for the call to {ruling.tool} is "
        f"{status}; it did not run"
    )


def _info(ruling: _Refusal) -> dict[str, Any]:
    return {
        "clearance": ruling.kind,
        "reasons": [{"rule": r, "message": m} for r, m in ruling.reasons],
        "approval_id": ruling.approval_id,
    }
