"""A scripted Claude Code CLI behind the Claude Agent SDK's own ``Transport`` interface.

The SDK (``query()`` / ``ClaudeSDKClient``) talks to Claude Code over stream-json lines:
it writes ``control_request`` ``initialize`` (with the hook callback ids of every
matcher), the user's message, and ``control_response`` answers; Claude Code writes
messages (``assistant``, ``user``, ``result``) and its own ``control_request``
``hook_callback`` / ``can_use_tool`` requests, which the SDK's ``Query`` dispatches to
the registered Python callbacks (``claude_agent_sdk/_internal/query.py``,
``_handle_control_request``). This class plays Claude Code's side of exactly those
messages, with a scripted model (a fixed list of tool calls) and scripted built-in tools,
so the SDK's real client loop runs offline. What the SDK answered is kept in
:attr:`answers`; what the "tools" really ran in :attr:`ran`.

Claude Code's side, as documented for hooks and permissions: ``UserPromptSubmit`` hooks
run before the prompt is processed; for each tool call ``PreToolUse`` hooks run first
(``deny`` blocks and shows the reason to Claude; ``defer`` stops the run with
``deferred_tool_use`` in the result; ``ask`` or no decision goes to the permission
prompt, here ``can_use_tool`` with the hook's reason as ``decision_reason``); a tool that
ran fires ``PostToolUse`` with its ``tool_response``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from claude_agent_sdk import Transport

SESSION = "3f1c6a52-0f4e-4d3b-9d55-5d1bd0c7a001"


@dataclass(frozen=True)
class ToolUse:
    """One tool call the scripted model makes."""

    id: str
    name: str
    input: dict[str, Any]


@dataclass
class ScriptedClaudeCode(Transport):
    """Claude Code's side of the control protocol (see the module docstring).

    ``calls`` are made one per turn, in order; ``tools`` produce each built-in tool's
    response; ``before_permission`` sees each permission request before it is sent (a
    human reading the prompt, for instance).
    """

    calls: list[ToolUse]
    tools: dict[str, Callable[[dict[str, Any]], Any]]
    cwd: str
    before_permission: Callable[[dict[str, Any]], None] | None = None
    session_id: str = SESSION
    answers: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    """``(request kind, tool use id or "", the SDK's response)`` in order."""
    ran: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    shown_to_model: list[dict[str, Any]] = field(default_factory=list)
    """The ``tool_result`` blocks the model would read."""

    def __post_init__(self) -> None:
        self._out: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._hooks: dict[str, list[str]] = {}
        self._counter = 0
        self._tasks: set[asyncio.Task[None]] = set()

    # -- Transport -----------------------------------------------------------------------

    async def connect(self) -> None:
        return None

    def is_ready(self) -> bool:
        return True

    async def write(self, data: str) -> None:
        for line in data.splitlines():
            if line.strip():
                self._received(json.loads(line))

    async def read_messages(self) -> AsyncIterator[dict[str, Any]]:
        while (message := await self._out.get()) is not None:
            yield message

    async def end_input(self) -> None:
        await self._out.put(None)  # Claude Code exits when its standard input closes

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self._out.put(None)

    # -- Claude Code's side --------------------------------------------------------------

    def _received(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "control_request" and message["request"]["subtype"] == "initialize":
            hooks = message["request"].get("hooks") or {}
            self._hooks = {
                event: [i for matcher in matchers for i in matcher["hookCallbackIds"]]
                for event, matchers in hooks.items()
            }
            self._emit(
                {
                    "type": "control_response",
                    "response": {
                        "subtype": "success",
                        "request_id": message["request_id"],
                        "response": {"commands": [], "hook_on_failure_supported": True},
                    },
                }
            )
        elif kind == "control_response":
            response = message["response"]
            waiter = self._waiting.pop(response["request_id"])
            if response["subtype"] == "error":
                waiter.set_exception(RuntimeError(response["error"]))
            else:
                waiter.set_result(response.get("response") or {})
        elif kind == "user":
            task = asyncio.get_running_loop().create_task(self._run(message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _emit(self, message: dict[str, Any]) -> None:
        self._out.put_nowait(message)

    async def _request(self, kind: str, call_id: str, request: dict[str, Any]) -> dict[str, Any]:
        self._counter += 1
        request_id = f"cli_req_{self._counter}"
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = waiter
        self._emit({"type": "control_request", "request_id": request_id, "request": request})
        answer = await waiter
        self.answers.append((kind, call_id, answer))
        return answer

    async def _hook(self, event: str, call_id: str | None, data: dict[str, Any]) -> list[Any]:
        base = {
            "session_id": self.session_id,
            "transcript_path": f"/tmp/{self.session_id}.jsonl",
            "cwd": self.cwd,
            "permission_mode": "default",
            "hook_event_name": event,
        }
        return [
            await self._request(
                event,
                call_id or "",
                {
                    "subtype": "hook_callback",
                    "callback_id": callback_id,
                    "input": {**base, **data},
                    "tool_use_id": call_id,
                },
            )
            for callback_id in self._hooks.get(event, [])
        ]

    async def _run(self, message: dict[str, Any]) -> None:
        prompt = message["message"]["content"]
        await self._hook("UserPromptSubmit", None, {"prompt": prompt})
        turns = 0
        deferred: ToolUse | None = None
        for call in self.calls:
            turns += 1
            self._assistant(
                [{"type": "tool_use", "id": call.id, "name": call.name, "input": call.input}]
            )
            outcome = await self._tool_call(call)
            if outcome is None:
                deferred = call
                break
            self.shown_to_model.append(outcome)
            self._emit(
                {
                    "type": "user",
                    "message": {"role": "user", "content": [outcome]},
                    "parent_tool_use_id": None,
                    "session_id": self.session_id,
                }
            )
        if deferred is None:
            self._assistant([{"type": "text", "text": "done"}])
        result: dict[str, Any] = {
            "type": "result",
            "subtype": "success",
            "duration_ms": 1,
            "duration_api_ms": 0,
            "is_error": False,
            "num_turns": turns,
            "session_id": self.session_id,
            "result": "done" if deferred is None else "",
        }
        if deferred is not None:
            result["deferred_tool_use"] = {
                "id": deferred.id,
                "name": deferred.name,
                "input": deferred.input,
            }
        self._emit(result)

    def _assistant(self, content: list[dict[str, Any]]) -> None:
        self._emit(
            {
                "type": "assistant",
                "message": {"role": "assistant", "model": "scripted", "content": content},
                "parent_tool_use_id": None,
                "session_id": self.session_id,
            }
        )

    async def _tool_call(self, call: ToolUse) -> dict[str, Any] | None:
        """The tool_result block of ``call`` (None: deferred, the run stops)."""
        decided = await self._hook(
            "PreToolUse",
            call.id,
            {"tool_name": call.name, "tool_input": call.input, "tool_use_id": call.id},
        )
        specific = [answer.get("hookSpecificOutput") or {} for answer in decided]
        decisions = {
            s.get("permissionDecision"): s.get("permissionDecisionReason", "") for s in specific
        }
        if "deny" in decisions:
            return _error(call, decisions["deny"])
        if "defer" in decisions:
            return None
        if "allow" not in decisions:
            request = {
                "subtype": "can_use_tool",
                "tool_name": call.name,
                "input": call.input,
                "permission_suggestions": None,
                "blocked_path": None,
                "decision_reason": decisions.get("ask", ""),
                "tool_use_id": call.id,
            }
            if self.before_permission is not None:
                self.before_permission(request)
            permitted = await self._request("can_use_tool", call.id, request)
            if permitted.get("behavior") != "allow":
                return _error(call, str(permitted.get("message", "")))
        self.ran.append((call.name, call.input))
        response = self.tools[call.name](call.input)
        await self._hook(
            "PostToolUse",
            call.id,
            {
                "tool_name": call.name,
                "tool_input": call.input,
                "tool_response": response,
                "tool_use_id": call.id,
            },
        )
        return {"type": "tool_result", "tool_use_id": call.id, "content": json.dumps(response)}


def _error(call: ToolUse, reason: str) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": call.id, "content": reason, "is_error": True}
