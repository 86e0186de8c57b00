"""What an API key is (docs/design.md §6): a name, a public id, scopes and one principal.

Invariants:

* An :class:`ApiKey` never holds its secret or the secret's hash, so no code path that
  has only an :class:`ApiKey` (a listing, a log line, :meth:`ApiKey.to_json`, an
  ``apikey`` ledger entry) can leak either.
* Every key has exactly one principal, with the intent's principal syntax
  (:data:`clearance._internal.intent.PRINCIPAL_PATTERN`): over HTTP the principal of a
  request is the key's, never the body's (docs/design.md §4 rule 10).
* Scopes are a non-empty subset of :data:`SCOPES`. ``admin`` allows every scope and
  ``orchestrator`` also allows ``agent`` (docs/http-api.md: an orchestrator may do
  everything an agent may); nothing else implies anything.
* The validators below are the only way names, scopes, principals and lifetimes get
  into a store; each raises :class:`~clearance.errors.InputError` saying what is allowed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Final

from clearance._internal.intent import PRINCIPAL_PATTERN
from clearance.errors import InputError

SCOPES: Final[frozenset[str]] = frozenset({"agent", "orchestrator", "approver", "auditor", "admin"})
"""Every scope a key may carry (docs/design.md §6, docs/http-api.md)."""

_IMPLIED: Final[dict[str, frozenset[str]]] = {
    "admin": SCOPES,
    "orchestrator": frozenset({"orchestrator", "agent"}),
}
"""What a scope allows besides itself."""

NAME_PATTERN: Final = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
NAME_RULE: Final = "use 1-64 of a-z 0-9 _ . - starting with a letter or digit"
PRINCIPAL_RULE: Final = "use 1-256 of A-Z a-z 0-9 _ . : @ / + - starting with a letter or digit"

MAX_EXPIRES_IN: Final[float] = 100 * 365.25 * 86400
"""Longest lifetime a key may be given (100 years); omit the expiry for a key without one."""


@dataclass(frozen=True)
class ApiKey:
    """One API key as stored, without its secret. Times are POSIX seconds."""

    name: str
    """Unique within a store, forever (a revoked key keeps its name): :data:`NAME_PATTERN`."""
    key_id: str
    """The public id embedded in the secret (``clk_<key_id>_…``), 16 hex digits."""
    scopes: frozenset[str]
    """A non-empty subset of :data:`SCOPES`."""
    principal: str
    """The identity requests made with this key are decided, voted and reported under."""
    created_at: float
    expires_at: float | None
    """None: the key does not expire (it can still be revoked)."""
    revoked_at: float | None
    last_used_at: float | None
    """When the key last authenticated, to within a minute (written at most once a minute)."""

    def allows(self, scope: str) -> bool:
        """Whether this key may act in ``scope``: it carries it, or ``admin``, or
        ``orchestrator`` when ``scope`` is ``agent``."""
        return any(scope == held or scope in _IMPLIED.get(held, ()) for held in self.scopes)

    def status(self, now: float) -> str:
        """``revoked``, ``expired`` or ``active`` at ``now`` (revocation wins)."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"

    def to_json(self) -> dict[str, Any]:
        """The key as a JSON object (scopes sorted); never a secret or a hash."""
        return {
            "name": self.name,
            "key_id": self.key_id,
            "scopes": sorted(self.scopes),
            "principal": self.principal,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
            "last_used_at": self.last_used_at,
        }


def check_name(name: object) -> str:
    """``name`` if it is a valid key name; InputError otherwise."""
    if type(name) is not str:
        raise InputError(f"API key name must be a string, got {type(name).__name__}")
    if NAME_PATTERN.fullmatch(name) is None:
        raise InputError(f"API key name {name[:80]!r} is invalid: {NAME_RULE}")
    return name


def check_scopes(scopes: object) -> frozenset[str]:
    """``scopes`` as a frozenset if it is a non-empty collection of known scopes."""
    known = ", ".join(sorted(SCOPES))
    if isinstance(scopes, str | bytes) or not isinstance(scopes, Collection):
        # A bare "agent" is a collection of letters: refuse it rather than guess.
        raise InputError(f"scopes must be a list of scope names ({known}), not {scopes!r}")
    chosen = list(scopes)
    if not chosen:
        raise InputError(f"an API key needs at least one scope: {known}")
    for scope in chosen:
        if type(scope) is not str or scope not in SCOPES:
            raise InputError(f"unknown scope {scope!r}: the scopes are {known}")
    return frozenset(chosen)


def check_principal(principal: object) -> str:
    """``principal`` if it is a valid principal id (the intent's syntax); InputError otherwise."""
    if type(principal) is not str:
        raise InputError(
            f"an API key needs a principal (e.g. agent:billing-bot), got {type(principal).__name__}"
        )
    if PRINCIPAL_PATTERN.fullmatch(principal) is None:
        raise InputError(f"principal {principal[:80]!r} is invalid: {PRINCIPAL_RULE}")
    return principal


def check_expires_in(expires_in: object) -> float | None:
    """``expires_in`` seconds as a float (None: no expiry); InputError unless positive."""
    if expires_in is None:
        return None
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
        raise InputError(f"expires_in must be a number of seconds, got {expires_in!r}")
    seconds = float(expires_in)
    if not math.isfinite(seconds) or seconds <= 0:
        raise InputError(f"expires_in must be a positive number of seconds, got {expires_in!r}")
    if seconds > MAX_EXPIRES_IN:
        raise InputError(
            f"expires_in {seconds:g} s is longer than 100 years; omit it for a key "
            "that does not expire"
        )
    return seconds
