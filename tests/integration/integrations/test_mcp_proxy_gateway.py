"""The MCP governance proxy in gateway mode: decisions by a real ``clearance serve``.

``python -m clearance mcp proxy`` runs over stdio with ``gateway: {url, api_key_env}`` in
front of the real mcp-server-git and mcp-server-time, driven by the SDK's ClientSession.
Every step is checked from the upstream's side (git itself) and in the gateway's ledger,
read back over the runtime API with the auditor's key (``GET /v1/requests/{id}``).

The proxy's key has the ``orchestrator`` scope (it opens the session's trace) and the
proxy's principal; a key with the ``agent`` scope only cannot open the trace, so the
proxy refuses every call without forwarding it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import mcp.types as types
import pytest
import yaml
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.integration.integrations.mcp_support import (
    EXAMPLE_BUNDLE,
    commit_count,
    git,
    make_repo,
    meta,
)
from tests.integration.integrations.remote_support import gateway_with
from tests.integration.server.support import KEYS, Served

PROXY_PRINCIPAL = "agent:coder"
APPROVAL_WAIT = 2.0
"""Seconds a call waits on the gateway for its approval before answering pending."""
GATEWAY_KEYS = {
    **KEYS,
    "proxy": (("orchestrator",), PROXY_PRINCIPAL),
    "proxy-agent-only": (("agent",), PROXY_PRINCIPAL),
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A ``clearance serve`` whose only bundle is the MCP example's."""
    yield from gateway_with(
        tmp_path_factory.mktemp("gateway"),
        "mcp.yaml",
        EXAMPLE_BUNDLE.read_text(encoding="utf-8"),
        GATEWAY_KEYS,
    )


def _config(path: Path, gateway: Served, repo: Path) -> Path:
    config: dict[str, Any] = {
        "gateway": {"url": gateway.url, "api_key_env": "CLEARANCE_PROXY_KEY"},
        "principal": PROXY_PRINCIPAL,
        "mandate": {"text": "Maintain this repository"},
        "limits": {"approval_wait": APPROVAL_WAIT, "call_timeout": 20},
        "servers": {
            "git": {
                "command": sys.executable,
                "args": ["-m", "mcp_server_git", "--repository", str(repo)],
                "resource": "repo/test",
            },
            "time": {
                "command": sys.executable,
                "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"],
            },
        },
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _proxy(config: Path, key: str, cwd: Path) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "clearance", "mcp", "proxy", "--config", str(config)],
        cwd=str(cwd),
        # The whole environment (coverage follows the subprocess), plus the key.
        env={**os.environ, "CLEARANCE_PROXY_KEY": key},
    )


def _text(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


def _rules(result: types.CallToolResult) -> list[str]:
    decision = (result.meta or {}).get("clearance/decision")
    assert isinstance(decision, dict), result
    return [str(r["rule"]) for r in decision["reasons"]]


def _record(gateway: Served, result: types.CallToolResult) -> dict[str, Any]:
    """The gateway's record of the call that produced ``result`` (read as the auditor)."""
    request_id = (result.meta or {})["clearance/request_id"]
    with gateway.client("auditor") as auditor:
        reply = auditor.get(f"/v1/requests/{request_id}")
    assert reply.status_code == 200, reply.text
    record: dict[str, Any] = reply.json()
    return record


def test_gateway_mode_lists_forwards_records_and_refuses(gateway: Served, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    config = _config(tmp_path / "proxy.yaml", gateway, repo)
    params = _proxy(config, gateway.keys["proxy"], tmp_path)
    approved: list[str] = []

    async def approve_when_pending() -> None:
        # The human, with the approver's key: approves the pending commit over the API.
        with gateway.client("approver") as approver:
            for _ in range(200):
                listed = await anyio.to_thread.run_sync(
                    lambda: approver.get("/v1/approvals", params={"status": "pending"})
                )
                pending = listed.json()["approvals"]
                if pending:
                    approval_id = pending[0]["approval_id"]
                    vote = await anyio.to_thread.run_sync(
                        partial(
                            approver.post,
                            f"/v1/approvals/{approval_id}",
                            json={"decision": "approve", "reason": "ticket cited"},
                        )
                    )
                    assert vote.status_code == 200, vote.text
                    approved.append(approval_id)
                    return
                await anyio.sleep(0.05)
        raise AssertionError("no approval became pending")

    async def scenario() -> None:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()

            # tools/list: a strict gateway bundle's unlisted tools are hidden (the proxy
            # cannot read the gateway's rules, so a listed tool that is always denied
            # stays listed and is refused at call time).
            listed = {t.name for t in (await session.list_tools()).tools}
            assert {"git__git_status", "git__git_commit", "time__get_current_time"} <= listed
            assert "git__git_create_branch" not in listed
            assert "git__git_add" not in listed

            # An allowed call is forwarded, and the gateway's ledger holds its outcome.
            status = await session.call_tool(
                "git__git_status",
                {"repo_path": str(repo)},
                meta=meta(mandate="Commit the staged notes as NOTES-7: add notes"),
            )
            assert not status.is_error, _text(status)
            assert "notes.txt" in _text(status)
            record = _record(gateway, status)
            assert record["principal"] == PROXY_PRINCIPAL
            assert record["intent"]["action"] == "mcp.git.git_status"
            assert record["intent"]["resource"] == "repo/test"
            assert record["decision"]["effect"] == "allow"
            assert record["execution"]["status"] == "ok"
            assert record["execution"]["executor"] == PROXY_PRINCIPAL  # the reporting key's
            assert record["execution"]["result_digest"].startswith("sha256:")
            # The session's trace was opened by the proxy with the client's mandate.
            mandate = record["decision"]["facts"]["mandate"]["text"]
            assert mandate == "Commit the staged notes as NOTES-7: add notes"
            trace_id = record["trace_id"]

            now = await session.call_tool("time__get_current_time", {"timezone": "UTC"})
            assert not now.is_error, _text(now)
            assert _record(gateway, now)["trace_id"] == trace_id

            # Denied calls are tool results with the gateway's reasons; git sees nothing.
            before = commit_count(repo)
            denied = await session.call_tool(
                "git__git_commit", {"repo_path": str(repo), "message": "oops"}
            )
            assert denied.is_error
            assert _rules(denied) == ["commits-cite-a-ticket"]
            reset = await session.call_tool("git__git_reset", {"repo_path": str(repo)})
            assert reset.is_error
            assert _rules(reset) == ["history-is-not-rewritten"]
            assert commit_count(repo) == before
            assert "notes.txt" in git(repo, "diff", "--cached", "--name-only")

            # approval_required: the call waits on the gateway; a human approves it over
            # the API; the commit lands once, and its outcome is recorded.
            async with anyio.create_task_group() as group:
                group.start_soon(approve_when_pending)
                committed = await session.call_tool(
                    "git__git_commit", {"repo_path": str(repo), "message": "NOTES-7: add notes"}
                )
            assert not committed.is_error, _text(committed)
            assert commit_count(repo) == before + 1
            record = _record(gateway, committed)
            assert record["decision"]["effect"] == "approval_required"
            assert record["approval"]["approval_id"] == approved[0]
            assert record["execution"]["status"] == "ok"

            # An approval that outlasts the wait: the result names it and nothing ran; the
            # client retries with the approval id once a human approved, and the approved
            # commit lands, once.
            (repo / "later.txt").write_text("later\n")
            git(repo, "add", "later.txt")
            args = {"repo_path": str(repo), "message": "NOTES-8: add later notes"}
            pending = await session.call_tool("git__git_commit", args)
            assert pending.is_error
            approval_id = (pending.meta or {})["clearance/decision"]["approval_id"]
            assert commit_count(repo) == before + 1
            with gateway.client("approver") as approver:
                vote = approver.post(
                    f"/v1/approvals/{approval_id}", json={"decision": "approve", "reason": "ok"}
                )
            assert vote.status_code == 200, vote.text
            retried = await session.call_tool(
                "git__git_commit", args, meta=meta(approval_id=approval_id)
            )
            assert not retried.is_error, _text(retried)
            assert commit_count(repo) == before + 2
            assert _record(gateway, retried)["execution"]["status"] == "ok"
            replayed = await session.call_tool(
                "git__git_commit", args, meta=meta(approval_id=approval_id)
            )
            assert replayed.is_error
            assert commit_count(repo) == before + 2

            # Taint: the gateway's bundle marks git_log untrusted_output, so after it a
            # commit the mandate does not name is denied in this session's trace.
            (repo / "more.txt").write_text("more\n")
            git(repo, "add", "more.txt")
            history = await session.call_tool("git__git_log", {"repo_path": str(repo)})
            assert not history.is_error, _text(history)
            tainted = await session.call_tool(
                "git__git_commit", {"repo_path": str(repo), "message": "OPS-1: ship it"}
            )
            assert tainted.is_error
            assert _rules(tainted) == ["no-commits-after-untrusted-input"]
            assert commit_count(repo) == before + 2

    anyio.run(scenario)


def test_a_key_that_cannot_open_traces_forwards_nothing(gateway: Served, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    config = _config(tmp_path / "proxy.yaml", gateway, repo)
    params = _proxy(config, gateway.keys["proxy-agent-only"], tmp_path)
    start = _log_size(gateway)

    async def scenario() -> None:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            assert "git__git_status" in {t.name for t in (await session.list_tools()).tools}
            status = await session.call_tool("git__git_status", {"repo_path": str(repo)})
            assert status.is_error
            assert _rules(status) == ["trace-unavailable"]
            assert "orchestrator" in _text(status)  # the gateway's 403 names the scope

    anyio.run(scenario)
    # Nothing was decided (so nothing could be forwarded) and no trace was opened.
    with gateway.client("auditor") as auditor:
        page = auditor.get("/v1/log/entries", params={"start": start, "limit": 1000}).json()
    assert page["size"] >= start
    assert [e["entry"]["type"] for e in page["entries"]] == []


def _log_size(gateway: Served) -> int:
    with gateway.client("auditor") as auditor:
        size = auditor.get("/v1/log/entries", params={"limit": 1}).json()["size"]
    assert isinstance(size, int)
    return size
