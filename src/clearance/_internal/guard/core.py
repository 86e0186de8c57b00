"""The grant guard's decision: does this HTTP request carry a grant for exactly itself?

A tool service declares which routes it protects and what action each one is; for a
request to a protected route the guard rebuilds the intent the request stands for
and verifies the presented grant against it:

* ``principal`` = the grant's ``sub``, ``trace_id`` = its ``trc``, ``parent_id`` = its
  ``par`` (read unverified, then bound by the signed digest: a forged value only makes
  the digest differ);
* ``action`` = the route's, ``resource`` = the route's (from its path parameters);
* ``args`` = the JSON object in the body (empty body: ``{}``), ``purpose`` = the
  ``Clearance-Purpose`` header (:mod:`.headers`), ``input`` = null;

then :func:`~clearance._internal.grants.token.verify_grant` with the gateway's keys,
issuer and audience, and the durable replay store, which takes the ``jti`` only when
everything else passed.

Invariants:

* Fail closed: any failure — no or several grants, a body that is not a JSON object or
  over the limit, an intent that does not validate, any grant check — is a
  :class:`Refused` with the precise reason, and the handler does not run. The
  caller is told only ``invalid_grant`` (no error oracle); the reason goes to the
  gateway's log (a ``rejected`` execution entry) when a gateway is configured, and to
  the ``clearance.guard`` logger at INFO either way.
* The guard is configured once and never switched off: there is no flag that lets a
  protected route through without a grant.
* Time is read only by the outermost call (:meth:`GrantGuard.admit` takes ``now``).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from clearance._internal import strict_json
from clearance._internal.grants.token import GrantClaims, peek_claims, verify_grant
from clearance._internal.guard.headers import (
    HeaderProblem,
    as_pairs,
    presented_grant,
    presented_purpose,
)
from clearance._internal.guard.routes import ResourceOf, RouteTable, ToolRoute
from clearance._internal.intent import Intent
from clearance._internal.limits import MAX_LEEWAY
from clearance._internal.remote.jwks import JwksCache
from clearance.errors import InputError, InvalidGrant

if TYPE_CHECKING:
    import httpx

    from clearance._internal.grants.jti_store import ReplayGuard
    from clearance._internal.guard.handler import GuardedHandler
    from clearance._internal.guard.reporting import GuardReporter

R = TypeVar("R")

log = logging.getLogger("clearance.guard")

DEFAULT_MAX_BODY: Final[int] = 64 * 1024
"""Largest request body a guard buffers (the intent's args are at most 64 KiB canonical)."""
MAX_REASON_CHARS: Final[int] = 500
"""Longest refusal reason a report carries (the contract's bound)."""
JWKS_REFETCH_INTERVAL: Final[float] = 30.0
"""Least seconds between two JWKS fetches caused by unknown kids."""


@dataclass(frozen=True)
class Admitted:
    """A request whose grant verified for exactly the intent rebuilt from it."""

    claims: GrantClaims
    intent: Intent
    grant: str


@dataclass(frozen=True)
class Refused:
    """A request the handler must not see, and why (for the log only)."""

    reason: str
    action: str
    grant: str | None
    intent_digest: str | None
    request_id: str | None

    def report(self, executor: str) -> dict[str, Any]:
        """The refusal report of ``POST /v1/executions`` (docs/http-api.md)."""
        return {
            "status": "rejected",
            "reason": self.reason[:MAX_REASON_CHARS],
            "action": self.action,
            "grant": self.grant,
            "intent_digest": self.intent_digest,
            "executor": executor,
        }


def parse_args(body: bytes) -> dict[str, Any]:
    """The intent's args from a request body (empty: ``{}``); InputError if not an object."""
    if not body.strip():
        return {}
    try:
        value = strict_json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InputError(f"the body is not strict JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InputError(f"the body is a JSON {type(value).__name__}, not an object")
    return value


class GrantGuard:
    """A tool service's grant checks: the routes it protects and whom it trusts.

    ``routes`` maps ``(method, path)`` to an action or a :class:`ToolRoute`.
    ``issuer`` and ``audience`` are the gateway's ``issuer`` and ``audience`` settings.
    Keys: ``keys`` (``keys_from_jwks(...)``) and/or ``jwks_url`` (fetched when needed,
    cached, refetched on an unknown kid); with neither, ``gateway_url`` +
    ``/.well-known/jwks.json``. ``replay`` is the durable replay store, or a path
    for a :class:`~clearance.SQLiteReplayGuard`. With ``gateway_url`` and ``api_key``
    (an ``agent``-scope key of the tool service) every refusal and every outcome is
    reported to the gateway's log; ``spool_dir`` keeps reports while it is down.
    ``max_body`` bounds the buffered body (larger: 413, handler not run).
    ``transport`` / ``async_transport`` are httpx transports for the exchanges with the
    gateway (tests, proxies); httpx is imported only when a guard talks to a gateway.
    """

    def __init__(
        self,
        *,
        routes: Mapping[tuple[str, str], str | ToolRoute],
        issuer: str,
        audience: str,
        replay: ReplayGuard | str | os.PathLike[str],
        keys: Mapping[str, Ed25519PublicKey] | None = None,
        jwks_url: str | None = None,
        gateway_url: str | None = None,
        api_key: str | None = None,
        executor: str = "tool-service",
        spool_dir: str | os.PathLike[str] | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        leeway: float = MAX_LEEWAY,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        for name, value in (("issuer", issuer), ("audience", audience), ("executor", executor)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string")
        if not 0 <= leeway <= MAX_LEEWAY:
            raise ValueError(f"leeway must be within [0, {MAX_LEEWAY}] seconds, got {leeway!r}")
        if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 1:
            raise ValueError(f"max_body must be a positive number of bytes, got {max_body!r}")
        if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if api_key is not None and gateway_url is None:
            raise ValueError("api_key reports to a gateway: give gateway_url too")
        if spool_dir is not None and api_key is None:
            raise ValueError(
                "spool_dir keeps reports for the gateway: give gateway_url and api_key"
            )
        self.routes = RouteTable(routes)
        self.issuer = issuer
        self.audience = audience
        self.executor = executor
        self.max_body = max_body
        self.leeway = leeway
        self.timeout = timeout
        self.clock = clock
        if jwks_url is None and keys is None and gateway_url is not None:
            jwks_url = gateway_url.rstrip("/") + "/.well-known/jwks.json"
        if jwks_url is None and keys is None:
            raise ValueError("a guard needs the gateway's keys: keys=, jwks_url= or gateway_url=")
        self.jwks_url = jwks_url
        self.jwks = JwksCache(
            refetch_interval=JWKS_REFETCH_INTERVAL,
            keys=keys,
        )
        if isinstance(replay, str | os.PathLike):
            from clearance._internal.grants.jti_store import SQLiteReplayGuard

            self.replay: ReplayGuard = SQLiteReplayGuard.open(replay)
            self._owns_replay = True
        else:
            self.replay = replay
            self._owns_replay = False
        self._gateway_url = gateway_url
        self._api_key = api_key
        self._spool_dir = spool_dir
        self._reporter: GuardReporter | None = None
        self.transport = transport
        self.async_transport = async_transport

    # -- configuration -----------------------------------------------------------------

    @property
    def reporter(self) -> GuardReporter | None:
        """The gateway reporter (None without ``gateway_url``); created on first use."""
        if self._reporter is None and self._gateway_url is not None and self._api_key is not None:
            from clearance._internal.guard.reporting import GuardReporter

            self._reporter = GuardReporter(
                self._gateway_url,
                self._api_key,
                spool_dir=self._spool_dir,
                timeout=self.timeout,
                sync_transport=self.transport,
                async_transport=self.async_transport,
            )
        return self._reporter

    def protect(
        self, action: str, *, resource: str | ResourceOf | None = None
    ) -> Callable[[Callable[[dict[str, Any], GrantClaims], R]], GuardedHandler[R]]:
        """Decorate a plain handler ``fn(args, claims)`` so it runs only for a granted call.

        The wrapped handler is called with the request's headers and raw body (and
        ``params=`` for a resource template); see :mod:`clearance._internal.guard.handler`.
        """
        from clearance._internal.guard.handler import protect

        return protect(self, action, resource=resource)

    def match(self, method: str, path: str) -> tuple[ToolRoute, dict[str, str]] | None:
        """The protected route of ``method path`` and its parameters, or None (not guarded)."""
        return self.routes.match(method, path)

    # -- the decision ------------------------------------------------------------------

    def admit(
        self,
        route: ToolRoute,
        params: Mapping[str, str],
        headers: Mapping[str, str] | Iterable[tuple[str | bytes, str | bytes]],
        body: bytes,
        *,
        now: float,
    ) -> Admitted | Refused:
        """Rebuild the request's intent and verify its grant (see the module docstring).

        Consumes the grant's ``jti`` in the replay store only when it is admitted.
        """
        pairs = as_pairs(headers)
        grant: str | None = None
        intent: Intent | None = None
        try:
            grant = presented_grant(pairs)
            purpose = presented_purpose(pairs)
            intent = self._rebuild(route, params, grant, purpose, body)
            claims = verify_grant(
                grant,
                intent,
                keys=self.jwks.keys,
                audience=self.audience,
                issuer=self.issuer,
                now=now,
                replay=self.replay,
                leeway=self.leeway,
            )
        except (HeaderProblem, InputError) as exc:
            reason = str(exc)
        except InvalidGrant as exc:
            reason = exc.audit_reason
        else:
            return Admitted(claims, intent, grant)
        return self.refused(route.action, reason, grant, intent)

    def refused(
        self, action: str, reason: str, grant: str | None, intent: Intent | None = None
    ) -> Refused:
        """A refusal of a call to ``action``, logged at INFO on ``clearance.guard``."""
        log.info("refused a call to %s: %s", action, reason)
        unverified = peek_claims(grant) if grant is not None else None
        rid = unverified.get("rid") if unverified is not None else None
        return Refused(
            reason,
            action,
            grant,
            intent.digest if intent is not None else None,
            rid if isinstance(rid, str) else None,
        )

    def _rebuild(
        self,
        route: ToolRoute,
        params: Mapping[str, str],
        grant: str,
        purpose: str | None,
        body: bytes,
    ) -> Intent:
        unverified = peek_claims(grant)
        if unverified is None:
            raise HeaderProblem("the grant is not a readable JWT")
        principal, trc, par = unverified.get("sub"), unverified.get("trc"), unverified.get("par")
        if not isinstance(principal, str) or not (trc is None or isinstance(trc, str)):
            raise HeaderProblem("the grant carries no usable sub/trc claims")
        if not (par is None or isinstance(par, str)):
            raise HeaderProblem("the grant carries no usable par claim")
        try:
            resource = route.resource_for(params)
        except (KeyError, IndexError, ValueError) as exc:
            raise InputError(f"the route's resource cannot be named: {exc!r}") from None
        return Intent(
            principal=principal,
            action=route.action,
            resource=resource,
            args=parse_args(body),
            purpose=purpose,
            trace_id=trc,
            parent_id=par,
            input=None,
        )

    def close(self) -> None:
        """Close the replay store if the guard opened it, and the reporter's connections.

        An ASGI application closes the async connections with :meth:`aclose` (on
        shutdown); this closes the blocking ones.
        """
        try:
            if self._reporter is not None:
                self._reporter.close()
        finally:
            if self._owns_replay:
                self.replay.close()

    async def aclose(self) -> None:
        """:meth:`close`, and the reporter's async connections too."""
        if self._reporter is not None:
            await self._reporter.aclose()
        self.close()
