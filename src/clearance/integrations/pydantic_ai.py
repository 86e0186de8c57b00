"""Clearance for Pydantic AI agents: a capability at ``wrap_tool_execute``.

``Agent(model, tools=[...], capabilities=[ClearanceCapability(gate)],
output_type=[str, DeferredToolRequests])`` turns every tool call, once its arguments are
validated, into an intent (action = the tool's name or its configured action, args = the
model's arguments), decided by the gate in process or by ``clearance serve`` through
:class:`clearance.Client`:

* **allow** — the tool function runs inside the governed call; its return value is
  recorded in the execution entry.
* **deny** — execution is skipped: the tool's result, as the model reads it, is the
  refusal naming the rule ids and messages.
* **approval_required** — Pydantic AI's deferred-tool approval flow: the call is
  deferred with ``ApprovalRequired`` (its metadata holds ``clearance_approval_id``) and
  the run ends with ``DeferredToolRequests``. :meth:`ClearanceCapability.resolve` asks
  clearance what the humans decided and builds the ``DeferredToolResults`` to continue
  with (``agent.run(message_history=..., deferred_tool_results=...)``): approved → the
  tool runs once, under the approval's grant; denied or expired → ``ToolDenied`` with
  the reason; pending → deferred again.

Invariants:

* Pydantic AI's approval alone is never enough: a call deferred for a clearance approval
  runs only with the grant collected from that approval. A call approved by the
  application for its own reasons (no clearance approval id) is decided normally.
* One trace per conversation (``ctx.conversation_id``), opened before the first run with
  the user's prompt as mandate; tools the bundle marks ``untrusted_output`` taint it at
  their decision. The conversation's trace is remembered in this capability object: a
  conversation continued in another process opens a new trace.
* The tool never runs outside a governed call (see :mod:`._tool_calls`).
"""

from __future__ import annotations

import asyncio as _asyncio
from typing import TYPE_CHECKING, Any

from pydantic_ai import DeferredToolResults as _DeferredToolResults
from pydantic_ai import ToolApproved as _ToolApproved
from pydantic_ai import ToolDenied as _ToolDenied
from pydantic_ai.capabilities import AbstractCapability as _AbstractCapability
from pydantic_ai.exceptions import ApprovalRequired as _DeferForApproval

from clearance.integrations._tool_calls import Ran as _Ran
from clearance.integrations._tool_calls import Refusal as _Refusal
from clearance.integrations._tool_calls import ToolCall as _ToolCall
from clearance.integrations._tool_calls import ToolGovernor as _ToolGovernor

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import timedelta

    from pydantic_ai import DeferredToolRequests, RunContext
    from pydantic_ai.capabilities.abstract import ValidatedToolArgs, WrapToolExecuteHandler
    from pydantic_ai.messages import ToolCallPart
    from pydantic_ai.tools import ToolDefinition

    from clearance._internal.gate.core import Gate
    from clearance._internal.gate.traces import Trace
    from clearance._internal.remote.client import Client
    from clearance.integrations._tool_calls import ActionMap, TraceOpener

__all__ = ["ClearanceCapability"]

_APPROVAL_KEY = "clearance_approval_id"


class ClearanceCapability(_AbstractCapability[Any]):
    """Govern every tool call of a Pydantic AI agent with clearance.

    ``clearance`` is a :class:`clearance.Gate` (in process) or a
    :class:`clearance.Client`. ``actions`` maps tool names to intent actions;
    ``resource`` and ``purpose`` go into every intent; ``bounds`` are the bounds of the
    traces it opens; ``wait`` (seconds) is how long :meth:`resolve`, and a call that
    needs an approval, wait for the human. ``trace_opener`` (trusted code: mandate ->
    trace id) opens each conversation's trace instead, for a :class:`clearance.Client`
    whose ``agent`` key may not open traces; it sets the bounds. See the module docstring.
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
    ) -> None:
        self.governor = _ToolGovernor(
            clearance,
            actions,
            resource=resource,
            purpose=purpose,
            bounds=bounds,
            wait=wait,
            trace_opener=trace_opener,
        )
        self._conversations: dict[str, Trace] = {}

    async def before_run(self, ctx: RunContext[Any]) -> None:
        """Open the conversation's trace with the user's prompt as mandate (once)."""
        await self._trace_of(ctx)

    async def wrap_tool_execute(
        self,
        ctx: RunContext[Any],
        *,
        call: ToolCallPart,
        tool_def: ToolDefinition,
        args: ValidatedToolArgs,
        handler: WrapToolExecuteHandler,
    ) -> Any:
        """Decide the call; run it governed, skip it with the reasons, or defer it."""
        tool_call = _ToolCall(call.tool_name, call.args_as_dict(), call.tool_call_id)

        async def body(_: Mapping[str, Any]) -> Any:
            return await handler(args)

        approval_id = _approval_id(ctx.tool_call_metadata) if ctx.tool_call_approved else None
        if approval_id is not None:
            ruled = await self.governor.arun_approved(approval_id, tool_call, body, _outcome)
        else:
            ruled = await self.governor.arun(tool_call, await self._trace_of(ctx), body, _outcome)
        if isinstance(ruled, _Ran):
            return ruled.value
        if ruled.kind == "approval_required" and ruled.approval_id is not None:
            raise _DeferForApproval(metadata=_metadata(ruled))
        return ruled.message()

    async def resolve(self, requests: DeferredToolRequests) -> _DeferredToolResults:
        """The ``DeferredToolResults`` that apply clearance's approval outcomes.

        For every call in ``requests.approvals`` this capability deferred: approved →
        ``ToolApproved`` (with the approval id as the call's metadata, so the tool runs
        under its grant); denied, expired or collected → ``ToolDenied`` naming the
        outcome; pending after ``wait`` → approved in Pydantic AI's sense only, so the
        call asks clearance again and is deferred again. Calls deferred by someone else
        are left out.
        """
        results = _DeferredToolResults()
        for part in requests.approvals:
            approval_id = _approval_id(requests.metadata.get(part.tool_call_id))
            if approval_id is None:
                continue
            status = await self.governor.aapproval_status(approval_id)
            if status in ("approved", "pending"):
                results.approvals[part.tool_call_id] = _ToolApproved()
                results.metadata[part.tool_call_id] = {_APPROVAL_KEY: approval_id}
            else:
                results.approvals[part.tool_call_id] = _ToolDenied(
                    f"clearance: the approval {approval_id} for the call to {part.tool_name} "
                    f"is {status}; it did not run"
                )
        return results

    async def _trace_of(self, ctx: RunContext[Any]) -> Trace:
        key = ctx.conversation_id or ctx.run_id or ""
        handle = self._conversations.get(key)
        if handle is None:
            handle = await _asyncio.to_thread(self.governor.open_trace, _mandate(ctx.prompt))
            self._conversations[key] = handle
        return handle


def _mandate(prompt: str | Sequence[Any] | None) -> str:
    """The user's prompt as text (the text parts of a multi-part prompt)."""
    if prompt is None:
        return ""
    if isinstance(prompt, str):
        return prompt
    return "\n".join(part for part in prompt if isinstance(part, str))


def _approval_id(metadata: Any) -> str | None:
    if isinstance(metadata, dict):
        value = metadata.get(_APPROVAL_KEY)
        return value if isinstance(value, str) else None
    return None


def _metadata(refusal: _Refusal) -> dict[str, Any]:
    return {
        _APPROVAL_KEY: refusal.approval_id,
        "reasons": [{"rule": r, "message": m} for r, m in refusal.reasons],
    }


def _outcome(value: Any) -> Any:
    """What the ledger records of a tool's return value (the governor notes a non-JSON one)."""
    return value
