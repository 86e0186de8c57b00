"""``clearance hook``: clearance as a coding agent's tool-call hook.

``clearance hook claude-code`` reads one Claude Code hook event on standard input and
answers in the hook protocol (:mod:`clearance.integrations.claude_code`). It never
raises to :func:`clearance._cli.main.main`: every failure is an answer (a denial for
``PreToolUse``), because an unexpected exit status would let Claude Code run the call.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from clearance._cli.common import HomeOption

hook_app = typer.Typer(
    help="Tool-call hooks for coding agents (decide every tool call with clearance).",
    no_args_is_help=True,
)

MAX_EVENT_BYTES = 8 << 20
"""Largest hook event read from standard input (a Write event carries the whole file)."""


@hook_app.command("claude-code")
def claude_code(
    home: HomeOption = None,
    principal: Annotated[
        str,
        typer.Option(
            help="The principal of the tool calls (in process; over HTTP the API key's).",
            envvar="CLEARANCE_PRINCIPAL",
        ),
    ] = "agent:claude-code",
    mandate: Annotated[
        str | None,
        typer.Option(
            help="The mandate each session's trace is opened with.",
            envvar="CLEARANCE_MANDATE",
            show_default=False,
        ),
    ] = None,
    project_dir: Annotated[
        str | None,
        typer.Option(
            "--project-dir",
            help="The project root (default: $CLAUDE_PROJECT_DIR, else the event's cwd).",
            show_default=False,
        ),
    ] = None,
    gateway: Annotated[
        str | None,
        typer.Option(
            help="Decide through `clearance serve` at this URL (API key: $CLEARANCE_API_KEY, "
            "orchestrator scope) instead of the home in process.",
            show_default=False,
        ),
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir",
            help="Where the HTTP variant keeps sessions and calls "
            "(default: $XDG_STATE_HOME/clearance/claude-code).",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(help="Seconds before an undecided tool call is denied.", min=0.1),
    ] = 20.0,
    approval_wait: Annotated[
        float,
        typer.Option(
            "--approval-wait",
            help="Seconds to wait for a clearance approval before answering `ask` (in process).",
            min=0.0,
        ),
    ] = 0.0,
) -> None:
    """Answer one Claude Code PreToolUse / PostToolUse event read on standard input.

    Configure it in .claude/settings.json (see examples/claude_code/settings.json).
    """
    from clearance.integrations.claude_code import HookConfig, run_hook

    config = HookConfig(
        home=home,
        principal=principal,
        mandate=mandate,
        project_dir=project_dir,
        gateway=gateway,
        api_key=os.environ.get("CLEARANCE_API_KEY"),
        state_dir=state_dir,
        timeout=timeout,
        approval_wait=approval_wait,
    )
    data = sys.stdin.buffer.read(MAX_EVENT_BYTES + 1)
    # An oversized event is read as "" (not JSON), which is answered as a denial.
    text = "" if len(data) > MAX_EVENT_BYTES else data.decode("utf-8", "replace")
    answer = run_hook(text, config)
    try:
        sys.stdout.write(answer.stdout)
        sys.stdout.flush()
        sys.stderr.write(answer.stderr)
        sys.stderr.flush()
    except OSError:
        os._exit(2)  # could not answer: block (exit status 2) rather than let it run
    if any(t.name == "clearance-hook" and t.is_alive() for t in threading.enumerate()):
        # A worker abandoned after the timeout must not hold the process open.
        os._exit(answer.exit_code)
    sys.exit(answer.exit_code)  # a normal exit: the gate is closed, atexit handlers run
