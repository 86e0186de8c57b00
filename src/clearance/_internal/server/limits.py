"""Request limits: the body size (413) and the per-key rate (429).

Invariants:

* :class:`BodyLimit` reads the whole body *before* the application sees any of it, and
  answers 413 as soon as the declared ``Content-Length`` or the bytes received so far
  exceed the limit, so a chunked body is cut off at the limit too and nothing parses
  an oversized body. A client that disconnects while sending gets no response and the
  application is not called (nothing was asked).
* :class:`RateLimiter` is one token bucket per API key id (``per_second`` tokens a
  second, at most ``burst``), on the monotonic clock so a wall-clock step neither
  refills nor drains it. A refusal says how long until the next token
  (``Retry-After``, whole seconds, at least 1). The table of buckets is bounded: it
  only holds keys that authenticated, and idle full buckets are dropped.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clearance._internal.server.errors import error_response


class BodyLimit:
    """Pure ASGI middleware: no request body over ``max_body`` bytes reaches the app."""

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        """Wrap ``app``; ``max_body`` is in bytes."""
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Buffer the body up to the limit, then replay it to the app."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body:
            await self._too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left before finishing its request: nothing to answer
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_body:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # later: the client's disconnect, if it comes

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            "payload_too_large", f"the request body is larger than {self.max_body} bytes"
        )
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class RateLimiter:
    """Token buckets per API key id (see the module docstring)."""

    MAX_BUCKETS = 100_000
    """More buckets than this and full ones are dropped (they are equivalent to none)."""

    def __init__(
        self,
        per_second: float,
        burst: int,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``per_second`` tokens a second, buckets of ``burst`` tokens."""
        if not per_second > 0 or burst < 1:
            raise ValueError("per_second must be above 0 and burst at least 1")
        self._rate = float(per_second)
        self._burst = float(burst)
        self._monotonic = monotonic
        self._buckets: dict[str, tuple[float, float]] = {}
        """key id -> (tokens, monotonic instant they were counted at)."""
        self._lock = threading.Lock()

    def take(self, key_id: str) -> float:
        """Take one token for ``key_id``: 0.0 if taken, else seconds until one is available."""
        now = self._monotonic()
        with self._lock:
            tokens, at = self._buckets.get(key_id, (self._burst, now))
            tokens = min(self._burst, tokens + (now - at) * self._rate)
            if tokens >= 1.0:
                self._buckets[key_id] = (tokens - 1.0, now)
                if len(self._buckets) > self.MAX_BUCKETS:
                    self._drop_full(now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1.0 - tokens) / self._rate

    def _drop_full(self, now: float) -> None:
        for key_id, (tokens, at) in list(self._buckets.items()):
            if tokens + (now - at) * self._rate >= self._burst:
                del self._buckets[key_id]


def retry_after(seconds: float) -> str:
    """The ``Retry-After`` header value for a wait of ``seconds`` (whole seconds, >= 1)."""
    return str(max(1, math.ceil(seconds)))
