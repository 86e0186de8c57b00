"""Every bound of the remote SDK in one typed object (no magic numbers in the drivers).

Invariants: a :class:`RemoteSettings` is valid by construction (``ValueError``
otherwise), and none of its fields can make the client accept a grant it would
otherwise refuse: the leeway is capped by the contract's
:data:`~clearance._internal.limits.MAX_LEEWAY`, and retries only ever delay an
answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Final

from clearance._internal.limits import MAX_LEEWAY

MAX_LONG_POLL: Final[int] = 60
"""Longest ``wait`` the approvals endpoint accepts (docs/http-api.md)."""


@dataclass(frozen=True, slots=True)
class RemoteSettings:
    """Retries, back-off and polling of one client; every field has a working default."""

    timeout: float = 10.0
    """Seconds for one HTTP exchange (a long poll adds its own ``wait`` to this)."""
    report_attempts: int = 3
    """Tries to deliver an outcome before it is spooled (connection errors, 5xx, 429)."""
    report_backoff: float = 0.2
    """Seconds before the second try; doubled before each further one."""
    rate_limit_retries: int = 3
    """How often a 429 is retried (after its ``Retry-After``) before it is an error."""
    max_retry_after: float = 5.0
    """The longest ``Retry-After`` the client waits for; a longer one is an error at once."""
    min_poll_interval: float = 0.5
    """Seconds between two approval polls when the gateway answers at once (no busy loop)."""
    jwks_refetch_interval: float = 30.0
    """Least seconds between two JWKS fetches caused by unknown kids (the first is free)."""
    leeway: float = MAX_LEEWAY
    """Clock leeway of the local grant check, 0 to 5 seconds."""

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{spec.name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{spec.name} must be a finite number >= 0, got {value!r}")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be above 0 seconds, got {self.timeout!r}")
        if not isinstance(self.report_attempts, int) or self.report_attempts < 1:
            raise ValueError(
                f"report_attempts must be a whole number >= 1, got {self.report_attempts!r}"
            )
        if not isinstance(self.rate_limit_retries, int):
            raise ValueError("rate_limit_retries must be a whole number")
        if self.leeway > MAX_LEEWAY:
            raise ValueError(
                f"leeway must be within [0, {MAX_LEEWAY}] seconds, got {self.leeway!r}"
            )
