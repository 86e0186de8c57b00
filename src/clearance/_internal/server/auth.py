"""Who is calling: the bearer API key, its scopes and its per-key rate limit.

Invariants (docs/design.md §6, docs/http-api.md "Conventions"):

* Every protected route depends on :func:`caller`; there is no route that reads a key
  any other way. A missing, malformed, unknown, expired or revoked key is one opaque
  401 ``unauthenticated`` with ``WWW-Authenticate: Bearer``
  (:meth:`~clearance._internal.apikeys.ApiKeyStore.authenticate` decides, in constant
  time, and picks up a revocation within a second).
* Then the key's token bucket is charged (429 ``rate_limited`` with ``Retry-After``),
  then its scopes are checked (403 ``forbidden``): a key may act in a scope when
  :meth:`~clearance._internal.apikeys.ApiKey.allows` says so (``admin`` allows all,
  ``orchestrator`` allows ``agent``).
* The principal of everything done with a key is the key's principal (fail-closed
  rule 10); routes compare bodies against :attr:`Caller.principal`, never the reverse.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from clearance._internal.apikeys import ApiKey
from clearance._internal.server.errors import ApiError
from clearance._internal.server.limits import retry_after
from clearance._internal.server.state import ServerState, server_state
from clearance.errors import Unauthenticated

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key from `clearance api-keys create`: `Authorization: Bearer clk_…`.",
)


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated caller of one request."""

    key: ApiKey

    @property
    def principal(self) -> str:
        """The key's principal: the principal of every intent, vote and report it makes."""
        return self.key.principal

    def may(self, *scopes: str) -> bool:
        """Whether the key may act in any of ``scopes``."""
        return any(self.key.allows(scope) for scope in scopes)


def caller(*scopes: str) -> Callable[..., Coroutine[Any, Any, Caller]]:
    """A dependency that authenticates the request and requires one of ``scopes``.

    With no scopes, any valid key is enough (the route then checks ownership itself).
    """

    async def authenticate(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    ) -> Caller:
        # On the event loop, not in the thread pool: a verified key is cached for up to a
        # second, so this is a hash and a comparison, and a sync route then costs one
        # thread hop instead of two. The rare cache miss is one indexed SQLite read.
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise Unauthenticated("no bearer API key")
        return identify(server_state(request), credentials.credentials, scopes)

    return authenticate


def identify(state: ServerState, token: str, scopes: tuple[str, ...]) -> Caller:
    """Authenticate ``token``, charge its rate limit, require one of ``scopes``.

    Unauthenticated (401), ApiError ``rate_limited`` (429) or ``forbidden`` (403), in that
    order. The one place a key is checked: :func:`caller` and the lean path of
    :mod:`clearance._internal.server.hot` both call it.
    """
    key = state.keys.authenticate(token)
    wait = state.limiter.take(key.key_id)
    if wait > 0:
        raise ApiError(
            "rate_limited",
            "too many requests with this API key; retry later",
            headers={"Retry-After": retry_after(wait)},
        )
    found = Caller(key)
    if scopes and not found.may(*scopes):
        needed = ", ".join(scopes)
        raise ApiError("forbidden", f"this API key lacks the scope for this: one of {needed}")
    return found
