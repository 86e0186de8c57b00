"""Drive the MCP governance proxy with the SDK's own client, offline.

    clearance init /tmp/mcp-home
    cp examples/mcp_proxy/policies/mcp.yaml /tmp/mcp-home/policies/
    rm /tmp/mcp-home/policies/agent.yaml          # keep only the proxy's bundle
    python examples/mcp_proxy/client.py --home /tmp/mcp-home

Starts ``clearance mcp proxy --config examples/mcp_proxy/proxy.yaml`` over stdio (in
this repository, which the git server reads), lists the tools the policy lets it see,
makes an allowed call and a denied one, and prints what came back.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import anyio
import mcp.types as types
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

HERE = Path(__file__).resolve().parent


def text(result: types.CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, types.TextContent))[:200]


async def main(home: str) -> None:
    proxy = StdioServerParameters(
        command=sys.executable,
        args=[
            "-m",
            "clearance",
            "mcp",
            "proxy",
            "--config",
            str(HERE / "proxy.yaml"),
            "--home",
            home,
        ],
        cwd=str(HERE.parents[1]),
    )
    async with stdio_client(proxy) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        tools = sorted(t.name for t in (await session.list_tools()).tools)
        print("tools:", ", ".join(tools))
        now = await session.call_tool("time__get_current_time", {"timezone": "UTC"})
        print("allowed:", text(now))
        commit = await session.call_tool("git__git_commit", {"repo_path": ".", "message": "wip"})
        print("denied:" if commit.is_error else "made:", text(commit))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", required=True, help="a clearance home holding the example bundle")
    anyio.run(main, parser.parse_args().home)
