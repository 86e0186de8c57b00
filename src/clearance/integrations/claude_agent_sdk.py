"""Clearance for the Claude Agent SDK: ``PreToolUse`` / ``PostToolUse`` hooks and ``can_use_tool``.

``guard = ClearanceGuard(gate)`` and ``query(prompt=task, options=guard.options(...))`` (or
``ClaudeSDKClient(guard.options(...))``) put clearance on every tool call Claude Code makes
for the SDK, built-in tools (Bash, Write, Edit, Read, WebFetch...) and MCP tools alike:

1. ``UserPromptSubmit`` opens the session's trace with the user's prompt as mandate (or
   the ``mandate`` the application gave), once per SDK session: later prompts never
   change it.
2. ``PreToolUse`` decides the call (ledger first), with the intents of the Claude Code
   hook (:func:`clearance.integrations.claude_code.intent_for`: ``claude.bash``
   ``{command}``, ``claude.write`` with a resolved ``path``, ``mcp.<server>.<tool>``...).
   ``allow`` answers ``permissionDecision: "allow"`` and keeps the governed call open;
   ``deny`` answers ``deny`` with the rule ids and messages, which Claude reads;
   ``approval_required`` answers ``ask`` (default: the SDK then calls ``can_use_tool``),
   ``defer`` (the run stops with ``ResultMessage.deferred_tool_use``; the same call,
   offered again after the approval, is allowed under the approval's grant) or ``deny``,
   naming the approval id.
3. ``can_use_tool`` answers the ``ask``: it waits up to ``wait`` for the clearance
   approval; approved, the call goes ahead under the approval's one grant; pending,
   denied or expired, it is denied naming the approval id.
4. ``PostToolUse`` records the tool's response as the call's outcome
   (``PostToolUseFailure``: ``error``). A tool the bundle marks ``untrusted_output``
   taints the trace at its decision, so a later call meets the trace rules.

Invariants:

* Fail closed: a ``PreToolUse`` or ``can_use_tool`` answer is ``allow`` only for a call
  the gate (or gateway) allowed and whose governed call is open; any error (a malformed
  event, a gate or gateway failure, a bug) is a ``deny`` naming why. The ``PreToolUse``
  matcher is registered with ``on_failure="block"``, so even a callback that fails to
  answer blocks the call.
* The governed call of an allowed tool is entered at ``PreToolUse`` (decision durable,
  grant verified) and left at ``PostToolUse`` with the outcome, in one
  :class:`contextvars.Context` of its own: the tool itself runs in Claude Code, between
  the two hooks. Calls never reported (the run ended first) are recorded as ``error``
  (:class:`OutcomeNotReported`) by :meth:`ClearanceGuard.close`.
* The principal, trace and mandate never come from the model: the principal is the
  gate's (or the API key's), the trace is opened by this guard (or the application's
  ``trace_opener``) for the SDK session.
"""

from __future__ import annotations

import asyncio as _asyncio
import contextvars as _contextvars
import dataclasses as _dataclasses
import logging as _logging
import os as _os
from typing import TYPE_CHECKING, Any, Literal

from claude_agent_sdk import ClaudeAgentOptions as _ClaudeAgentOptions
from claude_agent_sdk import HookMatcher as _HookMatcher
from claude_agent_sdk import PermissionResultAllow as _PermissionResultAllow
from claude_agent_sdk import PermissionResultDeny as _PermissionResultDeny

from clearance._internal.gate.cleared import Authorization as _Authorization
from clearance._internal.gate.core import Gate as _Gate
from clearance.errors import Error as _Error
from clearance.integrations._claude_code.answers import MAX_REASON as _MAX_REASON
from clearance.integrations._claude_code.events import HookEvent as _HookEvent
from clearance.integrations._claude_code.events import intent_for as _claude_intent
from clearance.integrations._tool_calls import Ran as _Ran
from clearance.integrations._tool_calls import Refusal as _Refusal
from clearance.integrations._tool_calls import ToolCall as _ToolCall
from clearance.integrations._tool_calls import ToolGovernor as _ToolGovernor
from clearance.integrations._tool_calls import _record
from clearance.integrations._tool_calls import refusal_for as _refusal_for

if TYPE_CHECKING:
    from collections.abc import Mapping
    from contextlib import AbstractContextManager
    from datetime import timedelta

    from claude_agent_sdk import (
        HookContext,
        HookInput,
        HookJSONOutput,
        ToolPermissionContext,
    )
    from claude_agent_sdk.types import HookEvent, SyncHookJSONOutput

    from clearance._internal.gate.cleared import Cleared
    from clearance._internal.gate.traces import Trace
    from clearance._internal.remote.client import Client
    from clearance.integrations._tool_calls import ActionMap, TraceOpener

__all__ = ["ClearanceGuard", "OutcomeNotReported", "ToolFailed"]

_log = _logging.getLogger("clearance.integrations")

_OnApproval = Literal["ask", "defer", "deny"]
_Decision = Literal["allow", "deny", "ask", "defer"]


class ToolFailed(Exception):
    """The error type recorded for a call whose ``PostToolUseFailure`` arrived."""


class OutcomeNotReported(Exception):
    """The error type recorded for an allowed call whose outcome never arrived."""


@_dataclasses.dataclass
class _Held:
    """A governed call entered at ``PreToolUse``, left when its outcome arrives."""

    manager: AbstractContextManager[Cleared]
    context: _contextvars.Context
    cleared: Cleared

    def finish(self, response: Any, failure: type[BaseException] | None) -> None:
        if failure is None:
            _record(self.cleared, response)
        self.context.run(self.manager.__exit__, failure, None, None)


@_dataclasses.dataclass(frozen=True)
class _Approved:
    """A call allowed by a collected approval (in process): its grant is verified, and
    the outcome recorded, when the outcome arrives."""

    authorization: _Authorization
    args: dict[str, Any]


class ClearanceGuard:
    """Clearance hooks and ``can_use_tool`` for the Claude Agent SDK (module docstring).

    ``clearance`` is a :class:`clearance.Gate` or a :class:`clearance.Client`. ``mandate``
    is each session's mandate (default: the session's first prompt). ``actions``,
    ``resource`` and ``purpose`` override the Claude Code intent mapping. ``wait`` is how
    long ``can_use_tool`` (or a deferred call offered again) waits for a clearance
    approval. ``on_approval`` is the ``PreToolUse`` answer to ``approval_required``.
    ``cwd`` resolves relative paths of calls ``can_use_tool`` decides without a hook.
    """

    def __init__(
        self,
        clearance: _Gate | Client,
        *,
        mandate: str | None = None,
        actions: ActionMap | None = None,
        resource: str | None = None,
        purpose: str | None = None,
        bounds: Mapping[str, Any] | None = None,
        wait: float | timedelta | None = None,
        trace_opener: TraceOpener | None = None,
        on_approval: _OnApproval = "ask",
        cwd: str | None = None,
    ) -> None:
        if on_approval not in ("ask", "defer", "deny"):
            raise ValueError(f"on_approval must be ask, defer or deny, not {on_approval!r}")
        self.governor = _ToolGovernor(
            clearance,
            actions,
            resource=resource,
            purpose=purpose,
            bounds=bounds,
            wait=wait,
            trace_opener=trace_opener,
        )
        self.mandate = mandate
        self.on_approval: _OnApproval = on_approval
        self.cwd = cwd or _os.getcwd()
        self._sessions: dict[str, Trace] = {}
        self._open: dict[str, _Held | _Approved] = {}
        self._pending: dict[str, tuple[_Refusal, dict[str, Any]]] = {}

    # -- wiring --------------------------------------------------------------------------

    def hooks(self) -> dict[HookEvent, list[_HookMatcher]]:
        """The hook matchers for ``ClaudeAgentOptions.hooks`` (every tool matches)."""
        return {
            "UserPromptSubmit": [_HookMatcher(hooks=[self.user_prompt_submit])],
            "PreToolUse": [_HookMatcher(hooks=[self.pre_tool_use], on_failure="block")],
            "PostToolUse": [_HookMatcher(hooks=[self.post_tool_use])],
            "PostToolUseFailure": [_HookMatcher(hooks=[self.post_tool_use])],
        }

    def options(self, base: _ClaudeAgentOptions | None = None) -> _ClaudeAgentOptions:
        """``base`` (or default options) with this guard's hooks first and ``can_use_tool``."""
        base = base or _ClaudeAgentOptions()
        merged: dict[HookEvent, list[_HookMatcher]] = {}
        for event, matchers in self.hooks().items():
            merged[event] = [*matchers, *(base.hooks or {}).get(event, [])]
        for event, matchers in (base.hooks or {}).items():
            merged.setdefault(event, list(matchers))
        return _dataclasses.replace(base, hooks=merged, can_use_tool=self.can_use_tool)

    def close(self) -> None:
        """Record every allowed call whose outcome never arrived as an error."""
        for tool_use_id in list(self._open):
            held = self._open.pop(tool_use_id)
            if isinstance(held, _Held):
                held.finish(None, OutcomeNotReported)
            else:
                self._execute(held, tool_use_id, None, OutcomeNotReported)

    # -- hooks ---------------------------------------------------------------------------

    async def user_prompt_submit(
        self, input_data: HookInput, tool_use_id: str | None, context: HookContext
    ) -> HookJSONOutput:
        """Open the session's trace with the prompt as mandate (first prompt only)."""
        raw: Mapping[str, Any] = input_data
        session, prompt = raw.get("session_id"), raw.get("prompt")
        if isinstance(session, str) and session not in self._sessions:
            try:
                await self._trace(session, prompt if isinstance(prompt, str) else None)
            except _Error as exc:  # the next tool call retries (and denies if it fails)
                _log.warning("clearance could not open a trace: %s", exc.diagnostics())
        return {}

    async def pre_tool_use(
        self, input_data: HookInput, tool_use_id: str | None, context: HookContext
    ) -> SyncHookJSONOutput:
        """Decide the tool call; ``allow``, ``deny`` or ``ask`` / ``defer``, with the reasons."""
        decision: _Decision
        try:
            event = _HookEvent.parse(input_data)
            decision, reason = await self._pre_tool_use(event)
        except _Error as exc:
            decision, reason = "deny", _refusal_for(_name(input_data), exc).message()
        except Exception as exc:  # fail closed on anything: a bug must not let a call through
            _log.exception("clearance PreToolUse failed")
            decision = "deny"
            reason = f"clearance could not decide, so this call is denied: {exc!r}"
        return {
            "hookSpecificOutput": {
                "hookEventName": "PreToolUse",
                "permissionDecision": decision,
                "permissionDecisionReason": _cut(reason),
            }
        }

    async def post_tool_use(
        self, input_data: HookInput, tool_use_id: str | None, context: HookContext
    ) -> HookJSONOutput:
        """Record the outcome of an allowed call (``PostToolUse`` or ``PostToolUseFailure``)."""
        raw: Mapping[str, Any] = input_data
        call_id = raw.get("tool_use_id") or tool_use_id
        held = self._open.pop(call_id, None) if isinstance(call_id, str) else None
        if held is None:
            _log.warning("no clearance decision is open for tool call %s", call_id)
            return {}
        failed = ToolFailed if raw.get("hook_event_name") == "PostToolUseFailure" else None
        response = raw.get("tool_response")
        try:
            if isinstance(held, _Held):
                await _asyncio.to_thread(held.finish, response, failed)
            else:
                await _asyncio.to_thread(self._execute, held, str(call_id), response, failed)
        except _Error as exc:
            _log.warning("clearance could not record an outcome: %s", exc.diagnostics())
        return {}

    async def can_use_tool(
        self, tool_name: str, tool_input: dict[str, Any], context: ToolPermissionContext
    ) -> _PermissionResultAllow | _PermissionResultDeny:
        """Answer Claude Code's permission request for one call (see the module docstring)."""
        call_id = context.tool_use_id or ""
        decision: _Decision
        try:
            if call_id in self._open:
                return _PermissionResultAllow()
            if call_id not in self._pending:  # no PreToolUse hook decided it: decide here
                event = _HookEvent(
                    "PreToolUse", "", self.cwd, tool_name, tool_input, call_id or "unknown"
                )
                decision, reason = await self._pre_tool_use(event)
                if decision == "allow":
                    return _PermissionResultAllow()
                if call_id not in self._pending:
                    return _PermissionResultDeny(message=reason)
            decision, reason = await self._collect(call_id)
        except _Error as exc:
            decision, reason = "deny", _refusal_for(tool_name, exc).message()
        except Exception as exc:  # fail closed
            _log.exception("clearance can_use_tool failed")
            decision = "deny"
            reason = f"clearance could not decide, so this call is denied: {exc!r}"
        if decision == "allow":
            return _PermissionResultAllow()
        return _PermissionResultDeny(message=_cut(reason))

    # -- decisions -----------------------------------------------------------------------

    async def _trace(self, session: str, prompt: str | None) -> Trace:
        trace = self._sessions.get(session)
        if trace is None:
            mandate = self.mandate or prompt or f"Claude Agent SDK session {session}".strip()
            trace = await _asyncio.to_thread(self.governor.open_trace, mandate)
            trace = self._sessions.setdefault(session, trace)
        return trace

    def _intent(self, event: _HookEvent) -> dict[str, Any]:
        intent = _claude_intent(event)
        governor = self.governor
        if governor.actions is not None:
            intent["action"] = governor.action_for(event.tool_name)
        if governor.resource is not None:
            intent["resource"] = governor.resource
        if governor.purpose is not None:
            intent["purpose"] = governor.purpose
        return intent

    async def _pre_tool_use(self, event: _HookEvent) -> tuple[_Decision, str]:
        call_id = event.tool_use_id
        if call_id in self._pending:  # a deferred call offered again: its approval decides
            return await self._collect(call_id)
        stale = self._open.pop(call_id, None)  # offered twice: the first never ran
        if isinstance(stale, _Held):
            await _asyncio.to_thread(stale.finish, None, OutcomeNotReported)
        trace = await self._trace(event.session_id, None)
        intent = self._intent(event)
        manager = self.governor.clearance.clearance(intent, trace=trace)
        context = _contextvars.copy_context()
        try:
            cleared = await _asyncio.to_thread(context.run, manager.__enter__)
        except _Error as exc:
            refusal = _refusal_for(event.tool_name, exc)
            if refusal.approval_id is None:
                return "deny", refusal.message()
            self._pending[call_id] = (refusal, intent)
            return self.on_approval, refusal.message()
        self._open[call_id] = _Held(manager, context, cleared)
        return "allow", f"clearance allowed this call (request {cleared.request_id})"

    async def _collect(self, call_id: str) -> tuple[_Decision, str]:
        """Collect the approval of a pending call (waiting up to ``wait``); allow or deny."""
        refusal, intent = self._pending[call_id]
        approval_id = str(refusal.approval_id)
        clearance, wait = self.governor.clearance, self.governor.wait
        try:
            if isinstance(clearance, _Gate):
                authorization = await _asyncio.to_thread(clearance.resume, approval_id, wait=wait)
                self._open[call_id] = _Approved(authorization, dict(intent["args"]))
            else:
                manager = clearance.resume(approval_id, wait=wait)
                context = _contextvars.copy_context()
                cleared = await _asyncio.to_thread(context.run, manager.__enter__)
                approved = cleared.authorization.intent
                self._open[call_id] = held = _Held(manager, context, cleared)
                if approved.action != intent["action"] or dict(approved.args) != intent["args"]:
                    self._open.pop(call_id)
                    await _asyncio.to_thread(held.finish, None, OutcomeNotReported)
                    return "deny", f"the approval {approval_id} was given for another call"
        except _Error as exc:
            why = _refusal_for(refusal.tool, exc)
            self._pending.pop(call_id)
            if why.kind == "approval_required":  # still pending: keep it, say which approval
                self._pending[call_id] = (refusal, intent)
                return "deny", (
                    f"clearance: the call to {refusal.tool} is waiting for approval "
                    f"{approval_id}; it has not run. Retry once it is approved."
                )
            return "deny", f"clearance: approval {approval_id}: {why.message()}"
        self._pending.pop(call_id)
        return "allow", f"clearance approval {approval_id} allows this call"

    def _execute(
        self,
        approved: _Approved,
        call_id: str,
        response: Any,
        failure: type[BaseException] | None,
    ) -> None:
        """Record the outcome of a call run under an approval's grant (in process)."""
        authorization = approved.authorization
        call = _ToolCall(authorization.intent.action, approved.args, call_id)

        def body(_: Mapping[str, Any]) -> Any:
            if failure is not None:
                raise failure()
            return response

        try:
            ran = self.governor.execute(authorization, call, body)
        except (ToolFailed, OutcomeNotReported):
            return
        if not isinstance(ran, _Ran):
            _log.warning("clearance refused the approved grant of %s: %s", call_id, ran.message())


def _name(raw: object) -> str:
    name = raw.get("tool_name") if isinstance(raw, dict) else None
    return name if isinstance(name, str) else "a tool"


def _cut(text: str) -> str:
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 1] + "…"
