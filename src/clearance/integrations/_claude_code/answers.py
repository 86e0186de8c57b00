"""Answers in the Claude Code hook protocol (exit status, stdout, stderr).

Per the hooks reference (https://code.claude.com/docs/en/hooks, "Hook output" and
"PreToolUse decision control"): with exit status 0, Claude Code reads a JSON object on
standard output; for ``PreToolUse`` its ``hookSpecificOutput`` holds ``hookEventName``,
``permissionDecision`` (``allow`` skips the permission prompt, ``deny`` blocks the call
and shows ``permissionDecisionReason`` to Claude, ``ask`` asks the user, showing the
reason) and ``permissionDecisionReason``. Exit status 2 is a blocking error: the call is
blocked and standard error is shown to Claude. Any other status is a NON-blocking error
(the call would go ahead), so this hook never ends a ``PreToolUse`` with one: a refusal is
a JSON ``deny`` with status 0, and when even writing that fails, status 2.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

BLOCKING_ERROR: Final[int] = 2
"""The exit status that blocks a tool call whatever standard output says."""

MAX_REASON: Final[int] = 2000
"""Longest reason put into an answer (the rest is cut with an ellipsis)."""


@dataclass(frozen=True, slots=True)
class HookAnswer:
    """What the hook process writes and how it exits."""

    exit_code: int
    stdout: str = ""
    stderr: str = ""

    @property
    def decision(self) -> str | None:
        """The ``permissionDecision`` of a PreToolUse answer (None for other answers)."""
        if not self.stdout:
            return None
        specific = json.loads(self.stdout).get("hookSpecificOutput") or {}
        decision = specific.get("permissionDecision")
        return decision if isinstance(decision, str) else None


def _cut(text: str) -> str:
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"


def permission(decision: str, reason: str) -> HookAnswer:
    """A PreToolUse answer: ``allow``, ``deny`` or ``ask`` with its reason."""
    body = {
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": decision,
            "permissionDecisionReason": _cut(reason),
        }
    }
    return HookAnswer(0, json.dumps(body, ensure_ascii=False) + "\n")


def deny(reason: str) -> HookAnswer:
    """Block the tool call; Claude sees ``reason``."""
    return permission("deny", reason)


def recorded() -> HookAnswer:
    """A PostToolUse answer: the outcome is in the ledger; nothing to show."""
    return HookAnswer(0, json.dumps({"suppressOutput": True}) + "\n")


def notice(message: str) -> HookAnswer:
    """A PostToolUse problem worth showing the user: a non-blocking error (status 1)."""
    return HookAnswer(1, "", _cut(message) + "\n")
