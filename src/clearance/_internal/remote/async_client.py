"""The asyncio (anyio) remote SDK: :class:`AsyncClient`, the same rules as :class:`Client`.

Every rule of :mod:`clearance._internal.remote.client` holds here; the two share
:class:`~clearance._internal.remote.session.Session`, which decides what every reply
means. Disk work (the spool's fsyncs) runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

import anyio
import httpx

from clearance._internal.gate.cleared import Authorization, Cleared
from clearance._internal.gate.traces import Trace, enter_request, exit_request
from clearance._internal.intent import Intent
from clearance._internal.policy.engine import Decision
from clearance._internal.remote import approvals
from clearance._internal.remote.binding import Bound
from clearance._internal.remote.governed import governed_async
from clearance._internal.remote.outcomes import OutcomeSpool
from clearance._internal.remote.reporter import AsyncReporter
from clearance._internal.remote.session import (
    AUTHORIZE_PATH,
    EVALUATE_PATH,
    JWKS_PATH,
    TRACES_PATH,
    Session,
    checked_id,
)
from clearance._internal.remote.settings import RemoteSettings
from clearance._internal.remote.transport import AsyncTransport
from clearance._internal.remote.wire import Reply, Unreachable, error_for, unreachable_error

P = ParamSpec("P")
R = TypeVar("R")


class AsyncClient:
    """A non-blocking client of ``clearance serve``; see :class:`clearance.Client`.

    The same constructor arguments, with an ``httpx.AsyncBaseTransport`` as
    ``transport``; every method that talks to the gateway is a coroutine, and
    ``clearance``, ``resume`` and ``trace`` are ``async with`` context managers.
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        spool_dir: str | os.PathLike[str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        principal: str | None = None,
        executor: str = "clearance-client",
        settings: RemoteSettings | None = None,
    ) -> None:
        settings = settings or RemoteSettings(timeout=timeout)
        self._session = Session(
            url,
            settings=settings,
            executor=executor,
            issuer=issuer,
            audience=audience,
            principal=principal,
        )
        self._http = AsyncTransport(self._session.url, api_key, settings, transport=transport)
        spool = OutcomeSpool(spool_dir, api_key) if spool_dir is not None else None
        self._reporter = AsyncReporter(self._http, spool, settings)

    @property
    def url(self) -> str:
        """The gateway's base URL."""
        return self._session.url

    @property
    def spool_depth(self) -> int:
        """Outcomes waiting in the spool (0 without one)."""
        spool = self._reporter.spool
        return 0 if spool is None else spool.depth()

    # -- exchanges ---------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        fail_closed: bool,
        json: Any = None,
        params: Mapping[str, str | int] | None = None,
        timeout: float | None = None,
    ) -> Reply:
        try:
            reply = await self._http.call(method, path, json=json, params=params, timeout=timeout)
        except Unreachable as exc:
            raise unreachable_error(exc, fail_closed=fail_closed) from None
        if reply.ok and self._reporter.pending:
            await self._reporter.flush_quietly()
        return reply

    async def _verified(self, body: Any, sent: Mapping[str, Any]) -> Cleared:
        if self._session.jwks.needs_fetch(self._session.grant_of(body)):
            try:
                reply: Reply | None = await self._http.call("GET", JWKS_PATH)
            except Unreachable:
                reply = None
            self._session.adopt_jwks(reply)
        return self._session.cleared(body, sent)

    # -- traces ------------------------------------------------------------------------

    async def open_trace(
        self,
        mandate: str = "",
        *,
        bounds: Mapping[str, Any] | None = None,
        principal: str | None = None,
    ) -> Trace:
        """Open a trace with the human's mandate (orchestrator or admin keys); its handle."""
        request = self._session.trace_request(mandate, bounds, principal)
        reply = await self._call("POST", TRACES_PATH, fail_closed=False, json=request)
        return self._session.opened_trace(reply, request)

    @contextlib.asynccontextmanager
    async def trace(
        self,
        mandate: str = "",
        *,
        bounds: Mapping[str, Any] | None = None,
        principal: str | None = None,
    ) -> AsyncIterator[Trace]:
        """Open a trace and make it active for the ``async with`` body (and its tasks)."""
        handle = await self.open_trace(mandate, bounds=bounds, principal=principal)
        with handle.active():
            yield handle

    async def resume_trace(self, trace_id: str) -> Trace:
        """A handle for a trace opened earlier (read from the gateway; trusted code only)."""
        checked_id("trace id", trace_id)
        reply = await self._call(
            "GET", f"{TRACES_PATH}/{trace_id}", fail_closed=False, params={"limit": 1}
        )
        return self._session.resumed_trace(reply, trace_id)

    # -- decisions ---------------------------------------------------------------------

    async def evaluate(
        self, intent: Intent | Mapping[str, Any], *, trace: Trace | None = None
    ) -> tuple[Decision, dict[str, Any]]:
        """Dry run: the decision the gateway would make for ``intent`` now, and its facts."""
        bound = self._session.bind(intent, trace)
        reply = await self._call(
            "POST", EVALUATE_PATH, fail_closed=False, json={"intent": bound.sent}
        )
        return self._session.evaluation(reply)

    async def authorize(
        self, intent: Intent | Mapping[str, Any], *, trace: Trace | None = None
    ) -> Authorization:
        """Decide ``intent`` and return its verified grant (see :meth:`Client.authorize`)."""
        bound = self._session.bind(intent, trace)
        return (await self._decide(bound, wait=None)).authorization

    async def _decide(self, bound: Bound, *, wait: float | None) -> Cleared:
        reply = await self._call("POST", AUTHORIZE_PATH, fail_closed=True, json=bound.sent)
        approval_id = self._session.decision(reply, bound)
        if approval_id is None:
            return await self._verified(reply.body, bound.sent)
        if wait is None:
            raise self._session.approval_required(approval_id, reply.body)
        return await self._collect(approval_id, wait)

    async def _collect(self, approval_id: str, wait: float | None) -> Cleared:
        """Wait (long poll) for the approval, collect its grant once, and check it."""
        settings = self._session.settings
        deadline = time.monotonic() + (wait or 0.0)
        while True:
            started = time.monotonic()
            remaining = deadline - started
            params: dict[str, str | int] = {}
            if remaining > 0:
                params["wait"] = approvals.poll_seconds(remaining)
            reply = await self._call(
                "GET",
                f"/v1/approvals/{approval_id}",
                fail_closed=True,
                params=params,
                timeout=settings.timeout + float(params.get("wait", 0)),
            )
            if not reply.ok:
                raise error_for(reply, fail_closed=True)
            state = approvals.read_approval(reply.body, approval_id)
            if state.status == "approved":
                grant = await self._call(
                    "POST", f"/v1/approvals/{approval_id}/grant", fail_closed=True, json={}
                )
                if grant.status == 200:
                    sent = self._session.sent_for(state)
                    self._session.forget(approval_id)
                    return await self._verified(grant.body, sent)
                if grant.status != 202:
                    raise error_for(grant, fail_closed=True)
            elif state.status != "pending":
                self._session.forget(approval_id)
                raise approvals.decided_error(state)
            left = deadline - time.monotonic()
            if left <= 0:
                raise approvals.pending(
                    approval_id, state.record, f"approval {approval_id} is still pending"
                )
            pause = settings.min_poll_interval - (time.monotonic() - started)
            if pause > 0:
                await anyio.sleep(min(pause, left))

    def clearance(
        self,
        intent: Intent | Mapping[str, Any],
        *,
        trace: Trace | None = None,
        wait: timedelta | float | None = None,
    ) -> AbstractAsyncContextManager[Cleared]:
        """``async with client.clearance(intent) as cleared:`` (see :meth:`Client.clearance`)."""
        return AsyncRemoteCall(self, intent, trace, approvals.wait_seconds(wait))

    def resume(
        self, approval_id: str, *, wait: timedelta | float | None = None
    ) -> AbstractAsyncContextManager[Cleared]:
        """``async with client.resume(approval_id, wait=...) as cleared:`` (see
        :meth:`Client.resume`)."""
        checked_id("approval id", approval_id)
        return AsyncRemoteCall(
            self, None, None, approvals.wait_seconds(wait), approval_id=approval_id
        )

    def governed(
        self,
        action: str | None = None,
        *,
        resource: str | Callable[[Mapping[str, Any]], str] | None = None,
        purpose: str | None = None,
        exclude: Collection[str] = (),
        args: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
        wait: timedelta | float | None = None,
    ) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
        """Decorate a coroutine function so every call is a governed call (see
        :meth:`Client.governed`); TypeError for a plain function."""
        return governed_async(
            self,
            action,
            resource=resource,
            purpose=purpose,
            exclude=exclude,
            args=args,
            wait=approvals.wait_seconds(wait),
        )

    # -- outcomes ----------------------------------------------------------------------

    async def _deliver(self, report: Mapping[str, Any], request_id: str, status: str) -> None:
        await self._reporter.deliver(report, request_id, status)

    async def flush(self) -> int:
        """Send spooled outcomes now; returns how many the gateway took (see
        :meth:`Client.flush`)."""
        return await self._reporter.flush()

    # -- lifetime ----------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the connection pool (spooled outcomes stay on disk)."""
        await self._http.aclose()

    async def close(self) -> None:
        """The same as :meth:`aclose`."""
        await self.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class AsyncRemoteCall:
    """The async context manager :meth:`AsyncClient.clearance` and ``resume`` return."""

    def __init__(
        self,
        client: AsyncClient,
        intent: Intent | Mapping[str, Any] | None,
        trace: Trace | None,
        wait: float | None,
        *,
        approval_id: str | None = None,
    ) -> None:
        self._client = client
        self._intent = intent
        self._trace = trace
        self._wait = wait
        self._approval_id = approval_id
        self._entered = False

    async def __aenter__(self) -> Cleared:
        if self._entered:
            raise RuntimeError("a clearance context is entered once; call clearance() again")
        self._entered = True
        client, session = self._client, self._client._session
        if self._approval_id is not None:
            cleared = await client._collect(self._approval_id, self._wait)
            running = session.running(cleared, 0)
        else:
            if self._intent is None:
                raise RuntimeError("internal: a clearance call without an intent or approval id")
            bound = session.bind(self._intent, self._trace)
            cleared = await client._decide(bound, wait=self._wait)
            running = session.running(cleared, bound.depth)
        self._cleared = cleared
        self._token = enter_request(running)
        self._started = time.perf_counter()
        return cleared

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        duration_us = int((time.perf_counter() - self._started) * 1e6)
        exit_request(self._token)
        status, error_type = ("ok", None) if exc_type is None else ("error", exc_type.__qualname__)
        report = self._client._session.report(self._cleared, status, error_type, duration_us)
        await self._client._deliver(report, self._cleared.request_id, status)
