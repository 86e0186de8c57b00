"""Claude Code hook events (JSON on standard input) and the intents they become.

Invariants:

* An event is parsed strictly: a JSON object with string ``session_id``,
  ``hook_event_name`` and ``cwd``; the tool events (``PreToolUse``, ``PostToolUse``,
  ``PostToolUseFailure``) also need a string ``tool_name`` and ``tool_use_id`` and an
  object ``tool_input``. Anything else is an :class:`~clearance.errors.InputError`,
  which the hook answers with a denial (fail closed).
* The intent of a tool call is a pure function of the event and the session's project
  directory (:func:`intent_for`): the same call always becomes the same intent, so
  the PostToolUse event finds the decision its PreToolUse event made.
* Paths are made absolute (against the event's ``cwd``) and resolved
  (``os.path.realpath``: ``..`` and symbolic links), so a policy compares
  ``args.path`` with the project directory and a ``../`` or a link out of the project
  does not pass for a path inside it. The path as Claude Code sent it stays in
  ``file_path``.
* Large text (a file's new content, an edit's strings) is bound by digest: every text
  field ``f`` of an edit carries ``f_digest`` (``sha256:`` of its UTF-8) and ``f_bytes``;
  the text itself is included only up to :data:`MAX_INLINE_TEXT` bytes, so a policy
  that reads ``args.content`` must treat its absence as "too large to inspect".
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from clearance.errors import InputError

TOOL_EVENTS: Final = frozenset({"PreToolUse", "PostToolUse", "PostToolUseFailure"})
"""The hook events this hook answers."""

MAX_INLINE_TEXT: Final[int] = 16 * 1024
"""Largest text (UTF-8 bytes) put into an intent as is; larger text is bound by digest only."""

ACTION_PREFIX: Final = "claude."
"""Actions of Claude Code's built-in tools: ``claude.bash``, ``claude.write``, ..."""

_PATH_KEYS: Final = {
    "Read": "file_path",
    "Write": "file_path",
    "Edit": "file_path",
    "MultiEdit": "file_path",
    "NotebookEdit": "notebook_path",
    "NotebookRead": "notebook_path",
    "Glob": "path",
    "Grep": "path",
    "LS": "path",
}
_TEXT_KEYS: Final = ("content", "old_string", "new_string", "new_source")
_UNSAFE_ACTION_CHARS: Final = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class HookEvent:
    """One Claude Code hook event, as documented for command hooks."""

    hook_event_name: str
    session_id: str
    cwd: str
    tool_name: str
    tool_input: Mapping[str, Any]
    tool_use_id: str
    tool_response: Any = None
    error: str | None = None
    is_interrupt: bool = False

    @classmethod
    def parse(cls, raw: object) -> HookEvent:
        """Validate a decoded event; InputError naming the first bad field."""
        if not isinstance(raw, Mapping):
            raise InputError("a hook event must be a JSON object")
        name = _string(raw, "hook_event_name")
        if name not in TOOL_EVENTS:
            raise InputError(
                f"hook_event_name {name!r} is not one this hook answers "
                f"({', '.join(sorted(TOOL_EVENTS))})"
            )
        tool_input = raw.get("tool_input")
        if not isinstance(tool_input, Mapping):
            raise InputError("tool_input must be a JSON object")
        error = raw.get("error")
        return cls(
            hook_event_name=name,
            session_id=_string(raw, "session_id"),
            cwd=_string(raw, "cwd"),
            tool_name=_string(raw, "tool_name"),
            tool_input=tool_input,
            tool_use_id=_string(raw, "tool_use_id"),
            tool_response=raw.get("tool_response"),
            error=error if isinstance(error, str) else None,
            is_interrupt=raw.get("is_interrupt") is True,
        )


def _string(raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise InputError(f"{key} must be a non-empty string")
    return value


def snake_case(name: str) -> str:
    """``MultiEdit`` → ``multi_edit``; ``WebFetch`` → ``web_fetch``."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return _UNSAFE_ACTION_CHARS.sub("_", spaced).strip("_").lower() or "tool"


def action_for(tool_name: str) -> str:
    """The clearance action of a Claude Code tool.

    ``mcp__<server>__<tool>`` → ``mcp.<server>.<tool>``; a built-in tool ``Name`` →
    ``claude.<snake_name>``. Characters an action may not hold become ``_``.
    """
    if tool_name.startswith("mcp__"):
        parts = [p for p in tool_name[len("mcp__") :].split("__") if p]
        cleaned = [_UNSAFE_ACTION_CHARS.sub("_", p) for p in parts] or ["unknown"]
        return ("mcp." + ".".join(cleaned))[:128]
    return (ACTION_PREFIX + snake_case(tool_name))[:128]


def resolve_path(path: str, cwd: str) -> str:
    """``path`` made absolute against ``cwd``, ``~`` expanded, links and ``..`` resolved."""
    expanded = os.path.expanduser(path)
    joined = expanded if os.path.isabs(expanded) else os.path.join(cwd, expanded)
    return os.path.realpath(joined)


def _bound_text(args: dict[str, Any], key: str, value: str) -> None:
    data = value.encode("utf-8", "surrogatepass")
    args[f"{key}_digest"] = "sha256:" + hashlib.sha256(data).hexdigest()
    args[f"{key}_bytes"] = len(data)
    if len(data) <= MAX_INLINE_TEXT:
        args[key] = value


def tool_args(event: HookEvent) -> dict[str, Any]:
    """The intent's ``args`` for the tool call of ``event`` (see the module docstring)."""
    tool, given = event.tool_name, event.tool_input
    if tool == "Bash":
        command = given.get("command")
        if not isinstance(command, str):
            raise InputError("Bash tool_input.command must be a string")
        return {"command": command}
    path_key = _PATH_KEYS.get(tool)
    if path_key is None:
        return dict(given)  # MCP and other tools: their arguments as Claude Code sent them
    args: dict[str, Any] = {}
    raw_path = given.get(path_key)
    if raw_path is None and tool in ("Glob", "Grep", "LS"):
        raw_path = event.cwd  # these tools search the working directory by default
    if not isinstance(raw_path, str) or not raw_path:
        raise InputError(f"{tool} tool_input.{path_key} must be a non-empty string")
    args["path"] = resolve_path(raw_path, event.cwd)
    args["file_path"] = raw_path
    for key, value in given.items():
        if key == path_key:
            continue
        if key in _TEXT_KEYS and isinstance(value, str):
            _bound_text(args, key, value)
        elif key == "edits" and isinstance(value, list):
            args["edits"] = [_bound_edit(edit) for edit in value]
        else:
            args[key] = value
    return args


def _bound_edit(edit: object) -> object:
    if not isinstance(edit, Mapping):
        return edit
    bound: dict[str, Any] = {}
    for key, value in edit.items():
        if key in _TEXT_KEYS and isinstance(value, str):
            _bound_text(bound, key, value)
        else:
            bound[key] = value
    return bound


def intent_for(event: HookEvent) -> dict[str, Any]:
    """The intent (a JSON object) that ``event``'s tool call becomes.

    Without principal and trace: the gate binds both (the hook's principal in process,
    the API key's over HTTP; the session's trace).
    """
    return {
        "action": action_for(event.tool_name),
        "args": tool_args(event),
        "resource": f"claude-code:{event.tool_name}"[:1024],
        "purpose": "Claude Code tool call",
    }
