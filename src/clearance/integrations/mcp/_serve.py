"""Running the proxy: over stdio (one client, the configured principal) or streamable HTTP.

Invariants:

* The decision point is opened and every upstream connected (and listed) before the
  proxy accepts a client; any failure there refuses to start, naming the cause.
* Over HTTP, every request must carry ``Authorization: Bearer <token>`` matching one of
  ``http.clients`` (compared in constant time); the token's principal is the caller's,
  never anything in the request body, and the token is never forwarded upstream. With
  no clients configured the HTTP endpoint refuses to start rather than serve anyone.
* The gate (or the client) is closed however the proxy stops.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any, Literal

import anyio
from mcp.server.stdio import stdio_server

from clearance.errors import Error, InputError
from clearance.integrations.mcp._authority import Authority, InProcessAuthority, RemoteAuthority
from clearance.integrations.mcp._config import ProxyConfig, read_secret
from clearance.integrations.mcp._proxy import PRINCIPAL_SCOPE_KEY, McpProxy
from clearance.integrations.mcp._upstream import Upstreams

log = logging.getLogger("clearance.mcp")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]


class BearerPrincipals:
    """ASGI front door: a known bearer token or 401; the token's principal goes in the scope."""

    def __init__(self, app: Asgi, tokens: dict[str, str]) -> None:
        """``tokens`` maps each token to its principal."""
        self._app = app
        self._tokens = [(token.encode(), principal) for token, principal in tokens.items()]

    def _principal(self, header: bytes | None) -> str | None:
        if header is None or header[:7].lower() != b"bearer ":
            return None
        presented = header[7:].strip()
        found = None
        for token, principal in self._tokens:  # every token is compared: constant time
            if hmac.compare_digest(presented, token):
                found = principal
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Authenticate HTTP requests; pass lifespan events through."""
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        header = dict(scope.get("headers") or []).get(b"authorization")
        principal = self._principal(header)
        if principal is None:
            body = json.dumps({"error": "unauthenticated", "message": "bearer token required"})
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"www-authenticate", b'Bearer realm="clearance-mcp-proxy"'),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body.encode()})
            return
        scope[PRINCIPAL_SCOPE_KEY] = principal
        await self._app(scope, receive, send)


def open_authority(config: ProxyConfig, home: Path | None) -> Authority:
    """The in-process gate of the home (``--home``, else the config's, else the default
    home) or, with ``gateway:``, a client of ``clearance serve``."""
    if config.gateway is not None:
        if home is not None:
            raise InputError("--home and a gateway in the proxy config exclude each other")
        key = read_secret(config.gateway.api_key_env, "gateway.api_key_env")
        return RemoteAuthority(config.gateway.url, key)
    return InProcessAuthority(home or config.home)


def http_tokens(config: ProxyConfig) -> dict[str, str]:
    """Token -> principal for the HTTP endpoint; InputError without any."""
    if not config.http_clients:
        raise InputError(
            f"{config.source}: the HTTP endpoint needs http.clients (a principal and the "
            "environment variable holding its bearer token); it never serves anonymous callers"
        )
    tokens: dict[str, str] = {}
    for client in config.http_clients:
        token = read_secret(client.token_env, f"http client {client.principal}")
        if len(token) < 16:
            raise InputError(f"the token in {client.token_env} is shorter than 16 characters")
        if token in tokens:
            raise InputError(f"{client.token_env}: the same token for two principals")
        tokens[token] = client.principal
    return tokens


async def serve_proxy(
    config: ProxyConfig,
    *,
    transport: Literal["stdio", "http"] = "stdio",
    host: str = "127.0.0.1",
    port: int = 8471,
    home: str | os.PathLike[str] | None = None,
    ready: Callable[[], None] | None = None,
) -> None:
    """Serve the proxy until the client goes away (stdio) or the server is stopped (HTTP).

    ``ready`` is called once upstreams are connected and the proxy is about to serve.
    A clearance :class:`~clearance.errors.Error`, or the ``SystemExit`` of a stop signal
    (see ``clearance mcp proxy``), raised inside the transports' task groups comes out as
    itself, not wrapped in an exception group.
    """
    try:
        await _serve(config, transport=transport, host=host, port=port, home=home, ready=ready)
    except BaseExceptionGroup as group:
        found = _first_error(group)
        if found is None:
            raise
        raise found from None


def _first_error(group: BaseExceptionGroup[BaseException]) -> Error | SystemExit | None:
    for exc in group.exceptions:
        if isinstance(exc, Error | SystemExit):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            nested = _first_error(exc)
            if nested is not None:
                return nested
    return None


async def _serve(
    config: ProxyConfig,
    *,
    transport: Literal["stdio", "http"],
    host: str,
    port: int,
    home: str | os.PathLike[str] | None,
    ready: Callable[[], None] | None,
) -> None:
    if transport == "stdio" and config.principal is None:
        raise InputError(f"{config.source}: principal is required to serve over stdio")
    tokens = http_tokens(config) if transport == "http" else {}
    authority = await anyio.to_thread.run_sync(
        open_authority, config, None if home is None else Path(home)
    )
    try:
        upstreams = Upstreams(config.servers, connect_timeout=config.limits.connect_timeout)
        async with upstreams.open():
            proxy = McpProxy(config, authority, upstreams.connected, transport)
            server = proxy.server()
            log.info(
                "clearance mcp proxy: %d tools from %d servers",
                len(proxy.routes),
                len(upstreams.connected),
            )
            if ready is not None:
                ready()
            if transport == "stdio":
                async with stdio_server() as (read_stream, write_stream):
                    await server.run(
                        read_stream, write_stream, server.create_initialization_options()
                    )
            else:
                await _serve_http(
                    BearerPrincipals(server.streamable_http_app(host=host), tokens), host, port
                )
    finally:
        with anyio.CancelScope(shield=True):  # also when stopping cancelled every task
            await anyio.to_thread.run_sync(authority.close)


async def _serve_http(app: Asgi, host: str, port: int) -> None:
    import uvicorn

    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", server_header=False, lifespan="on"
    )
    await uvicorn.Server(config).serve()


def run_proxy(
    config: ProxyConfig,
    *,
    transport: Literal["stdio", "http"] = "stdio",
    host: str = "127.0.0.1",
    port: int = 8471,
    home: str | os.PathLike[str] | None = None,
) -> None:
    """Blocking :func:`serve_proxy` on a new event loop (what ``clearance mcp proxy`` runs)."""
    anyio.run(lambda: serve_proxy(config, transport=transport, host=host, port=port, home=home))
