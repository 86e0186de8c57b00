"""ClearanceGuard with the REAL Claude Code CLI that the Claude Agent SDK bundles, offline.

``query()`` spawns the SDK's bundled ``claude`` binary (its own subprocess transport);
the model is a scripted Messages API on 127.0.0.1 (:mod:`.anthropic_api_script`, reached
through ``ANTHROPIC_BASE_URL``), so Claude Code's real agent loop, hooks, permission
prompts and built-in tools (a real ``Bash``) run with no network.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from claude_agent_sdk import ClaudeAgentOptions, ResultMessage, query

from clearance._internal.gate.core import Gate
from clearance.integrations.claude_agent_sdk import ClearanceGuard

from .anthropic_api_script import ScriptedMessagesApi
from .framework_support import APPROVER, decisions, entries, executed, traces
from .test_claude_agent_sdk import TASK
from .test_claude_agent_sdk import gate as gate  # the coding bundle's gate fixture


@pytest.fixture
def project(tmp_path: Path) -> Path:
    path = tmp_path / "project"
    path.mkdir()
    return path


def run(
    guard: ClearanceGuard,
    api: ScriptedMessagesApi,
    project: Path,
    prompt: str = TASK,
    resume: str | None = None,
) -> list[Any]:
    options = ClaudeAgentOptions(
        resume=resume,
        cwd=str(project),
        model="claude-sonnet-4-5",
        max_turns=6,
        env={
            "ANTHROPIC_BASE_URL": api.url,
            "ANTHROPIC_API_KEY": "sk-ant-offline-test",
            "CLAUDE_CONFIG_DIR": str(project.parent / "claude-config"),
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_TELEMETRY": "1",
        },
    )

    async def go() -> list[Any]:
        return [m async for m in query(prompt=prompt, options=guard.options(options))]

    return asyncio.run(asyncio.wait_for(go(), 60))


@pytest.fixture
def serving() -> Iterator[list[ScriptedMessagesApi]]:
    """Scripted APIs appended here are stopped after the test."""
    apis: list[ScriptedMessagesApi] = []
    yield apis
    for api in apis:
        api.stop()


def started(
    serving: list[ScriptedMessagesApi], *calls: tuple[str, dict[str, Any]]
) -> ScriptedMessagesApi:
    api = ScriptedMessagesApi(list(calls))
    api.start()
    serving.append(api)
    return api


def test_the_real_cli_runs_allowed_calls_and_blocks_denied_ones(
    gate: Gate, project: Path, serving: list[ScriptedMessagesApi]
) -> None:
    api = started(
        serving,
        ("Bash", {"command": "echo hi > out.txt", "description": "write"}),
        ("Bash", {"command": "git push --force origin main", "description": "push"}),
    )
    messages = run(ClearanceGuard(gate), api, project)

    assert isinstance(messages[-1], ResultMessage)
    assert (project / "out.txt").read_text() == "hi\n"  # the allowed Bash really ran
    assert decisions(gate) == [("claude.bash", "allow"), ("claude.bash", "deny")]
    assert len(executed(gate)) == 1  # PostToolUse recorded the allowed call's outcome
    assert [t["mandate"]["text"] for t in traces(gate)] == [TASK]  # UserPromptSubmit
    shown = [str(r["content"]) for r in api.tool_results()]
    assert "no-force-push" in shown[1]
    assert "Never force-push" in shown[1]


INSTALL = "pip install --help > /dev/null 2>&1; echo approved > approved.txt"


def test_the_real_cli_asks_can_use_tool_which_waits_for_the_approval(
    gate: Gate, project: Path, serving: list[ScriptedMessagesApi]
) -> None:
    api = started(serving, ("Bash", {"command": INSTALL, "description": "install"}))
    stop = threading.Event()

    def human() -> None:
        while not stop.is_set():
            for approval in gate.approvals():
                if approval.status == "pending":
                    gate.approve(approval.approval_id, approver=APPROVER, reason="ok")
                    return
            time.sleep(0.05)

    approver = threading.Thread(target=human, daemon=True)
    approver.start()
    try:
        run(ClearanceGuard(gate, wait=20), api, project)
    finally:
        stop.set()
        approver.join(5)

    assert (project / "approved.txt").read_text() == "approved\n"
    assert decisions(gate) == [("claude.bash", "approval_required")]
    [execution] = entries(gate, "execution")
    assert execution["status"] == "ok"


def test_a_deferred_call_runs_when_the_resumed_session_offers_it_again_approved(
    gate: Gate, project: Path, serving: list[ScriptedMessagesApi]
) -> None:
    guard = ClearanceGuard(gate, on_approval="defer", wait=5)
    api = started(serving, ("Bash", {"command": INSTALL, "description": "install"}))
    first = run(guard, api, project)

    stopped = first[-1]
    assert isinstance(stopped, ResultMessage)
    assert stopped.deferred_tool_use is not None
    assert stopped.deferred_tool_use.name == "Bash"
    assert not (project / "approved.txt").exists()
    [approval] = gate.approvals()
    gate.approve(approval.approval_id, approver=APPROVER, reason="ok")

    # Claude Code offers the deferred call again (PreToolUse, same tool use id) on resume.
    run(guard, api, project, prompt="continue", resume=stopped.session_id)
    assert (project / "approved.txt").read_text() == "approved\n"
    assert decisions(gate) == [("claude.bash", "approval_required")]
    assert [e["status"] for e in entries(gate, "execution")] == ["ok"]
    assert len(traces(gate)) == 1
