"""One hook run: an event in, an answer out, within a deadline, failing closed.

Invariants:

* A ``PreToolUse`` event is answered ``allow`` only for a decision the gate logged as
  ``allow`` whose call record was kept for the PostToolUse event. Every failure (an
  event that does not parse, a home or gateway that does not open, a ledger error, a
  bug) and a decision not made within ``timeout`` seconds is a ``deny`` naming why.
* ``approval_required`` is answered ``ask``: Claude Code asks its user, showing the
  approval id and the rules; with ``approval_wait`` (in process) the hook first waits
  that long for the approval in clearance (``clearance approvals approve``).
* A ``PostToolUse`` / ``PostToolUseFailure`` event never blocks anything (the tool ran):
  its outcome (``ok``, or ``error`` with the failure) is appended for the call's
  decision, and a problem doing so is a non-blocking notice.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clearance._internal import strict_json
from clearance._internal.canonical import json_digest
from clearance.errors import Error, InputError
from clearance.integrations._claude_code import answers
from clearance.integrations._claude_code.backends import (
    Backend,
    GatewayBackend,
    InProcessBackend,
)
from clearance.integrations._claude_code.events import HookEvent, intent_for, resolve_path
from clearance.integrations._claude_code.state import HookState

PROJECT_DIR_ENV = "CLAUDE_PROJECT_DIR"
"""Set by Claude Code for hook commands: the project root."""


@dataclass(frozen=True)
class HookConfig:
    """How ``clearance hook claude-code`` decides (its options; see the README).

    ``home`` (in process) or ``gateway`` + ``api_key`` (HTTP). ``principal`` is the
    in-process gate's principal (over HTTP the key's). ``mandate`` is the text each
    session's trace is opened with (default: "Claude Code session in <project>"); its
    bounds hold ``project_dir`` (``project_dir``, else ``$CLAUDE_PROJECT_DIR``, else the
    first event's ``cwd``, resolved) and ``session_id``. ``state_dir`` keeps the
    session and call records over HTTP (default ``$XDG_STATE_HOME/clearance/claude-code``).
    ``timeout``: seconds before a decision not yet made is a denial. ``approval_wait``:
    seconds to wait for a clearance approval before answering ``ask`` (in process).
    """

    home: Path | None = None
    principal: str = "agent:claude-code"
    mandate: str | None = None
    project_dir: str | None = None
    gateway: str | None = None
    api_key: str | None = None
    state_dir: Path | None = None
    timeout: float = 20.0
    approval_wait: float = 0.0


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/clearance/claude-code`` (``~/.local/state`` without it)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return Path(base) / "clearance" / "claude-code"


def open_backend(config: HookConfig) -> Backend:
    """The gate ``config`` names: the gateway when ``gateway`` is set, else the home."""
    if config.gateway is not None:
        if not config.api_key:
            raise InputError("--gateway needs an API key in $CLEARANCE_API_KEY")
        state = config.state_dir or default_state_dir()
        return GatewayBackend(config.gateway, config.api_key, state, config.timeout)
    return InProcessBackend(config.home, config.principal)


def _pre_tool_use(event: HookEvent, config: HookConfig, backend: Backend) -> answers.HookAnswer:
    state = HookState(config.state_dir or backend.state_dir)
    trace_id = state.session_trace(event.session_id)
    if trace_id is None:
        project = config.project_dir or os.environ.get(PROJECT_DIR_ENV) or event.cwd
        project_dir = resolve_path(project, event.cwd)
        mandate = config.mandate or f"Claude Code session in {project_dir}"
        bounds = {"project_dir": project_dir, "session_id": event.session_id}
        opened = backend.open_trace(mandate, bounds)
        trace_id = state.adopt_trace(event.session_id, opened, time.time())
    verdict = backend.decide(intent_for(event), trace_id, config.approval_wait)
    if verdict.effect == "allow":
        state.remember_call(
            event.session_id,
            event.tool_use_id,
            {
                "request_id": verdict.request_id,
                "grant": verdict.grant,
                "intent": verdict.intent,
                "decided_at": time.time(),
            },
        )
        return answers.permission("allow", verdict.reason)
    if verdict.effect == "approval_required":
        return answers.permission("ask", verdict.reason)
    return answers.deny(verdict.reason)


def _post_tool_use(event: HookEvent, config: HookConfig, backend: Backend) -> answers.HookAnswer:
    state = HookState(config.state_dir or backend.state_dir)
    call = state.take_call(event.session_id, event.tool_use_id)
    if call is None:
        return answers.notice(
            f"clearance: no allowed decision is kept for tool call {event.tool_use_id}; "
            "its outcome is not recorded"
        )
    succeeded = event.hook_event_name == "PostToolUse"
    digest: str | None = None
    if succeeded and event.tool_response is not None:
        try:
            digest = json_digest(event.tool_response)
        except InputError:
            digest = None
    error_type = None
    if not succeeded:
        error_type = "interrupted" if event.is_interrupt else "tool_error"
    decided_at = call.get("decided_at")
    started = float(decided_at) if isinstance(decided_at, int | float) else time.time()
    backend.record(
        call,
        status="ok" if succeeded else "error",
        error_type=error_type,
        result_digest=digest,
        duration_us=max(0, int((time.time() - started) * 1e6)),
    )
    return answers.recorded()


def _answer(text: str, config: HookConfig) -> answers.HookAnswer:
    try:
        event = HookEvent.parse(strict_json.loads(text))
    except (ValueError, RecursionError) as exc:
        raise InputError(f"the hook event is not valid JSON: {exc}") from None
    backend = open_backend(config)
    try:
        if event.hook_event_name == "PreToolUse":
            return _pre_tool_use(event, config, backend)
        return _post_tool_use(event, config, backend)
    finally:
        backend.close()


def _is_pre_tool_use(text: str) -> bool:
    """Whether ``text`` might be a PreToolUse event (when unsure: yes, so it is denied)."""
    try:
        raw: Any = strict_json.loads(text)
    except (ValueError, RecursionError):
        return True
    return not (isinstance(raw, Mapping) and raw.get("hook_event_name") in _POST_EVENTS)


_POST_EVENTS = frozenset({"PostToolUse", "PostToolUseFailure"})


def _failed(text: str, why: str) -> answers.HookAnswer:
    if _is_pre_tool_use(text):
        return answers.deny(f"clearance could not decide, so this tool call is denied: {why}")
    return answers.notice(f"clearance could not record this tool call's outcome: {why}")


def run_hook(text: str, config: HookConfig) -> answers.HookAnswer:
    """Answer the hook event ``text`` (see the module docstring); never raises.

    The decision runs in a worker thread; when it takes longer than ``config.timeout``
    seconds the answer is a denial (the worker is abandoned: the caller should exit).
    """
    result: list[answers.HookAnswer] = []

    def work() -> None:
        try:
            result.append(_answer(text, config))
        except Error as exc:
            result.append(_failed(text, exc.diagnostics()))
        except Exception as exc:  # fail closed on anything: a bug must not let a call through
            result.append(_failed(text, f"internal error: {exc!r}"))

    worker = threading.Thread(target=work, name="clearance-hook", daemon=True)
    worker.start()
    worker.join(config.timeout)
    if not result:
        return _failed(text, f"no decision within {config.timeout:g} seconds")
    return result[0]
