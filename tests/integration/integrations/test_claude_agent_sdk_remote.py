"""ClearanceGuard with :class:`clearance.Client` against a real ``clearance serve``.

The same real SDK ``query()`` loop and scripted Claude Code CLI as
:mod:`.test_claude_agent_sdk`; the decisions and outcomes are the gateway's, read back
over the runtime API with the auditor's key. The guard's key has the ``orchestrator``
scope, so it opens each session's trace itself.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from claude_agent_sdk import query

from clearance import Client
from clearance.integrations.claude_agent_sdk import ClearanceGuard
from tests.integration.server.support import Served

from .claude_cli_script import ScriptedClaudeCode, ToolUse
from .remote_support import gateway_with, log_entries
from .test_claude_agent_sdk import BUNDLE, TASK, pre_tool_use, tools


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A ``clearance serve`` whose only bundle is the coding agent's."""
    yield from gateway_with(tmp_path_factory.mktemp("gateway"), "coding.yaml", BUNDLE)


@pytest.fixture
def client(gateway: Served, tmp_path: Path) -> Iterator[Client]:
    opened = Client(gateway.url, gateway.keys["orchestrator"], spool_dir=tmp_path / "spool")
    try:
        yield opened
    finally:
        opened.close()


def new_entries(gateway: Served, start: int) -> list[dict[str, Any]]:
    return log_entries(gateway)[start:]


def run(guard: ClearanceGuard, transport: ScriptedClaudeCode) -> None:
    async def go() -> None:
        async for _ in query(prompt=TASK, options=guard.options(), transport=transport):
            pass

    asyncio.run(asyncio.wait_for(go(), 30))


def test_the_gateway_decides_records_and_taints(
    gateway: Served, client: Client, tmp_path: Path
) -> None:
    start = len(new_entries(gateway, 0))
    transport = ScriptedClaudeCode(
        [
            ToolUse("t1", "Read", {"file_path": "README.md"}),
            ToolUse("t2", "Bash", {"command": "git push --force origin main"}),
            ToolUse("t3", "WebFetch", {"url": "https://example.com", "prompt": "read"}),
            ToolUse("t4", "Bash", {"command": "ls"}),
        ],
        tools(),
        str(tmp_path),
    )
    run(ClearanceGuard(client), transport)

    answers = {
        i: pre_tool_use(transport, i)["permissionDecision"] for i in ("t1", "t2", "t3", "t4")
    }
    assert answers == {"t1": "allow", "t2": "deny", "t3": "allow", "t4": "deny"}
    assert "no-force-push" in pre_tool_use(transport, "t2")["permissionDecisionReason"]
    assert (
        "no-shell-after-untrusted-input"
        in pre_tool_use(transport, "t4")["permissionDecisionReason"]
    )
    assert [name for name, _ in transport.ran] == ["Read", "WebFetch"]
    logged = new_entries(gateway, start)
    [trace] = [e for e in logged if e["type"] == "trace"]
    assert trace["mandate"]["text"] == TASK
    allowed = {
        e["request_id"] for e in logged if e["type"] == "decision" and e["effect"] == "allow"
    }
    reported = {e["request_id"] for e in logged if e["type"] == "execution" and e["status"] == "ok"}
    assert len(allowed) == 2
    assert reported == allowed  # both outcomes reached the gateway


def test_an_approval_through_the_gateway_lets_the_asked_call_run(
    gateway: Served, client: Client, tmp_path: Path
) -> None:
    def approver_approves(request: dict[str, Any]) -> None:
        found = re.search(r"approval (\S+)\)", request["decision_reason"])
        assert found is not None
        with gateway.client("approver") as approver:
            reply = approver.post(
                f"/v1/approvals/{found.group(1)}", json={"decision": "approve", "reason": "ok"}
            )
        assert reply.status_code == 200, reply.text

    transport = ScriptedClaudeCode(
        [ToolUse("t1", "Bash", {"command": "pip install requests"})],
        tools(),
        str(tmp_path),
        before_permission=approver_approves,
    )
    run(ClearanceGuard(client, wait=10), transport)

    assert pre_tool_use(transport, "t1")["permissionDecision"] == "ask"
    [(_, _, permitted)] = [a for a in transport.answers if a[0] == "can_use_tool"]
    assert permitted["behavior"] == "allow"
    assert transport.ran == [("Bash", {"command": "pip install requests"})]
