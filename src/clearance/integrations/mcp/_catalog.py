"""The tools the proxy offers: each upstream tool, its exposed name and its intent.

Invariants:

* An exposed name maps to exactly one (server, upstream tool); two tools that would
  share a name refuse to start (a call must never reach a tool it was not decided for).
* Defaults: exposed name ``<server>__<tool>``, action ``mcp.<server>.<tool>``; the tool's
  entry in the proxy configuration overrides name, action, resource, purpose and
  ``untrusted_output`` (else the server's).
* An upstream tool whose default name or action is not valid (MCP's name alphabet,
  clearance's action pattern) and has no override is left out and logged: it can be
  given a name and an action in the configuration.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import mcp.types as types

from clearance._internal.intent import ACTION_PATTERN
from clearance.errors import InputError
from clearance.integrations.mcp._config import EXPOSED_NAME, ServerConfig, ToolConfig

log = logging.getLogger("clearance.mcp")


@dataclass(frozen=True)
class Route:
    """One offered tool: where it goes upstream and what intent a call becomes."""

    exposed: str
    server: str
    upstream_tool: str
    action: str
    resource: str | None
    purpose: str | None
    untrusted_output: bool
    tool: types.Tool
    """The upstream's definition, offered under :attr:`exposed`."""

    def offered(self) -> types.Tool:
        """The tool definition clients see (the upstream's, renamed)."""
        return self.tool.model_copy(update={"name": self.exposed})


def build_catalog(listed: Iterable[tuple[ServerConfig, Iterable[types.Tool]]]) -> dict[str, Route]:
    """Routes by exposed name for every server's listed tools; InputError on a name clash."""
    routes: dict[str, Route] = {}
    for server, tools in listed:
        for tool in tools:
            route = _route(server, tool, server.tools.get(tool.name, ToolConfig()))
            if route is None:
                continue
            clash = routes.get(route.exposed)
            if clash is not None:
                raise InputError(
                    f"two upstream tools would both be offered as {route.exposed!r} "
                    f"({clash.server}/{clash.upstream_tool} and {server.name}/{tool.name}): "
                    f"give one a name under servers.{server.name}.tools.{tool.name}.name"
                )
            routes[route.exposed] = route
    return routes


def _route(server: ServerConfig, tool: types.Tool, override: ToolConfig) -> Route | None:
    exposed = override.name or f"{server.name}__{tool.name}"
    action = override.action or f"mcp.{server.name}.{tool.name}"
    if not EXPOSED_NAME.fullmatch(exposed) or not ACTION_PATTERN.fullmatch(action):
        log.warning(
            "upstream %s: tool %r left out: name it under servers.%s.tools (name, action)",
            server.name,
            tool.name,
            server.name,
        )
        return None
    untrusted = override.untrusted_output
    return Route(
        exposed=exposed,
        server=server.name,
        upstream_tool=tool.name,
        action=action,
        resource=override.resource or server.resource,
        purpose=override.purpose or server.purpose,
        untrusted_output=server.untrusted_output if untrusted is None else untrusted,
        tool=tool,
    )
