"""The MCP governance proxy over streamable HTTP: a bearer token per principal, an
upstream over streamable HTTP (the real mcp-server-time, served by its own SDK), an
approval that outlasts the call's wait and is then used by a retry, and an upstream
that dies."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import mcp.types as types
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from tests.integration.integrations.mcp_support import (
    approver_gate,
    commit_count,
    entries_for,
    make_home,
    make_repo,
    meta,
    refresh,
    write_config,
)

TOKEN = "test-token-for-agent-coder-0123456789"
TIME_SERVER = (
    "import sys, uvicorn\n"
    "from mcp_server_time.server import create_server\n"
    "uvicorn.run(create_server('UTC').streamable_http_app(), host='127.0.0.1',"
    " port=int(sys.argv[1]), log_level='warning')\n"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"process exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listening on {port}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def time_server() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-c", TIME_SERVER, str(port)])
    try:
        _wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}/mcp", process
    finally:
        _stop(process)


def _text(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


def _decision(result: types.CallToolResult) -> dict[str, Any]:
    decision = (result.meta or {}).get("clearance/decision")
    assert isinstance(decision, dict), result
    return decision


def test_http_proxy_authenticates_forwards_and_retries_after_approval(
    tmp_path: Path, time_server: tuple[str, subprocess.Popen[bytes]]
) -> None:
    time_url, time_process = time_server
    home = make_home(tmp_path / "home")
    repo = make_repo(tmp_path / "repo")
    config = write_config(
        tmp_path / "proxy.yaml",
        home=home,
        repo=repo,
        time_url=time_url,
        limits={"approval_wait": 0.5, "call_timeout": 10},
    )
    port = _free_port()
    proxy = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clearance",
            "mcp",
            "proxy",
            "--config",
            str(config),
            "--transport",
            "http",
            "--port",
            str(port),
        ],
        env={**os.environ, "MCP_TEST_TOKEN": TOKEN},
    )
    url = f"http://127.0.0.1:{port}/mcp"
    approver = approver_gate(home)
    try:
        _wait_for_port(port, proxy)

        # No token, or a wrong one: 401 before anything reaches the MCP server.
        initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
        for headers in ({}, {"Authorization": "Bearer not-the-token-0123456789"}):
            answer = httpx.post(url, json=initialize, headers=headers, timeout=10)
            assert answer.status_code == 401

        async def scenario() -> None:
            http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
            async with (
                http,
                streamable_http_client(url, http_client=http) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                listed = {t.name for t in (await session.list_tools()).tools}
                assert {"time__get_current_time", "git__git_commit", "git__git_status"} <= listed
                assert "git__git_reset" not in listed

                # Forwarded to the HTTP upstream and recorded.
                now = await session.call_tool("time__get_current_time", {"timezone": "UTC"})
                assert not now.is_error, _text(now)
                logged = entries_for(approver, (now.meta or {})["clearance/request_id"])
                assert logged["decision"]["intent"]["principal"] == "agent:coder"
                assert logged["decision"]["intent"]["action"] == "mcp.time.get_current_time"
                assert logged["execution"]["status"] == "ok"

                # The approval outlasts the wait: the result names it and nothing ran.
                before = commit_count(repo)
                args = {"repo_path": str(repo), "message": "NOTES-8: add notes"}
                pending = await session.call_tool("git__git_commit", args)
                assert pending.is_error
                approval_id = _decision(pending)["approval_id"]
                assert approval_id in _text(pending)
                assert commit_count(repo) == before

                # A retry naming the approval before it is approved is still refused.
                early = await session.call_tool(
                    "git__git_commit", args, meta=meta(approval_id=approval_id)
                )
                assert early.is_error
                assert commit_count(repo) == before

                await anyio.to_thread.run_sync(
                    lambda: approver.approve(approval_id, approver="human:alice", reason="ok")
                )
                # A retry with other arguments does not get the approved call's grant.
                other = await session.call_tool(
                    "git__git_commit",
                    {**args, "message": "NOTES-8: something else"},
                    meta=meta(approval_id=approval_id),
                )
                assert other.is_error
                assert commit_count(repo) == before

                # The one the human approved ran... once. (The mismatched retry above
                # already collected the approval's one grant, so approve a fresh call.)
                again = await session.call_tool("git__git_commit", args)
                second_id = _decision(again)["approval_id"]
                await anyio.to_thread.run_sync(
                    lambda: approver.approve(second_id, approver="human:alice", reason="ok")
                )
                done = await session.call_tool(
                    "git__git_commit", args, meta=meta(approval_id=second_id)
                )
                assert not done.is_error, _text(done)
                assert commit_count(repo) == before + 1
                replay = await session.call_tool(
                    "git__git_commit", args, meta=meta(approval_id=second_id)
                )
                assert replay.is_error
                assert commit_count(repo) == before + 1

                # The upstream dies: the call errors cleanly, and the ledger says so.
                _stop(time_process)
                failed = await session.call_tool("time__get_current_time", {"timezone": "UTC"})
                assert failed.is_error
                assert [r["rule"] for r in _decision(failed)["reasons"]] == ["upstream-failed"]

        anyio.run(scenario)
        refresh(approver)
        executions = [
            dict(e.entry) for e in approver.ledger.scan() if e.entry.get("type") == "execution"
        ]
        assert executions[-1]["status"] == "error"
        assert executions[-1]["error_type"] == "UpstreamError"
        # The retry with other arguments was refused by the grant check and logged as such.
        assert any(e["status"] == "rejected" for e in executions)
        # SIGTERM (a process manager's stop) ends the proxy normally, after its cleanup.
        proxy.terminate()
        assert proxy.wait(timeout=20) == 0
    finally:
        approver.close()
        _stop(proxy)
