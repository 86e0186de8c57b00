"""The MCP governance proxy: upstream MCP servers' tools, each call decided by clearance.

``clearance mcp proxy --config proxy.yaml`` (or :func:`run_proxy`) fronts one or more
MCP servers (a command over stdio, or a URL over streamable HTTP) and serves their tools
to MCP clients over stdio or streamable HTTP, with the official ``mcp`` SDK
(``pip install 'clearance[mcp]'``):

* ``tools/list``: the union of the upstream tools, named ``<server>__<tool>`` (or as
  configured), without those the caller can never be allowed to call;
* ``tools/call``: an intent (action ``mcp.<server>.<tool>`` or as configured, the call's
  arguments as ``args``, resource and purpose from the configuration, the caller's
  principal, the session's trace), decided before anything is forwarded; a denial is a
  tool result with ``isError`` and the reasons; an allowed call's result is recorded in
  the ledger as its execution outcome.

Invariants are stated in the private modules: :mod:`._config` (the file),
:mod:`._upstream` (connections), :mod:`._catalog` (names and intents),
:mod:`._listing` (what is hidden), :mod:`._authority` (gate or gateway),
:mod:`._proxy` (list and call), :mod:`._serve` (transports and authentication).
"""

from __future__ import annotations

from clearance.integrations.mcp._config import ProxyConfig, load_config
from clearance.integrations.mcp._serve import run_proxy, serve_proxy

__all__ = ["ProxyConfig", "load_config", "run_proxy", "serve_proxy"]
