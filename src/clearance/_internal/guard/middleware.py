"""The grant guard as pure ASGI middleware (Starlette, FastAPI, any ASGI 3 application).

``app.add_middleware(GrantGuardMiddleware, guard=guard)`` (Starlette/FastAPI), or
``GrantGuardMiddleware(app, guard=guard)`` around any ASGI application.

Invariants:

* A request to a protected route reaches the application only when
  :meth:`GrantGuard.admit` admitted it. The body is read first, up to
  ``guard.max_body`` bytes (more: 413, nothing runs), and replayed to the
  application unchanged, as one ``http.request`` message; after it the
  application's ``receive`` is the server's again (``http.disconnect``).
* A refusal is answered ``403 {"error": {"code": "invalid_grant", "message": "grant
  rejected"}}`` and reported to the gateway before the answer is sent, so it is in
  the log by the time the caller learns of it.
* The outcome of an admitted call (``ok`` for a status below 400, else ``error``;
  the digest of a JSON response body up to ``RESULT_LIMIT`` bytes) is reported
  before the last body chunk is forwarded, so the tool's record is the first one
  for its grant (the agent's own report then counts as already made). An exception
  in the application is reported as ``error`` with its type and propagates.
* Other routes, and non-HTTP scopes (lifespan, websockets), pass through untouched.
* Grant verification writes the durable replay store; it runs in a worker thread,
  never on the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

from clearance._internal import strict_json
from clearance._internal.canonical import json_digest
from clearance._internal.guard.core import Admitted, GrantGuard, Refused
from clearance._internal.guard.headers import HeaderProblem, as_pairs, presented_grant
from clearance._internal.intent import Intent
from clearance.errors import InputError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

RESULT_LIMIT: Final[int] = 1 << 20
"""Largest response body whose digest goes into the outcome report (larger: no digest)."""

_REFUSAL: Final[bytes] = b'{"error":{"code":"invalid_grant","message":"grant rejected"}}'
_TOO_LARGE: Final[bytes] = (
    b'{"error":{"code":"payload_too_large","message":"the request body is over the limit"}}'
)


def route_path(scope: Scope) -> str:
    """The path a router matches: ``path`` without the application's ``root_path``."""
    path = str(scope.get("path", "/"))
    root = str(scope.get("root_path", "") or "")
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    return path


async def _respond(send: Send, status: int, body: bytes, challenge: bool = False) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if challenge:
        headers.append((b"www-authenticate", b"Clearance"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def result_digest(body: bytes) -> str | None:
    """The ``sha256:`` digest of a JSON response body (RFC 8785), or None if not JSON."""
    if not body or len(body) > RESULT_LIMIT:
        return None
    try:
        return json_digest(strict_json.loads(body))
    except (ValueError, RecursionError, InputError):
        return None


class GrantGuardMiddleware:
    """ASGI middleware enforcing a :class:`GrantGuard` (see the module invariants)."""

    def __init__(self, app: ASGIApp, *, guard: GrantGuard) -> None:
        if not isinstance(guard, GrantGuard):
            raise TypeError("GrantGuardMiddleware needs guard=GrantGuard(...)")
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        found = self.guard.match(str(scope.get("method", "GET")), route_path(scope))
        if found is None:
            await self.app(scope, receive, send)
            return
        route, params = found
        body = await self._body(receive)
        headers = as_pairs(scope.get("headers") or [])
        if body is None:
            return  # the client went away before sending its body; nothing to answer
        if isinstance(body, Oversized):
            refusal = self.guard.refused(
                route.action,
                f"request body over {self.guard.max_body} bytes",
                _grant_or_none(headers),
            )
            await self._report_refusal(refusal)
            await _respond(send, 413, _TOO_LARGE)
            return
        verdict = await self._admit(route, params, headers, body)
        if isinstance(verdict, Refused):
            await self._report_refusal(verdict)
            await _respond(send, 403, _REFUSAL, challenge=True)
            return
        await self._run(scope, receive, send, body, verdict)

    async def _body(self, receive: Receive) -> bytes | Oversized | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message.get("type") == "http.disconnect":
                return None
            chunk = message.get("body", b"") or b""
            size += len(chunk)
            if size > self.guard.max_body:
                return Oversized()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _admit(
        self, route: Any, params: dict[str, str], headers: list[tuple[str, str]], body: bytes
    ) -> Admitted | Refused:
        import anyio.to_thread

        from clearance._internal.guard.reporting import refresh_keys_async

        guard = self.guard
        await refresh_keys_async(
            guard.jwks,
            guard.jwks_url,
            _grant_or_none(headers),
            guard.timeout,
            guard.async_transport,
        )
        now = self.guard.clock()
        return await anyio.to_thread.run_sync(
            lambda: self.guard.admit(route, params, headers, body, now=now)
        )

    async def _report_refusal(self, refusal: Refused) -> None:
        reporter = self.guard.reporter
        if reporter is not None:
            await reporter.send_async(
                refusal.report(self.guard.executor), refusal.request_id, "rejected"
            )

    async def _report_outcome(
        self,
        admitted: Admitted,
        status: str,
        error_type: str | None,
        digest: str | None,
        started: float,
    ) -> None:
        reporter = self.guard.reporter
        if reporter is None:
            return
        report = outcome_report(
            admitted,
            status=status,
            error_type=error_type,
            result_digest=digest,
            duration_us=int((time.perf_counter() - started) * 1e6),
            executor=self.guard.executor,
        )
        await reporter.send_async(report, admitted.claims.rid, status)

    async def _run(
        self, scope: Scope, receive: Receive, send: Send, body: bytes, admitted: Admitted
    ) -> None:
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        status_code = 500
        collected: list[bytes] = []
        size = 0
        reported = False
        started = time.perf_counter()

        async def forward(message: Message) -> None:
            nonlocal status_code, size, reported
            if message.get("type") == "http.response.start":
                status_code = int(message.get("status", 500))
            elif message.get("type") == "http.response.body":
                chunk = message.get("body", b"") or b""
                size += len(chunk)
                if size <= RESULT_LIMIT:
                    collected.append(chunk)
                if not message.get("more_body", False) and not reported:
                    reported = True
                    ok = status_code < 400
                    digest = result_digest(b"".join(collected)) if size <= RESULT_LIMIT else None
                    await self._report_outcome(
                        admitted,
                        "ok" if ok else "error",
                        None if ok else f"HTTP_{status_code}",
                        digest,
                        started,
                    )
            await send(message)

        try:
            await self.app(scope, replay, forward)
        except BaseException as exc:
            if not reported:
                reported = True
                await self._report_outcome(admitted, "error", type(exc).__qualname__, None, started)
            raise
        if not reported:  # the application sent no complete response
            await self._report_outcome(admitted, "error", "IncompleteResponse", None, started)


class Oversized:
    """Internal: the request body went over the guard's limit."""


def _grant_or_none(headers: list[tuple[str, str]]) -> str | None:
    try:
        return presented_grant(headers)
    except HeaderProblem:
        return None


def outcome_report(
    admitted: Admitted,
    *,
    status: str,
    error_type: str | None,
    result_digest: str | None,
    duration_us: int,
    executor: str,
) -> dict[str, Any]:
    """The outcome report of an admitted call (``POST /v1/executions``)."""
    intent: Intent = admitted.intent
    return {
        "grant": admitted.grant,
        "intent": intent.to_json(),
        "status": status,
        "result_digest": result_digest,
        "duration_us": max(0, duration_us),
        "executor": executor,
        "error_type": error_type,
    }
