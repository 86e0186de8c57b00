"""The governance proxy: an MCP server whose tools are the upstreams' tools, governed.

Invariants:

* Only tools are offered (no resources, prompts or completions): the proxy governs tool
  calls, and a capability it forwarded unchecked would be a way around it.
* ``tools/list`` is the union of the upstream tools (:mod:`._catalog`) minus those the
  caller can never be allowed to call (:mod:`._listing`).
* ``tools/call`` is decided before anything is forwarded: an unknown tool, an
  unauthenticated caller, a tool the configuration marks ``untrusted_output`` that the
  bundle does not, a trace that cannot be opened, a denial, a pending approval, and any
  failure of the gate all answer with an ``isError`` result (:mod:`._results`), and the
  upstream never sees the call. An allowed call is forwarded once, and its result (or
  failure) is recorded in the ledger as the execution outcome before it is returned.
* One trace per client session, opened by the proxy (trusted code) at the session's
  first call, for the caller's principal only. Its mandate text is the
  ``_meta["clearance/mandate"]`` of that first call when the configuration allows it
  (the client application's copy of the user's message; never model output), else the
  configured text; bounds always come from the configuration. Sessions: stdio is one
  session; streamable HTTP sessions are told apart by ``Mcp-Session-Id``; a sessionless
  request (the 2026-07-28 revision) shares one trace per principal, so dropping the
  session never sheds a trace's taint or spend.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final, Literal

import anyio
import anyio.to_thread
import mcp.types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server

from clearance._internal.gate.traces import Trace
from clearance.errors import ApprovalRequired, Denied, Error, OutcomeUnrecorded
from clearance.integrations.mcp import _results as results
from clearance.integrations.mcp._authority import Authority
from clearance.integrations.mcp._catalog import Route, build_catalog
from clearance.integrations.mcp._config import ProxyConfig
from clearance.integrations.mcp._upstream import Upstream, UpstreamError

log = logging.getLogger("clearance.mcp")

PRINCIPAL_SCOPE_KEY: Final = "clearance.principal"
"""Where the HTTP front door puts the authenticated principal in the ASGI scope."""

Transport = Literal["stdio", "http"]
SessionKey = tuple[str, str]


class McpProxy:
    """The proxy's state: routes, the decision point, upstreams and the sessions' traces."""

    def __init__(
        self,
        config: ProxyConfig,
        authority: Authority,
        upstreams: Mapping[str, Upstream],
        transport: Transport,
    ) -> None:
        """Build the catalog; InputError on a name clash or an undeclared untrusted tool."""
        self.config = config
        self.authority = authority
        self.upstreams = dict(upstreams)
        self.transport = transport
        self.routes: dict[str, Route] = build_catalog(
            (u.config, u.tools) for u in self.upstreams.values()
        )
        self._traces: dict[SessionKey, Trace] = {}
        self._trace_lock = anyio.Lock()
        self._check_untrusted_declared()

    def _check_untrusted_declared(self) -> None:
        """Refuse to start when a tool marked untrusted here is not so in the bundle.

        The gate taints a trace from the bundle's tool registry, so a marker only in
        this file would taint nothing: the operator must declare it where it counts.
        """
        from clearance.errors import InputError

        missing = [
            r.action
            for r in self.routes.values()
            if r.untrusted_output and self.authority.declares_untrusted(r.action) is False
        ]
        if missing:
            listing = "\n".join(f"  {a}:\n    untrusted_output: true" for a in sorted(missing))
            raise InputError(
                f"{self.config.source}: tools marked untrusted_output are not so in the policy "
                f"bundle, so their results would not taint the trace. Add to the bundle:\n"
                f"tools:\n{listing}"
            )

    def server(self) -> Server[Any]:
        """The MCP server (tools only) that serves this proxy over any transport."""
        return Server(
            "clearance-mcp-proxy",
            version="1",
            instructions=(
                "Tools of other MCP servers, governed by clearance: each call is decided by "
                "policy before it is made. A result with isError and a 'Denied by policy' "
                "text was not made; do not retry it unchanged."
            ),
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
        )

    # -- who is calling ----------------------------------------------------------------

    def _principal(self, ctx: ServerRequestContext[Any, Any]) -> str | None:
        if self.transport == "stdio":
            return self.config.principal
        request = ctx.request
        scope = getattr(request, "scope", None)
        principal = scope.get(PRINCIPAL_SCOPE_KEY) if isinstance(scope, dict) else None
        return principal if isinstance(principal, str) else None

    def _session(self, ctx: ServerRequestContext[Any, Any], principal: str) -> SessionKey:
        if self.transport == "stdio":
            return (principal, "stdio")
        headers = getattr(ctx.request, "headers", None)
        session_id = headers.get("mcp-session-id") if headers is not None else None
        return (principal, session_id or "")

    # -- tools/list --------------------------------------------------------------------

    async def list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        """The upstream tools the caller may ever be allowed to call."""
        principal = self._principal(ctx)
        if principal is None:
            return types.ListToolsResult(tools=[])
        routes = list(self.routes.values())

        def visible() -> list[types.Tool]:
            return [r.offered() for r in routes if not self.authority.hidden(principal, r.action)]

        try:
            tools = await anyio.to_thread.run_sync(visible)
        except Exception:  # a bundle that cannot be read: list what may be called, decide later
            log.exception("tools/list: policy not readable; listing every tool")
            tools = [r.offered() for r in routes]
        return types.ListToolsResult(tools=tools)

    # -- tools/call --------------------------------------------------------------------

    async def call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        """Decide the call; forward it only when allowed; always answer with a result."""
        try:
            return await self._call(ctx, params)
        except Exception:  # never a protocol error, never an unchecked forward
            log.exception("tools/call %s: proxy failure", params.name)
            return results.refused("proxy-error", "The proxy failed; the call was not made.")

    async def _call(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        route = self.routes.get(params.name)
        if route is None:
            return results.refused("unknown-tool", f"No tool named {params.name!r}.")
        principal = self._principal(ctx)
        if principal is None:
            return results.refused("unauthenticated", "The caller is not authenticated.")
        meta: Mapping[str, Any] = params.meta or {}
        arguments = dict(params.arguments or {})
        intent = {
            "principal": principal,
            "action": route.action,
            "resource": route.resource,
            "purpose": route.purpose,
            "args": arguments,
        }
        if route.untrusted_output:
            declared = await anyio.to_thread.run_sync(
                self.authority.declares_untrusted, route.action
            )
            if declared is False:
                return results.refused(
                    "mcp-untrusted-undeclared",
                    f"{route.action} is marked untrusted_output in the proxy configuration but "
                    "not in the policy bundle; the call was not made.",
                )
        try:
            trace = await self._trace_for(ctx, principal, meta)
        except Error as exc:
            return results.refused("trace-unavailable", f"No trace for this session: {exc}")
        if trace is None:
            return results.refused("sessions-full", "The proxy holds too many sessions.")
        return await self._decide_and_forward(route, intent, trace, meta)

    async def _decide_and_forward(
        self, route: Route, intent: dict[str, Any], trace: Trace, meta: Mapping[str, Any]
    ) -> types.CallToolResult:
        upstream = self.upstreams[route.server]
        limits = self.config.limits
        arguments = intent["args"]

        def forward() -> dict[str, Any]:
            # Runs in the worker thread, only inside the gate's allow: the call goes
            # upstream on the event loop, and its JSON form is what the ledger records.
            result = anyio.from_thread.run(
                upstream.call_tool, route.upstream_tool, arguments, limits.call_timeout
            )
            return result.model_dump(mode="json", by_alias=True, exclude_none=True)

        approval_id = meta.get(results.APPROVAL_META)

        def decide() -> tuple[str, dict[str, Any]]:
            if isinstance(approval_id, str) and approval_id:
                return self.authority.run_approved(
                    approval_id, intent, limits.approval_wait, forward
                )
            return self.authority.run(intent, trace, limits.approval_wait, forward)

        try:
            request_id, answer = await anyio.to_thread.run_sync(decide)
        except ApprovalRequired as exc:
            return results.approval_pending(exc, limits.approval_wait)
        except Denied as exc:
            return results.denied(exc)
        except UpstreamError as exc:
            return results.refused("upstream-failed", f"The upstream server failed: {exc}")
        except OutcomeUnrecorded:
            return results.refused(
                "outcome-unrecorded",
                "The call was made, but its outcome could not be recorded; its result is withheld.",
            )
        except Error as exc:
            return results.refused(type(exc).__name__, f"Refused: {exc}")
        try:
            result = types.CallToolResult.model_validate(answer)
        except Exception:
            return results.refused("upstream-malformed", "The upstream answer is malformed.")
        return results.with_request(result, request_id)

    # -- traces ------------------------------------------------------------------------

    async def _trace_for(
        self, ctx: ServerRequestContext[Any, Any], principal: str, meta: Mapping[str, Any]
    ) -> Trace | None:
        """The session's trace, opened at its first call; None when the table is full."""
        key = self._session(ctx, principal)
        async with self._trace_lock:
            trace = self._traces.get(key)
            if trace is not None:
                return trace
            if len(self._traces) >= self.config.limits.sessions:
                return None
            mandate = self.config.mandate
            text = mandate.text
            offered = meta.get(results.MANDATE_META)
            if mandate.from_client and isinstance(offered, str) and offered.strip():
                text = offered
            trace = await anyio.to_thread.run_sync(
                self.authority.open_trace, text, mandate.bounds, principal
            )
            self._traces[key] = trace
            log.info("session %s of %s: trace %s", key[1] or "-", principal, trace.trace_id)
            return trace
