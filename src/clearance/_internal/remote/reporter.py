"""Delivering outcome reports: a few tries, then the spool; and sending the spool later.

The rules are :mod:`.outcomes`'s; this module is the two drivers (blocking and
async) that apply them, shared by the clients and by the grant guard of tool
services. :meth:`SyncReporter.deliver` returns once the report is delivered or
spooled, and raises :class:`~clearance.errors.OutcomeUnrecorded` otherwise.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread

from clearance._internal.remote.outcomes import (
    EXECUTIONS_PATH,
    Delivery,
    OutcomeSpool,
    delivery_of,
    refusal_reason,
    unrecorded,
)
from clearance._internal.remote.settings import RemoteSettings
from clearance._internal.remote.transport import AsyncTransport, SyncTransport
from clearance._internal.remote.wire import Reply, Unreachable
from clearance.errors import LedgerError

log = logging.getLogger("clearance.client")


def _spooled(
    spool: OutcomeSpool | None,
    report: Mapping[str, Any],
    request_id: str,
    status: str,
    problem: str,
) -> str:
    """Spool ``report`` (blocking); its path, or OutcomeUnrecorded."""
    if spool is None:
        raise unrecorded(request_id, status, f"{problem}, and no spool_dir is configured")
    try:
        return str(spool.put(report, request_id))
    except LedgerError as exc:
        raise unrecorded(request_id, status, f"{problem}, and the spool failed: {exc}") from None


def _warn_spooled(request_id: str, path: str, problem: str) -> None:
    log.warning(
        "outcome of request %s spooled to %s (%s); it is sent when the gateway answers",
        request_id,
        path,
        problem,
    )


class SyncReporter:
    """Blocking delivery over one :class:`SyncTransport`."""

    def __init__(
        self, http: SyncTransport, spool: OutcomeSpool | None, settings: RemoteSettings
    ) -> None:
        self._http = http
        self.spool = spool
        self._settings = settings
        self.pending = spool is not None and spool.depth() > 0
        """Spooled outcomes may be waiting (set at start and whenever one is spooled)."""
        self._flushing = threading.Lock()

    def post(self, report: Mapping[str, Any]) -> Reply | None:
        """One ``POST /v1/executions`` (None when no answer came)."""
        try:
            return self._http.call("POST", EXECUTIONS_PATH, json=report)
        except Unreachable:
            return None

    def deliver(self, report: Mapping[str, Any], request_id: str, status: str) -> None:
        """Deliver ``report`` or spool it; OutcomeUnrecorded when neither took it."""
        reply: Reply | None = None
        for attempt in range(self._settings.report_attempts):
            if attempt:
                time.sleep(self._settings.report_backoff * 2 ** (attempt - 1))
            reply = self.post(report)
            outcome = delivery_of(reply)
            if outcome is Delivery.DONE:
                if self.pending:
                    self.flush_quietly()
                return
            if outcome is Delivery.REFUSED:
                raise unrecorded(
                    request_id, status, f"the gateway refused the report ({refusal_reason(reply)})"
                )
        problem = refusal_reason(reply)
        path = _spooled(self.spool, report, request_id, status, problem)
        self.pending = True
        _warn_spooled(request_id, path, problem)

    def flush(self) -> int:
        """Send spooled outcomes now; how many the gateway took (see :mod:`.outcomes`)."""
        if self.spool is None:
            return 0
        with self._flushing:
            report = self.spool.drain(self.post)
        if report.error is None:
            self.pending = False
        else:
            log.warning("spooled outcomes not all sent: %s", report.error)
        return report.already_logged

    def flush_quietly(self) -> None:
        """:meth:`flush`, unless one is running; a failure is logged, never raised."""
        if self._flushing.locked():
            return
        try:
            self.flush()
        except Exception as exc:  # a drain failure must never fail the caller's call
            log.warning("sending spooled outcomes failed: %s", exc)


class AsyncReporter:
    """Non-blocking delivery over one :class:`AsyncTransport` (disk work in a thread)."""

    def __init__(
        self, http: AsyncTransport, spool: OutcomeSpool | None, settings: RemoteSettings
    ) -> None:
        self._http = http
        self.spool = spool
        self._settings = settings
        self.pending = spool is not None and spool.depth() > 0
        """Spooled outcomes may be waiting (set at start and whenever one is spooled)."""
        self._flushing = False

    async def post(self, report: Mapping[str, Any]) -> Reply | None:
        """One ``POST /v1/executions`` (None when no answer came)."""
        try:
            return await self._http.call("POST", EXECUTIONS_PATH, json=report)
        except Unreachable:
            return None

    async def deliver(self, report: Mapping[str, Any], request_id: str, status: str) -> None:
        """Deliver ``report`` or spool it; OutcomeUnrecorded when neither took it."""
        reply: Reply | None = None
        for attempt in range(self._settings.report_attempts):
            if attempt:
                await anyio.sleep(self._settings.report_backoff * 2 ** (attempt - 1))
            reply = await self.post(report)
            outcome = delivery_of(reply)
            if outcome is Delivery.DONE:
                if self.pending:
                    await self.flush_quietly()
                return
            if outcome is Delivery.REFUSED:
                raise unrecorded(
                    request_id, status, f"the gateway refused the report ({refusal_reason(reply)})"
                )
        problem = refusal_reason(reply)
        path = await anyio.to_thread.run_sync(
            _spooled, self.spool, report, request_id, status, problem
        )
        self.pending = True
        _warn_spooled(request_id, path, problem)

    async def flush(self) -> int:
        """Send spooled outcomes now; how many the gateway took (see :mod:`.outcomes`)."""
        spool = self.spool
        if spool is None or self._flushing:
            return 0
        self._flushing = True
        try:

            def deliver(report: Mapping[str, Any]) -> Reply | None:
                return anyio.from_thread.run(self.post, report)

            report = await anyio.to_thread.run_sync(spool.drain, deliver)
        finally:
            self._flushing = False
        if report.error is None:
            self.pending = False
        else:
            log.warning("spooled outcomes not all sent: %s", report.error)
        return report.already_logged

    async def flush_quietly(self) -> None:
        """:meth:`flush`, unless one is running; a failure is logged, never raised."""
        if self._flushing:
            return
        try:
            await self.flush()
        except Exception as exc:  # a drain failure must never fail the caller's call
            log.warning("sending spooled outcomes failed: %s", exc)
