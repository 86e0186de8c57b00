"""The grant guard for plain handlers (no ASGI): ``@guard.protect(action)``.

For a tool served by anything else (another web framework, a queue consumer, a
serverless function): the framework hands the decorated handler the request's
headers and raw body, and the handler runs only when the guard admits them::

    @guard.protect("payments.send")
    def pay(args: dict, claims: GrantClaims) -> dict:
        ...

    result = pay(request.headers, request.body)   # InvalidGrant: answer 403

Invariants are the middleware's (:mod:`.middleware`): the same rebuild and checks
(:meth:`GrantGuard.admit`), every refusal reported before the caller learns of it,
the outcome reported after the handler ran. A refusal raises the opaque
:class:`~clearance.errors.InvalidGrant`; a body over ``guard.max_body`` raises
:class:`~clearance.errors.InputError` (answer 413). The handler gets the intent's
``args`` (a fresh copy) and the grant's verified claims.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar, cast

from clearance._internal.canonical import json_digest
from clearance._internal.grants.token import GrantClaims
from clearance._internal.guard.core import Admitted, GrantGuard, Refused
from clearance._internal.guard.headers import HeaderProblem, as_pairs, presented_grant
from clearance._internal.guard.middleware import outcome_report
from clearance._internal.guard.routes import ResourceOf, ToolRoute
from clearance.errors import InputError, InvalidGrant

R = TypeVar("R")

Headers = Mapping[str, str] | Iterable[tuple[str | bytes, str | bytes]]


def _digest(result: Any) -> str | None:
    try:
        return json_digest(result)
    except InputError:
        return None


def _body_bytes(body: bytes | str) -> bytes:
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    raise TypeError(f"body must be bytes or str, not {type(body).__name__}")


def _token(headers: Headers) -> str | None:
    try:
        return presented_grant(as_pairs(headers))
    except HeaderProblem:
        return None


class GuardedHandler(Generic[R]):
    """A handler wrapped by :meth:`GrantGuard.protect`: call it with headers and body."""

    __name__: str
    """The wrapped handler's name (``functools.update_wrapper`` copies it)."""

    def __init__(
        self, guard: GrantGuard, route: ToolRoute, fn: Callable[[dict[str, Any], GrantClaims], R]
    ) -> None:
        self._guard = guard
        self._route = route
        self._fn = fn
        functools.update_wrapper(self, fn)

    def _admit(
        self, headers: Headers, body: bytes | str, params: Mapping[str, str] | None
    ) -> Admitted | Refused:
        from clearance._internal.guard.reporting import refresh_keys

        data = _body_bytes(body)
        guard = self._guard
        if len(data) > guard.max_body:
            return guard.refused(
                self._route.action, f"request body over {guard.max_body} bytes", _token(headers)
            )
        refresh_keys(guard.jwks, guard.jwks_url, _token(headers), guard.timeout, guard.transport)
        return guard.admit(self._route, params or {}, headers, data, now=guard.clock())

    def _refuse(self, refusal: Refused, body: bytes | str) -> Exception:
        if len(_body_bytes(body)) > self._guard.max_body:
            return InputError(f"the request body is over {self._guard.max_body} bytes")
        return InvalidGrant(refusal.reason)

    def __call__(
        self, headers: Headers, body: bytes | str, *, params: Mapping[str, str] | None = None
    ) -> R:
        """Run the handler if the request's grant is for exactly this request."""
        guard = self._guard
        verdict = self._admit(headers, body, params)
        reporter = guard.reporter
        if isinstance(verdict, Refused):
            if reporter is not None:
                reporter.send(verdict.report(guard.executor), verdict.request_id, "rejected")
            raise self._refuse(verdict, body)
        started = time.perf_counter()
        try:
            result = self._fn(dict(verdict.intent.args), verdict.claims)
        except BaseException as exc:
            if reporter is not None:
                reporter.send(
                    _report(guard, verdict, "error", type(exc).__qualname__, None, started),
                    verdict.claims.rid,
                    "error",
                )
            raise
        if reporter is not None:
            reporter.send(
                _report(guard, verdict, "ok", None, _digest(result), started),
                verdict.claims.rid,
                "ok",
            )
        return result


class AsyncGuardedHandler(GuardedHandler[Awaitable[R]]):
    """:class:`GuardedHandler` for a coroutine function: ``await handler(headers, body)``."""

    async def __call__(
        self, headers: Headers, body: bytes | str, *, params: Mapping[str, str] | None = None
    ) -> R:
        """Run the handler if the request's grant is for exactly this request."""
        import anyio.to_thread

        from clearance._internal.guard.reporting import refresh_keys_async

        guard = self._guard
        data = _body_bytes(body)
        token = _token(headers)
        if len(data) > guard.max_body:
            verdict: Admitted | Refused = guard.refused(
                self._route.action, f"request body over {guard.max_body} bytes", token
            )
        else:
            await refresh_keys_async(
                guard.jwks, guard.jwks_url, token, guard.timeout, guard.async_transport
            )
            now = guard.clock()
            verdict = await anyio.to_thread.run_sync(
                lambda: guard.admit(self._route, params or {}, headers, data, now=now)
            )
        reporter = guard.reporter
        if isinstance(verdict, Refused):
            if reporter is not None:
                await reporter.send_async(
                    verdict.report(guard.executor), verdict.request_id, "rejected"
                )
            raise self._refuse(verdict, data)
        started = time.perf_counter()
        fn = self._fn
        try:
            result = await fn(dict(verdict.intent.args), verdict.claims)
        except BaseException as exc:
            if reporter is not None:
                await reporter.send_async(
                    _report(guard, verdict, "error", type(exc).__qualname__, None, started),
                    verdict.claims.rid,
                    "error",
                )
            raise
        if reporter is not None:
            await reporter.send_async(
                _report(guard, verdict, "ok", None, _digest(result), started),
                verdict.claims.rid,
                "ok",
            )
        return result


def _report(
    guard: GrantGuard,
    admitted: Admitted,
    status: str,
    error_type: str | None,
    digest: str | None,
    started: float,
) -> dict[str, Any]:
    return outcome_report(
        admitted,
        status=status,
        error_type=error_type,
        result_digest=digest,
        duration_us=int((time.perf_counter() - started) * 1e6),
        executor=guard.executor,
    )


def protect(
    guard: GrantGuard, action: str, *, resource: str | ResourceOf | None = None
) -> Callable[[Callable[[dict[str, Any], GrantClaims], R]], GuardedHandler[R]]:
    """The decorator behind :meth:`GrantGuard.protect`."""
    route = ToolRoute(action, resource)

    def decorate(fn: Callable[[dict[str, Any], GrantClaims], R]) -> GuardedHandler[R]:
        if inspect.iscoroutinefunction(fn):
            return cast(GuardedHandler[R], AsyncGuardedHandler(guard, route, fn))
        return GuardedHandler(guard, route, fn)

    return decorate
