"""The MCP governance proxy over stdio, in front of the real mcp-server-git and
mcp-server-time, driven by the SDK's own ClientSession.

One proxy process is one client session (one trace), so the steps run in order in one
session: list, allowed calls, a denied commit, an approved commit, then a commit denied
because the session read untrusted repository history. Each step is checked from the
upstream's side (git itself) and in the ledger.
"""

from __future__ import annotations

import os
import sys
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import mcp.types as types
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.integration.integrations.mcp_support import (
    approver_gate,
    commit_count,
    entries_for,
    git,
    make_home,
    make_repo,
    meta,
    write_config,
)


def _text(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


def _decision(result: types.CallToolResult) -> dict[str, Any]:
    meta = result.meta or {}
    decision = meta.get("clearance/decision")
    assert isinstance(decision, dict), result
    return decision


def test_stdio_session_lists_decides_forwards_and_taints(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    repo = make_repo(tmp_path / "repo")
    config = write_config(tmp_path / "proxy.yaml", home=home, repo=repo)
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "clearance", "mcp", "proxy", "--config", str(config)],
        cwd=str(tmp_path),
        env=dict(os.environ),  # the SDK would pass a minimal one (coverage needs its variables)
    )
    approver = approver_gate(home)
    seen: dict[str, Any] = {}

    async def approve_when_pending() -> None:
        # The human: waits for the pending approval the proxy's call created, approves it.
        for _ in range(200):
            pending = await anyio.to_thread.run_sync(lambda: approver.approvals("pending"))
            if pending:
                approval_id = pending[0].approval_id
                seen["approval_id"] = approval_id
                await anyio.to_thread.run_sync(
                    partial(approver.approve, approval_id, approver="human:alice", reason="ok")
                )
                return
            await anyio.sleep(0.05)
        raise AssertionError("no approval became pending")

    async def scenario() -> None:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()

            # tools/list: the union, namespaced, minus what can never be allowed.
            listed = {t.name for t in (await session.list_tools()).tools}
            assert {"git__git_status", "git__git_log", "git__git_commit"} <= listed
            assert {"time__get_current_time", "time__convert_time"} <= listed
            assert "git__git_reset" not in listed  # an unconditional deny
            assert "git__git_create_branch" not in listed  # a strict bundle that omits it
            assert "git__git_add" not in listed

            # Allowed calls are forwarded, and their outcome is in the ledger.
            status = await session.call_tool(
                "git__git_status",
                {"repo_path": str(repo)},
                meta=meta(mandate="Commit the staged notes as NOTES-7: add notes"),
            )
            assert not status.is_error, _text(status)
            assert "notes.txt" in _text(status)
            request_id = (status.meta or {})["clearance/request_id"]
            logged = entries_for(approver, request_id)
            assert logged["decision"]["effect"] == "allow"
            assert logged["execution"]["status"] == "ok"
            assert logged["execution"]["result_digest"].startswith("sha256:")
            assert logged["execution"]["executor"] == "clearance-mcp-proxy"
            # The session's trace took its mandate from the first call's _meta.
            mandate = logged["decision"]["facts"]["mandate"]["text"]
            assert mandate == "Commit the staged notes as NOTES-7: add notes"

            now = await session.call_tool("time__get_current_time", {"timezone": "UTC"})
            assert not now.is_error, _text(now)
            assert "UTC" in _text(now)

            # A denied commit is a tool result with the reasons, and never reaches git.
            before = commit_count(repo)
            denied = await session.call_tool(
                "git__git_commit", {"repo_path": str(repo), "message": "oops"}
            )
            assert denied.is_error
            assert "commits-cite-a-ticket" in _text(denied)
            assert [r["rule"] for r in _decision(denied)["reasons"]] == ["commits-cite-a-ticket"]
            assert commit_count(repo) == before
            assert "notes.txt" in git(repo, "diff", "--cached", "--name-only")

            # Unknown tools and hidden tools are refused without reaching anyone.
            hidden = await session.call_tool("git__git_reset", {"repo_path": str(repo)})
            assert hidden.is_error
            assert "history-is-not-rewritten" in _text(hidden)
            assert "notes.txt" in git(repo, "diff", "--cached", "--name-only")

            # approval_required: the call waits, a human approves, the commit lands.
            async with anyio.create_task_group() as group:
                group.start_soon(approve_when_pending)
                committed = await session.call_tool(
                    "git__git_commit",
                    {"repo_path": str(repo), "message": "NOTES-7: add notes"},
                )
            assert not committed.is_error, _text(committed)
            assert commit_count(repo) == before + 1
            assert git(repo, "log", "-1", "--format=%s").strip() == "NOTES-7: add notes"
            approved = entries_for(approver, (committed.meta or {})["clearance/request_id"])
            assert approved["decision"]["effect"] == "approval_required"
            assert approved["execution"]["status"] == "ok"

            # Taint: git_log's output is untrusted; a later commit the mandate does not
            # name is denied by the trace rule, and git sees nothing.
            (repo / "more.txt").write_text("more\n")
            git(repo, "add", "more.txt")
            history = await session.call_tool("git__git_log", {"repo_path": str(repo)})
            assert not history.is_error
            assert "NOTES-7" in _text(history)
            tainted = await session.call_tool(
                "git__git_commit", {"repo_path": str(repo), "message": "OPS-1: ship it"}
            )
            assert tainted.is_error
            assert [r["rule"] for r in _decision(tainted)["reasons"]] == [
                "no-commits-after-untrusted-input"
            ]
            assert commit_count(repo) == before + 1

    try:
        anyio.run(scenario)
    finally:
        approver.close()
    assert seen["approval_id"]
