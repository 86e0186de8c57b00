"""How a guard tells the gateway what it refused and what it ran, and fetches its keys.

Invariants:

* A report never changes what the guard answered: a refusal stays a refusal and a
  handler that ran keeps its response. A report the gateway cannot take now is
  retried and spooled (:mod:`clearance._internal.remote.reporter`); one that nothing
  takes is logged at ERROR on ``clearance.client`` (never silent).
* The JWKS is fetched only when the cache asks for it
  (:class:`~clearance._internal.remote.jwks.JwksCache`); a failed fetch keeps the keys
  held, and the grant then fails verification if its key is not among them.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from typing import Any

import httpx

from clearance._internal.remote.jwks import JwksCache
from clearance._internal.remote.outcomes import OutcomeSpool
from clearance._internal.remote.reporter import AsyncReporter, SyncReporter
from clearance._internal.remote.settings import RemoteSettings
from clearance._internal.remote.transport import AsyncTransport, SyncTransport
from clearance._internal.remote.wire import gateway_url
from clearance.errors import OutcomeUnrecorded, SigningKeyError

log = logging.getLogger("clearance.guard")


class GuardReporter:
    """Reports of one guard to one gateway, blocking or async (each made on first use)."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        spool_dir: str | os.PathLike[str] | None,
        timeout: float,
        sync_transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._url = gateway_url(url)
        self._api_key = api_key
        self._settings = RemoteSettings(timeout=timeout)
        self._spool = OutcomeSpool(spool_dir, api_key) if spool_dir is not None else None
        self._sync_transport = sync_transport
        self._async_transport = async_transport
        self._sync: SyncReporter | None = None
        self._async: AsyncReporter | None = None
        self._sync_http: SyncTransport | None = None
        self._async_http: AsyncTransport | None = None

    def _blocking(self) -> SyncReporter:
        if self._sync is None:
            self._sync_http = SyncTransport(
                self._url, self._api_key, self._settings, transport=self._sync_transport
            )
            self._sync = SyncReporter(self._sync_http, self._spool, self._settings)
        return self._sync

    def _nonblocking(self) -> AsyncReporter:
        if self._async is None:
            self._async_http = AsyncTransport(
                self._url, self._api_key, self._settings, transport=self._async_transport
            )
            self._async = AsyncReporter(self._async_http, self._spool, self._settings)
        return self._async

    def send(self, report: Mapping[str, Any], request_id: str | None, status: str) -> None:
        """Deliver or spool ``report``; never raises for a report nothing took (logged)."""
        with contextlib.suppress(OutcomeUnrecorded):  # logged at ERROR where it was raised
            self._blocking().deliver(report, request_id or "unknown", status)

    async def send_async(
        self, report: Mapping[str, Any], request_id: str | None, status: str
    ) -> None:
        """:meth:`send` without blocking the event loop."""
        with contextlib.suppress(OutcomeUnrecorded):  # logged at ERROR where it was raised
            await self._nonblocking().deliver(report, request_id or "unknown", status)

    def flush(self) -> int:
        """Send spooled reports now (blocking); how many the gateway took."""
        return self._blocking().flush()

    def close(self) -> None:
        """Close the blocking connections."""
        if self._sync_http is not None:
            self._sync_http.close()

    async def aclose(self) -> None:
        """Close the async connections."""
        if self._async_http is not None:
            await self._async_http.aclose()


def _adopt(cache: JwksCache, response: httpx.Response | None, url: str) -> None:
    if response is None or response.status_code != 200:
        cache.fetch_failed()
        log.warning("could not fetch the JWKS at %s; verifying with the keys held", url)
        return
    try:
        cache.update(response.json())
    except (SigningKeyError, ValueError) as exc:
        cache.fetch_failed()
        log.warning("the JWKS at %s was refused: %s", url, exc)


def refresh_keys(
    cache: JwksCache,
    url: str | None,
    token: object,
    timeout: float,
    transport: httpx.BaseTransport | None = None,
) -> None:
    """Fetch the JWKS (blocking) when the cache asks for it for ``token``."""
    if url is None or not cache.needs_fetch(token):
        return
    try:
        with httpx.Client(timeout=timeout, transport=transport) as client:
            response: httpx.Response | None = client.get(url)
    except httpx.HTTPError:
        response = None
    _adopt(cache, response, url)


async def refresh_keys_async(
    cache: JwksCache,
    url: str | None,
    token: object,
    timeout: float,
    transport: httpx.AsyncBaseTransport | None = None,
) -> None:
    """Fetch the JWKS (async) when the cache asks for it for ``token``."""
    if url is None or not cache.needs_fetch(token):
        return
    try:
        async with httpx.AsyncClient(timeout=timeout, transport=transport) as client:
            response: httpx.Response | None = await client.get(url)
    except httpx.HTTPError:
        response = None
    _adopt(cache, response, url)
