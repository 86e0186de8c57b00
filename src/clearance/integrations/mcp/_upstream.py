"""Connections to the upstream MCP servers the proxy fronts.

Invariants:

* Each upstream is one :class:`mcp.Client` (the SDK's own client: ``mode="auto"`` speaks
  the newest protocol revision the server offers and falls back to the initialize
  handshake), over stdio (a command the proxy starts) or streamable HTTP (a URL, with
  the proxy's own headers from ``headers_env``; nothing the proxy's callers sent is
  ever forwarded).
* Every failure of an upstream (it cannot be started, it times out, it answers with a
  protocol error or something that does not parse) becomes :class:`UpstreamError`, one
  of ours, with a short message; no foreign exception leaves this module.
* Connections are opened and closed by the task that runs the proxy
  (:meth:`Upstreams.open`), as anyio requires of the transports' task groups.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2
import mcp.types as types
from mcp import Client, StdioServerParameters
from mcp.client.stdio import get_default_environment, stdio_client
from mcp.client.streamable_http import streamable_http_client

from clearance.errors import Error
from clearance.integrations.mcp._config import ServerConfig, read_secret

log = logging.getLogger("clearance.mcp")

MAX_TOOL_PAGES = 100
"""Pages of an upstream's tools/list the proxy follows (a cursor that never ends stops here)."""


class UpstreamError(Error):
    """An upstream MCP server failed, timed out or answered with something malformed."""


@dataclass
class Upstream:
    """One connected upstream server and the tools it listed at start."""

    config: ServerConfig
    client: Client
    tools: tuple[types.Tool, ...] = ()

    @property
    def name(self) -> str:
        """The server's name in the proxy configuration."""
        return self.config.name

    async def list_tools(self, timeout: float) -> tuple[types.Tool, ...]:
        """Every tool the server lists (following cursors); UpstreamError on any failure."""
        tools: list[types.Tool] = []
        cursor: str | None = None
        try:
            with anyio.fail_after(timeout):
                for _ in range(MAX_TOOL_PAGES):
                    page = await self.client.list_tools(cursor=cursor, cache_mode="bypass")
                    tools.extend(page.tools)
                    cursor = page.next_cursor
                    if cursor is None:
                        break
        except TimeoutError:
            raise UpstreamError(f"upstream {self.name}: tools/list timed out") from None
        except Exception as exc:
            raise UpstreamError(
                f"upstream {self.name}: tools/list failed: {_describe(exc)}"
            ) from None
        return tuple(tools)

    async def call_tool(
        self, tool: str, arguments: dict[str, Any], timeout: float
    ) -> types.CallToolResult:
        """Call ``tool`` upstream; UpstreamError when it fails, times out or is malformed.

        A result with ``isError: true`` is the tool's own answer and is returned as is.
        """
        try:
            with anyio.fail_after(timeout):
                result = await self.client.call_tool(tool, arguments, read_timeout_seconds=timeout)
        except TimeoutError:
            raise UpstreamError(
                f"upstream {self.name}: {tool} did not answer within {timeout:g} s"
            ) from None
        except Exception as exc:
            raise UpstreamError(f"upstream {self.name}: {tool} failed: {_describe(exc)}") from None
        if not isinstance(result, types.CallToolResult):
            raise UpstreamError(f"upstream {self.name}: {tool} answered with no tool result")
        return result


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _transport(config: ServerConfig) -> Any:
    if config.command is not None:
        env = get_default_environment()
        env.update(config.env or {})
        return stdio_client(
            StdioServerParameters(
                command=config.command, args=list(config.args), env=env, cwd=config.cwd
            ),
            errlog=sys.stderr,
        )
    headers = {
        header: read_secret(variable, f"upstream {config.name} header {header}")
        for header, variable in config.headers_env.items()
    }
    url = config.url
    if url is None:  # the config parser guarantees one of command or url
        raise UpstreamError(f"upstream {config.name}: neither command nor url")
    http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=300.0))
    return streamable_http_client(url, http_client=http)


class Upstreams:
    """All upstream servers of one proxy, connected for the lifetime of :meth:`open`."""

    def __init__(self, servers: tuple[ServerConfig, ...], *, connect_timeout: float) -> None:
        """Prepare connections to ``servers``; nothing is started before :meth:`open`."""
        self._servers = servers
        self._connect_timeout = connect_timeout
        self.connected: dict[str, Upstream] = {}

    @asynccontextmanager
    async def open(self) -> AsyncIterator[Upstreams]:
        """Connect every upstream and list its tools; UpstreamError names the first failure."""
        async with AsyncExitStack() as stack:
            for config in self._servers:
                # No fail_after around the connect: the transports open task groups that
                # outlive it, and anyio forbids a cancel scope closing around them. The
                # handshake is bounded by the client's read timeout instead.
                client = Client(
                    _transport(config),
                    mode="auto",
                    cache=None,
                    read_timeout_seconds=self._connect_timeout,
                )
                try:
                    await stack.enter_async_context(client)
                except UpstreamError:
                    raise
                except Exception as exc:
                    raise UpstreamError(
                        f"upstream {config.name}: cannot connect: {_describe(exc)}"
                    ) from None
                upstream = Upstream(config, client)
                upstream.tools = await upstream.list_tools(self._connect_timeout)
                log.info("upstream %s: %d tools", config.name, len(upstream.tools))
                self.connected[config.name] = upstream
            try:
                yield self
            finally:
                self.connected = {}
