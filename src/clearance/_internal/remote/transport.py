"""The HTTP exchanges with the gateway, on httpx, sync and async.

Invariants:

* Every request carries ``Authorization: Bearer <api key>``; the key is never
  logged or put in an error message.
* A 429 is retried after its ``Retry-After`` (seconds), at most
  ``rate_limit_retries`` times and only when the wait is at most
  ``max_retry_after``; otherwise the 429 reply is returned for the caller to map.
* No httpx exception escapes: a failure below HTTP (refused, reset, timed out,
  a malformed URL) is :class:`~clearance._internal.remote.wire.Unreachable`. A body
  that is not JSON is read as None.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import anyio
import httpx
import orjson

from clearance._internal.remote.settings import RemoteSettings
from clearance._internal.remote.wire import Reply, Unreachable, retry_after
from clearance.errors import InputError

USER_AGENT: Final[str] = "clearance-client/1"
_KEY: Final = re.compile(r"[\x21-\x7e]{1,512}")
DEFAULT_RETRY_AFTER: Final[float] = 1.0
"""Seconds waited after a 429 that names no ``Retry-After``."""


def bearer_headers(api_key: object) -> dict[str, str]:
    """The headers every request carries (InputError for a key that cannot be a header)."""
    if not isinstance(api_key, str) or _KEY.fullmatch(api_key) is None:
        raise InputError(
            "the API key must be the printable string `clearance api-keys create` printed"
        )
    return {"Authorization": f"Bearer {api_key}", "User-Agent": USER_AGENT}


def _encoded(value: Any) -> bytes | None:
    """The JSON body of a request (InputError for a value that is not JSON)."""
    if value is None:
        return None
    try:
        return orjson.dumps(value)
    except TypeError as exc:
        raise InputError(f"the request body is not JSON: {exc}") from None


def _reply(response: httpx.Response) -> Reply:
    try:
        body: Any = orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        body = None
    return Reply(response.status_code, body, dict(response.headers))


def _rate_limit_wait(reply: Reply, attempt: int, settings: RemoteSettings) -> float | None:
    """Seconds to wait before retrying ``reply``, or None to hand it back."""
    if reply.status != 429 or attempt >= settings.rate_limit_retries:
        return None
    delay = retry_after(reply)
    delay = DEFAULT_RETRY_AFTER if delay is None else delay
    return delay if delay <= settings.max_retry_after else None


class SyncTransport:
    """Blocking exchanges with one gateway (thread-safe: httpx.Client is)."""

    def __init__(
        self,
        url: str,
        api_key: str,
        settings: RemoteSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Talk to ``url`` (validated base URL) with ``api_key``."""
        self._settings = settings
        self._sleep = sleep
        self._client = httpx.Client(
            base_url=url,
            headers=bearer_headers(api_key),
            timeout=settings.timeout,
            transport=transport,
            follow_redirects=False,
        )

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str | int] | None = None,
        timeout: float | None = None,
    ) -> Reply:
        """One request (and its 429 retries); Unreachable when no answer came."""
        content = _encoded(json)
        attempt = 0
        while True:
            try:
                response = self._client.request(
                    method,
                    path,
                    content=content,
                    headers={"Content-Type": "application/json"} if json is not None else None,
                    params=params,
                    timeout=timeout if timeout is not None else self._settings.timeout,
                )
            except httpx.HTTPError as exc:
                raise Unreachable(f"{type(exc).__name__}: {exc}") from None
            reply = _reply(response)
            delay = _rate_limit_wait(reply, attempt, self._settings)
            if delay is None:
                return reply
            attempt += 1
            self._sleep(delay)

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


class AsyncTransport:
    """Non-blocking exchanges with one gateway (asyncio or trio, through anyio)."""

    def __init__(
        self,
        url: str,
        api_key: str,
        settings: RemoteSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """Talk to ``url`` (validated base URL) with ``api_key``."""
        self._settings = settings
        self._client = httpx.AsyncClient(
            base_url=url,
            headers=bearer_headers(api_key),
            timeout=settings.timeout,
            transport=transport,
            follow_redirects=False,
        )

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str | int] | None = None,
        timeout: float | None = None,
    ) -> Reply:
        """One request (and its 429 retries); Unreachable when no answer came."""
        content = _encoded(json)
        attempt = 0
        while True:
            try:
                response = await self._client.request(
                    method,
                    path,
                    content=content,
                    headers={"Content-Type": "application/json"} if json is not None else None,
                    params=params,
                    timeout=timeout if timeout is not None else self._settings.timeout,
                )
            except httpx.HTTPError as exc:
                raise Unreachable(f"{type(exc).__name__}: {exc}") from None
            reply = _reply(response)
            delay = _rate_limit_wait(reply, attempt, self._settings)
            if delay is None:
                return reply
            attempt += 1
            await anyio.sleep(delay)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()
