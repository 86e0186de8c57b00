"""The ``server:`` section of ``clearance.yaml``: the runtime API's limits, typed and checked.

Invariants (the style of :mod:`clearance._internal.limits`):

* A :class:`ServerSettings` is valid by construction; ``__post_init__`` checks every
  field against its bound and raises ``ValueError`` (programmer misuse).
  :func:`parse_server_settings` reads the YAML mapping and reports a bad value as
  :class:`~clearance.errors.InputError` naming the file and the key.
* Every limit is finite and positive: there is no setting that switches the body limit
  or the rate limit off (a deployment that wants more raises the number).

This module imports nothing heavy, so :mod:`clearance._internal.home` can read the
settings without loading the web framework.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from clearance.errors import InputError

MAX_BODY_CEILING: Final[int] = 16 << 20
"""Largest request body a setting allows (bytes): a whole policy bundle fits well below it."""
MAX_REPORT_WINDOW: Final[float] = 7 * 86_400.0
"""Longest time after a grant's expiry that its outcome report is still accepted."""


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Limits of ``clearance serve`` (``server:`` in ``clearance.yaml``); all have defaults."""

    max_body: int = 64 * 1024
    """Largest request body in bytes (larger: 413); 1024 to 16 MiB."""
    rate_per_second: float = 100.0
    """Requests per second each API key may make on average (``rate_limit.per_second``)."""
    rate_burst: int = 200
    """Requests an idle API key may make at once (``rate_limit.burst``)."""
    report_window: float = 3600.0
    """Seconds after a grant's expiry that its outcome may still be reported (late reports)."""
    sweep_interval: float = 5.0
    """Seconds between two passes that expire pending approvals."""
    console_session_idle: float = 1800.0
    """Seconds a console session lives without a request (``console.session_idle``)."""
    console_session_max: float = 12 * 3600.0
    """Seconds a console session lives at most, however active (``console.session_max``)."""
    console_public_health: bool = True
    """Whether the console's health page is readable without logging in
    (``console.public_health``)."""

    def __post_init__(self) -> None:
        problem = _problem(self)
        if problem is not None:
            raise ValueError(problem)

    def overrides(self) -> dict[str, Any]:
        """The YAML mapping of the fields that differ from the defaults (empty: none)."""
        out: dict[str, Any] = {}
        default = DEFAULT_SERVER_SETTINGS
        for name in ("max_body", "report_window", "sweep_interval"):
            if getattr(self, name) != getattr(default, name):
                out[name] = getattr(self, name)
        if (self.rate_per_second, self.rate_burst) != (default.rate_per_second, default.rate_burst):
            out["rate_limit"] = {"per_second": self.rate_per_second, "burst": self.rate_burst}
        console = {
            yaml_key: getattr(self, f"console_{yaml_key}")
            for yaml_key in _CONSOLE_KEYS
            if getattr(self, f"console_{yaml_key}") != getattr(default, f"console_{yaml_key}")
        }
        if console:
            out["console"] = console
        return out


def _problem(settings: ServerSettings) -> str | None:
    """Why ``settings`` is out of bounds, naming the YAML key, or None."""
    max_body = settings.max_body
    if type(max_body) is not int or not 1024 <= max_body <= MAX_BODY_CEILING:
        return f"'max_body' must be whole bytes from 1024 to {MAX_BODY_CEILING}"
    if not _number(settings.rate_per_second) or not 0 < settings.rate_per_second <= 1e6:
        return "'rate_limit.per_second' must be a number above 0, at most 1000000"
    burst = settings.rate_burst
    if type(burst) is not int or not 1 <= burst <= 10**7:
        return "'rate_limit.burst' must be a whole number of requests from 1 to 10000000"
    window = settings.report_window
    if not _number(window) or not 0 <= window <= MAX_REPORT_WINDOW:
        return f"'report_window' must be a number of seconds from 0 to {MAX_REPORT_WINDOW:g}"
    sweep = settings.sweep_interval
    if not _number(sweep) or not 0.05 <= sweep <= 300:
        return "'sweep_interval' must be a number of seconds from 0.05 to 300"
    idle, longest = settings.console_session_idle, settings.console_session_max
    if not _number(idle) or not 60 <= idle <= 86_400:
        return "'console.session_idle' must be a number of seconds from 60 to 86400"
    if not _number(longest) or not idle <= longest <= 30 * 86_400:
        return "'console.session_max' must be a number of seconds from session_idle to 2592000"
    if type(settings.console_public_health) is not bool:
        return "'console.public_health' must be true or false"
    return None


DEFAULT_SERVER_SETTINGS: Final = ServerSettings()
SERVER_KEYS: Final[frozenset[str]] = frozenset(
    {"max_body", "rate_limit", "report_window", "sweep_interval", "console"}
)
"""The keys of the ``server:`` mapping."""
_RATE_KEYS: Final[frozenset[str]] = frozenset({"per_second", "burst"})
_CONSOLE_KEYS: Final[tuple[str, ...]] = ("session_idle", "session_max", "public_health")
"""The keys of ``server.console``; each is the field ``console_<key>``."""


def parse_server_settings(raw: object, where: str) -> ServerSettings:
    """The :class:`ServerSettings` of a ``server:`` mapping (None: every default).

    InputError names ``where`` and the key for an unknown key or a bad value.
    """
    if raw is None:
        return DEFAULT_SERVER_SETTINGS
    if not isinstance(raw, Mapping):
        raise InputError(f"{where}: 'server' must be a mapping")
    unknown = set(raw) - SERVER_KEYS
    if unknown:
        raise InputError(
            f"{where}: unknown server settings {sorted(map(str, unknown))}; "
            f"allowed: {sorted(SERVER_KEYS)}"
        )
    values: dict[str, Any] = {
        name: raw[name] for name in ("max_body", "report_window", "sweep_interval") if name in raw
    }
    rate = raw.get("rate_limit")
    if rate is not None:
        if not isinstance(rate, Mapping):
            raise InputError(
                f"{where}: 'server.rate_limit' must be a mapping with per_second, burst"
            )
        unknown = set(rate) - _RATE_KEYS
        if unknown:
            raise InputError(
                f"{where}: unknown keys {sorted(map(str, unknown))} in 'server.rate_limit'; "
                "allowed: burst, per_second"
            )
        if "per_second" in rate:
            values["rate_per_second"] = rate["per_second"]
        if "burst" in rate:
            values["rate_burst"] = rate["burst"]
    console = raw.get("console")
    if console is not None:
        if not isinstance(console, Mapping):
            raise InputError(f"{where}: 'server.console' must be a mapping")
        unknown = set(console) - set(_CONSOLE_KEYS)
        if unknown:
            raise InputError(
                f"{where}: unknown keys {sorted(map(str, unknown))} in 'server.console'; "
                f"allowed: {', '.join(sorted(_CONSOLE_KEYS))}"
            )
        values.update({f"console_{key}": value for key, value in console.items()})
    try:
        return ServerSettings(**values)
    except ValueError as exc:
        raise InputError(f"{where}: server: {exc}, got {_shown(values, str(exc))}") from None


def _shown(values: Mapping[str, Any], problem: str) -> str:
    """The offending value for a message (the key is the first quoted name in ``problem``)."""
    key = problem.split("'")[1]
    name = {"rate_limit.per_second": "rate_per_second", "rate_limit.burst": "rate_burst"}.get(
        key, key.replace("console.", "console_")
    )
    return repr(values.get(name))
