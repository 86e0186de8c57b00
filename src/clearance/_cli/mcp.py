"""``clearance mcp``: the MCP governance proxy (:mod:`clearance.integrations.mcp`).

A missing ``mcp`` SDK is an install hint, not a traceback. Over stdio the proxy's
standard output is the MCP channel: everything else (logs, the start line) goes to
standard error.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from clearance._cli.common import HomeOption
from clearance.errors import InputError

mcp_app = typer.Typer(
    help="Govern MCP servers: a proxy that decides every tool call before it is made.",
    no_args_is_help=True,
)

TRANSPORTS = ("stdio", "http")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


@mcp_app.command("proxy")
def proxy(
    config: Annotated[
        Path,
        typer.Option(
            "--config", "-c", help="The proxy configuration (proxy.yaml).", show_default=False
        ),
    ],
    transport: Annotated[
        str, typer.Option("--transport", help="Serve clients over stdio or http (streamable HTTP).")
    ] = "stdio",
    host: Annotated[str, typer.Option("--host", help="HTTP: address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="HTTP: TCP port.")] = 8471,
    home: HomeOption = None,
    log_level: Annotated[
        str, typer.Option("--log-level", help="critical, error, warning, info or debug.")
    ] = "warning",
) -> None:
    """Front the MCP servers of --config and serve their tools, each call decided by policy.

    tools/list hides what the caller can never be allowed to call; tools/call is decided
    (and logged) before it is forwarded, and a denial is a tool result with isError and
    the reasons. Over stdio the caller is the config's `principal`; over HTTP a bearer
    token of `http.clients`. Decisions use the clearance home (--home, the config's
    `home`, $CLEARANCE_HOME or ./.clearance) or the config's `gateway`.
    """
    try:
        from clearance.integrations.mcp import load_config, run_proxy
    except ImportError as exc:  # the extra is not installed
        raise InputError(
            f"the MCP proxy needs the mcp SDK ({exc.name or exc}): pip install 'clearance[mcp]'"
        ) from None
    if transport not in TRANSPORTS:
        raise InputError(f"--transport must be one of {', '.join(TRANSPORTS)}")
    if log_level not in LOG_LEVELS:
        raise InputError(f"--log-level must be one of {', '.join(LOG_LEVELS)}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(name)s: %(message)s"))
    root = logging.getLogger("clearance")
    root.addHandler(handler)
    root.setLevel(log_level.upper())
    loaded = load_config(config)
    where = f"http://{host}:{port}/mcp" if transport == "http" else "stdio"
    sys.stderr.write(
        f"clearance mcp proxy: {len(loaded.servers)} upstream servers, serving {where}\n"
    )
    # uvicorn stops gracefully on SIGTERM, then raises it again for the handler that was
    # there before; the default one would kill the process before the gate is closed (its
    # last checkpoint signed) and atexit hooks run. Over stdio, a client that gives up
    # waiting sends SIGTERM too. Either way: a normal exit, after the `finally`s.
    signal.signal(signal.SIGTERM, _stopped)
    run_proxy(
        loaded,
        transport="http" if transport == "http" else "stdio",
        host=host,
        port=port,
        home=home,
    )


def _stopped(signum: int, frame: object) -> None:
    """SIGTERM: exit normally (status 0), unwinding through the proxy's cleanup."""
    raise SystemExit(0)
