"""The proxy's configuration file (``proxy.yaml``), validated into frozen dataclasses.

Invariants:

* Unknown keys are refused anywhere, naming the file, line and the allowed keys (the
  strict YAML loader of the policy bundles: no aliases, no duplicate keys).
* Exactly one way to decide: a clearance ``home`` (the in-process gate) or a
  ``gateway`` (``clearance serve`` through :class:`clearance.Client`).
* Secrets never sit in the file: bearer tokens and API keys are named by the
  environment variable that holds them (``token_env``, ``api_key_env``), read at start.
* Limits are explicit and bounded (:class:`ProxyLimits`): the approval wait, the upstream
  call timeout, the number of client sessions.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from clearance._internal.intent import ACTION_PATTERN, PRINCIPAL_PATTERN
from clearance._internal.policy.yaml_loader import SourceChecker, describe_kind, parse_yaml
from clearance.errors import InputError, PolicyError

MAX_CONFIG_BYTES: Final = 1 << 20
SERVER_NAME: Final = re.compile(r"[a-z][a-z0-9_-]{0,31}")
EXPOSED_NAME: Final = re.compile(r"[A-Za-z0-9_.-]{1,128}")
"""What MCP allows in a tool name (2025-11-25: 1-128 of ``A-Za-z0-9_-.``)."""

_TOP_KEYS: Final = (
    "home",
    "gateway",
    "principal",
    "mandate",
    "limits",
    "http",
    "servers",
)
_SERVER_KEYS: Final = (
    "command",
    "args",
    "env",
    "cwd",
    "url",
    "headers_env",
    "resource",
    "purpose",
    "untrusted_output",
    "tools",
)
_TOOL_KEYS: Final = ("name", "action", "resource", "purpose", "untrusted_output")
_MANDATE_KEYS: Final = ("text", "bounds", "from_client")
_LIMIT_KEYS: Final = ("approval_wait", "call_timeout", "connect_timeout", "sessions")
_GATEWAY_KEYS: Final = ("url", "api_key_env")
_HTTP_KEYS: Final = ("clients",)
_CLIENT_KEYS: Final = ("principal", "token_env")


@dataclass(frozen=True)
class ProxyLimits:
    """Bounds of the proxy, in one place."""

    approval_wait: float = 30.0
    """Seconds a call that needs an approval waits for it before answering with its id."""
    call_timeout: float = 60.0
    """Seconds an upstream tool call may take; then the call ends as an error."""
    connect_timeout: float = 30.0
    """Seconds to connect to an upstream server and list its tools at start."""
    sessions: int = 10_000
    """Client sessions (each with its trace) held at once; a new one beyond is refused."""


@dataclass(frozen=True)
class ToolConfig:
    """Overrides for one upstream tool."""

    name: str | None = None
    """The name clients see (default ``<server>__<tool>``)."""
    action: str | None = None
    """The intent's action (default ``mcp.<server>.<tool>``)."""
    resource: str | None = None
    purpose: str | None = None
    untrusted_output: bool | None = None
    """None: as the server says."""


@dataclass(frozen=True)
class ServerConfig:
    """One upstream MCP server: a command (stdio) or a URL (streamable HTTP)."""

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] | None = None
    cwd: str | None = None
    url: str | None = None
    headers_env: dict[str, str] = field(default_factory=dict)
    """HTTP header name -> environment variable holding its value (the proxy's own
    upstream credentials; a client's credentials are never forwarded)."""
    resource: str | None = None
    purpose: str | None = None
    untrusted_output: bool = False
    tools: dict[str, ToolConfig] = field(default_factory=dict)


@dataclass(frozen=True)
class MandateConfig:
    """The mandate of each session's trace."""

    text: str = ""
    bounds: dict[str, Any] | None = None
    from_client: bool = True
    """Take the text from the session's first ``tools/call`` ``_meta["clearance/mandate"]``
    (the user's message, supplied by the client application, never by the model).
    Bounds always come from this file: a client cannot widen them."""


@dataclass(frozen=True)
class GatewayConfig:
    """Decide through ``clearance serve`` instead of an in-process gate."""

    url: str
    api_key_env: str


@dataclass(frozen=True)
class HttpClient:
    """A caller of the proxy's HTTP endpoint: a bearer token and its principal."""

    principal: str
    token_env: str


@dataclass(frozen=True)
class ProxyConfig:
    """A validated ``proxy.yaml``. See :func:`load_config`."""

    servers: tuple[ServerConfig, ...]
    principal: str | None = None
    home: Path | None = None
    gateway: GatewayConfig | None = None
    mandate: MandateConfig = MandateConfig()
    limits: ProxyLimits = ProxyLimits()
    http_clients: tuple[HttpClient, ...] = ()
    source: str = "proxy.yaml"


def load_config(path: str | os.PathLike[str]) -> ProxyConfig:
    """Read and validate a proxy configuration file; InputError naming the problem.

    Relative ``home`` and ``cwd`` paths are resolved against the file's directory.
    """
    file = Path(path)
    try:
        with file.open("rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise InputError(f"proxy config {file}: cannot read it ({exc.strerror or exc})") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise InputError(f"proxy config {file}: larger than {MAX_CONFIG_BYTES} bytes")
    try:
        return parse_config(raw.decode("utf-8"), str(file), base=file.parent)
    except UnicodeDecodeError as exc:
        raise InputError(f"proxy config {file}: not UTF-8 (byte {exc.start})") from None


def parse_config(text: str, name: str, *, base: Path) -> ProxyConfig:
    """Validate the YAML ``text`` of a proxy configuration (``name`` appears in errors)."""
    try:
        loaded = parse_yaml(text, name)
        return _Parser(SourceChecker(loaded), base).config(loaded.value)
    except PolicyError as exc:  # the strict YAML loader speaks of policies; this is input
        raise InputError(str(exc)) from None


class _Parser:
    def __init__(self, check: SourceChecker, base: Path) -> None:
        self.check = check
        self.base = base

    def config(self, value: Any) -> ProxyConfig:
        top = self.check.mapping(value, "proxy config", _TOP_KEYS)
        servers_map = self.check.mapping(top.get("servers"), "servers")
        if not servers_map:
            self.check.fail("servers", "name at least one upstream server")
        servers = tuple(self.server(str(k), v, servers_map) for k, v in servers_map.items())
        home = self.optional_str(top, "home", "home")
        gateway = self.gateway(top.get("gateway"))
        if home is not None and gateway is not None:
            self.check.fail("proxy config", "give either home (in-process) or gateway, not both")
        principal = self.optional_str(top, "principal", "principal")
        if principal is not None and not PRINCIPAL_PATTERN.fullmatch(principal):
            self.check.fail("principal", f"{principal!r} is not a valid principal id", top)
        if gateway is not None and any(s.untrusted_output for s in servers) | any(
            t.untrusted_output for s in servers for t in s.tools.values()
        ):
            self.check.fail(
                "servers",
                "untrusted_output cannot be checked against a remote gateway's bundle: "
                "declare those tools in the gateway's policy bundle (tools: <action>: "
                "{untrusted_output: true}) and remove the markers here",
            )
        return ProxyConfig(
            servers=servers,
            principal=principal,
            home=None if home is None else (self.base / home),
            gateway=gateway,
            mandate=self.mandate(top.get("mandate")),
            limits=self.limits(top.get("limits")),
            http_clients=self.http(top.get("http")),
            source=self.check.name,
        )

    def server(self, name: str, value: Any, container: object) -> ServerConfig:
        path = f"servers.{name}"
        if not SERVER_NAME.fullmatch(name):
            self.check.fail(path, "a server name is [a-z][a-z0-9_-]{0,31}", container, name)
        entry = self.check.mapping(value, path, _SERVER_KEYS)
        command = self.optional_str(entry, "command", path)
        url = self.optional_str(entry, "url", path)
        if (command is None) == (url is None):
            self.check.fail(path, "give exactly one of command (stdio) or url (HTTP)", entry)
        if url is not None and not url.startswith(("http://", "https://")):
            self.check.fail(f"{path}.url", "must be an http:// or https:// URL", entry, "url")
        if command is None:
            for key in ("args", "env", "cwd"):
                if key in entry:
                    self.check.fail(f"{path}.{key}", "only for a command server", entry, key)
        elif "headers_env" in entry:
            self.check.fail(f"{path}.headers_env", "only for a url server", entry, "headers_env")
        tools_map = self.check.mapping(entry.get("tools"), f"{path}.tools")
        cwd = self.optional_str(entry, "cwd", path)
        return ServerConfig(
            name=name,
            command=command,
            args=tuple(self.str_list(entry.get("args"), f"{path}.args")),
            env=self.str_map(entry, "env", path) if "env" in entry else None,
            cwd=None if cwd is None else str(self.base / cwd),
            url=url,
            headers_env=self.str_map(entry, "headers_env", path),
            resource=self.optional_str(entry, "resource", path),
            purpose=self.optional_str(entry, "purpose", path),
            untrusted_output=self.flag(entry, "untrusted_output", path, False),
            tools={
                str(tool): self.tool(f"{path}.tools.{tool}", spec)
                for tool, spec in tools_map.items()
            },
        )

    def tool(self, path: str, value: Any) -> ToolConfig:
        entry = self.check.mapping(value, path, _TOOL_KEYS)
        exposed = self.optional_str(entry, "name", path)
        if exposed is not None and not EXPOSED_NAME.fullmatch(exposed):
            self.check.fail(f"{path}.name", "a tool name is 1-128 of A-Za-z0-9_.-", entry, "name")
        action = self.optional_str(entry, "action", path)
        if action is not None and not ACTION_PATTERN.fullmatch(action):
            self.check.fail(f"{path}.action", f"{action!r} is not a valid action", entry, "action")
        untrusted = entry.get("untrusted_output")
        if untrusted is not None and not isinstance(untrusted, bool):
            self.check.fail(f"{path}.untrusted_output", "must be true or false", entry)
        return ToolConfig(
            name=exposed,
            action=action,
            resource=self.optional_str(entry, "resource", path),
            purpose=self.optional_str(entry, "purpose", path),
            untrusted_output=untrusted,
        )

    def mandate(self, value: Any) -> MandateConfig:
        entry = self.check.mapping(value, "mandate", _MANDATE_KEYS)
        bounds = entry.get("bounds")
        if bounds is not None:
            bounds = self.check.json(
                self.check.mapping(bounds, "mandate.bounds"), "bounds", entry, "bounds"
            )
        return MandateConfig(
            text=self.optional_str(entry, "text", "mandate") or "",
            bounds=bounds,
            from_client=self.flag(entry, "from_client", "mandate", True),
        )

    def limits(self, value: Any) -> ProxyLimits:
        entry = self.check.mapping(value, "limits", _LIMIT_KEYS)
        default = ProxyLimits()
        bounds = {"approval_wait": 3600.0, "call_timeout": 3600.0, "connect_timeout": 600.0}
        seconds: dict[str, float] = {}
        for key, upper in bounds.items():
            raw = entry.get(key, getattr(default, key))
            if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not 0 <= raw <= upper:
                self.check.fail(f"limits.{key}", f"seconds from 0 to {upper:g}", entry, key)
            seconds[key] = float(raw)
        sessions = entry.get("sessions", default.sessions)
        if (
            isinstance(sessions, bool)
            or not isinstance(sessions, int)
            or not 1 <= sessions <= 1_000_000
        ):
            self.check.fail("limits.sessions", "an integer from 1 to 1000000", entry, "sessions")
        return ProxyLimits(sessions=sessions, **seconds)

    def gateway(self, value: Any) -> GatewayConfig | None:
        if value is None:
            return None
        entry = self.check.mapping(value, "gateway", _GATEWAY_KEYS)
        url = self.optional_str(entry, "url", "gateway")
        key_env = self.optional_str(entry, "api_key_env", "gateway")
        if url is None or key_env is None:
            self.check.fail("gateway", "needs url and api_key_env", entry)
        return GatewayConfig(url=url, api_key_env=key_env)

    def http(self, value: Any) -> tuple[HttpClient, ...]:
        entry = self.check.mapping(value, "http", _HTTP_KEYS)
        clients = entry.get("clients") or []
        if not isinstance(clients, list):
            self.check.fail(
                "http.clients", f"must be a list, found {describe_kind(clients)}", entry
            )
        result = []
        for index, item in enumerate(clients):
            path = f"http.clients[{index}]"
            client = self.check.mapping(item, path, _CLIENT_KEYS)
            principal = self.optional_str(client, "principal", path)
            token_env = self.optional_str(client, "token_env", path)
            if principal is None or token_env is None:
                self.check.fail(path, "needs principal and token_env", client)
            if not PRINCIPAL_PATTERN.fullmatch(principal):
                self.check.fail(f"{path}.principal", f"{principal!r} is not a principal id", client)
            result.append(HttpClient(principal=principal, token_env=token_env))
        return tuple(result)

    # -- scalars -------------------------------------------------------------------------

    def optional_str(self, entry: dict[str, Any], key: str, path: str) -> str | None:
        value = entry.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            self.check.fail(f"{path}.{key}", "must be a non-empty string", entry, key)
        return value

    def flag(self, entry: dict[str, Any], key: str, path: str, default: bool) -> bool:
        value = entry.get(key, default)
        if not isinstance(value, bool):
            self.check.fail(f"{path}.{key}", "must be true or false", entry, key)
        return value

    def str_list(self, value: Any, path: str) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.check.fail(path, "must be a list of strings")
        return list(value)

    def str_map(self, entry: dict[str, Any], key: str, path: str) -> dict[str, str]:
        value = self.check.mapping(entry.get(key), f"{path}.{key}")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            self.check.fail(f"{path}.{key}", "must map strings to strings", entry, key)
        return dict(value)


def read_secret(variable: str, what: str) -> str:
    """The value of the environment variable ``variable``; InputError when unset or empty."""
    value = os.environ.get(variable, "")
    if not value:
        raise InputError(f"{what}: the environment variable {variable} is not set")
    return value
