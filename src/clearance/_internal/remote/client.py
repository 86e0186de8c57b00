"""The blocking remote SDK: :class:`Client`, the in-process gate's interface over HTTP.

Invariants (see :mod:`.session` for what every reply must pass):

* A ``with client.clearance(...)`` body, and a ``@client.governed`` function, runs
  only after the gateway allowed the intent (ledger first, on its side) AND the
  grant passed every local check. Any failure before that (denied, unreachable
  gateway, 5xx, a tampered, replayed or mismatched reply) raises and nothing runs
  (fail closed).
* After the body, exactly one outcome report is made: delivered, spooled (WARNING;
  the body's result stands), or :class:`~clearance.errors.OutcomeUnrecorded` raised.
* Spooled outcomes are sent after the next successful exchange, by
  :meth:`Client.flush`, and by the first exchange of a client started later on the
  same spool.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import AbstractContextManager
from datetime import timedelta
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

import httpx

from clearance._internal.gate.cleared import Authorization, Cleared
from clearance._internal.gate.traces import RunningRequest, Trace, enter_request, exit_request
from clearance._internal.intent import Intent
from clearance._internal.policy.engine import Decision
from clearance._internal.remote import approvals
from clearance._internal.remote.binding import Bound
from clearance._internal.remote.governed import governed_sync
from clearance._internal.remote.outcomes import OutcomeSpool
from clearance._internal.remote.reporter import SyncReporter
from clearance._internal.remote.session import (
    AUTHORIZE_PATH,
    EVALUATE_PATH,
    JWKS_PATH,
    TRACES_PATH,
    Session,
    checked_id,
)
from clearance._internal.remote.settings import RemoteSettings
from clearance._internal.remote.transport import SyncTransport
from clearance._internal.remote.wire import Reply, Unreachable, error_for, unreachable_error

P = ParamSpec("P")
R = TypeVar("R")


class Client:
    """A blocking client of ``clearance serve`` with the in-process gate's interface.

    ``url`` is the gateway's base URL and ``api_key`` a key from ``clearance api-keys
    create``. ``spool_dir`` keeps outcomes the gateway could not take (strongly
    recommended; without it such an outcome raises OutcomeUnrecorded). ``issuer`` and
    ``audience`` pin the grants' ``iss`` and ``aud`` (else pinned from the first grant
    that verifies against the gateway's JWKS); ``principal`` pins the key's principal
    the same way. ``transport`` is an ``httpx.BaseTransport`` (tests, proxies).
    ``executor`` names this process in outcome reports. ``settings``
    (:class:`clearance.client.RemoteSettings`) tunes retries, back-off, approval polling
    and the leeway; given, it replaces ``timeout``.
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        spool_dir: str | os.PathLike[str] | None = None,
        transport: httpx.BaseTransport | None = None,
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
        self._http = SyncTransport(self._session.url, api_key, settings, transport=transport)
        spool = OutcomeSpool(spool_dir, api_key) if spool_dir is not None else None
        self._reporter = SyncReporter(self._http, spool, settings)

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

    def _call(
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
            reply = self._http.call(method, path, json=json, params=params, timeout=timeout)
        except Unreachable as exc:
            raise unreachable_error(exc, fail_closed=fail_closed) from None
        if reply.ok and self._reporter.pending:
            self._reporter.flush_quietly()
        return reply

    def _keys_for(self, body: Any) -> None:
        """Fetch the JWKS when the reply's grant names a kid the cache lacks (rate-limited)."""
        if self._session.jwks.needs_fetch(self._session.grant_of(body)):
            try:
                reply: Reply | None = self._http.call("GET", JWKS_PATH)
            except Unreachable:
                reply = None
            self._session.adopt_jwks(reply)

    def _verified(self, body: Any, sent: Mapping[str, Any]) -> Cleared:
        self._keys_for(body)
        return self._session.cleared(body, sent)

    # -- traces ------------------------------------------------------------------------

    def open_trace(
        self,
        mandate: str = "",
        *,
        bounds: Mapping[str, Any] | None = None,
        principal: str | None = None,
    ) -> Trace:
        """Open a trace with the human's mandate (orchestrator or admin keys); its handle.

        Trusted application code only, never text a model wrote. ``principal`` is the
        agent whose intents may run in it (default: this key's). Use the handle with
        ``clearance(intent, trace=handle)`` or ``with handle.active():``.
        """
        request = self._session.trace_request(mandate, bounds, principal)
        reply = self._call("POST", TRACES_PATH, fail_closed=False, json=request)
        return self._session.opened_trace(reply, request)

    @contextlib.contextmanager
    def trace(
        self,
        mandate: str = "",
        *,
        bounds: Mapping[str, Any] | None = None,
        principal: str | None = None,
    ) -> Iterator[Trace]:
        """Open a trace (:meth:`open_trace`) and make it active for the ``with`` body."""
        handle = self.open_trace(mandate, bounds=bounds, principal=principal)
        with handle.active():
            yield handle

    def resume_trace(self, trace_id: str) -> Trace:
        """A handle for a trace opened earlier (read from the gateway; trusted code only)."""
        checked_id("trace id", trace_id)
        reply = self._call(
            "GET", f"{TRACES_PATH}/{trace_id}", fail_closed=False, params={"limit": 1}
        )
        return self._session.resumed_trace(reply, trace_id)

    # -- decisions ---------------------------------------------------------------------

    def evaluate(
        self, intent: Intent | Mapping[str, Any], *, trace: Trace | None = None
    ) -> tuple[Decision, dict[str, Any]]:
        """Dry run: the decision the gateway would make for ``intent`` now, and its facts."""
        bound = self._session.bind(intent, trace)
        reply = self._call("POST", EVALUATE_PATH, fail_closed=False, json={"intent": bound.sent})
        return self._session.evaluation(reply)

    def authorize(
        self, intent: Intent | Mapping[str, Any], *, trace: Trace | None = None
    ) -> Authorization:
        """Decide ``intent`` and return its verified grant, to hand to a tool service.

        Raises Denied, ApprovalRequired (with ``approval_id``), BindingError, InputError,
        or InvalidGrant when the reply fails the local checks. Never returns without a
        grant that verified here.
        """
        bound = self._session.bind(intent, trace)
        return self._decide(bound, wait=None).authorization

    def _decide(self, bound: Bound, *, wait: float | None) -> Cleared:
        reply = self._call("POST", AUTHORIZE_PATH, fail_closed=True, json=bound.sent)
        approval_id = self._session.decision(reply, bound)
        if approval_id is None:
            return self._verified(reply.body, bound.sent)
        if wait is None:
            raise self._session.approval_required(approval_id, reply.body)
        return self._collect(approval_id, wait)

    def _collect(self, approval_id: str, wait: float | None) -> Cleared:
        """Wait (long poll) for the approval, collect its grant once, and check it."""
        settings = self._session.settings
        deadline = time.monotonic() + (wait or 0.0)
        while True:
            started = time.monotonic()
            remaining = deadline - started
            params: dict[str, str | int] = {}
            if remaining > 0:
                params["wait"] = approvals.poll_seconds(remaining)
            reply = self._call(
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
                grant = self._call(
                    "POST", f"/v1/approvals/{approval_id}/grant", fail_closed=True, json={}
                )
                if grant.status == 200:
                    sent = self._session.sent_for(state)
                    self._session.forget(approval_id)
                    return self._verified(grant.body, sent)
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
                time.sleep(min(pause, left))

    def clearance(
        self,
        intent: Intent | Mapping[str, Any],
        *,
        trace: Trace | None = None,
        wait: timedelta | float | None = None,
    ) -> AbstractContextManager[Cleared]:
        """Authorize ``intent`` through the gateway, verify the grant here, govern the body.

        ``wait`` (a timedelta or seconds) waits that long for a human approval the
        policy asks for, then runs the body or raises; without it ApprovalRequired is
        raised at once (``resume`` collects later). Governed calls inside the body run
        in the same trace with this request as their parent. The outcome is reported
        after the body.
        """
        return RemoteCall(self, intent, trace, approvals.wait_seconds(wait))

    def resume(
        self, approval_id: str, *, wait: timedelta | float | None = None
    ) -> AbstractContextManager[Cleared]:
        """Continue a call that raised ApprovalRequired: collect its grant and run the body.

        ``with client.resume(approval_id, wait=timedelta(minutes=5)) as cleared:``; the
        body runs the approved intent (``cleared.authorization.intent``), exactly once.
        """
        checked_id("approval id", approval_id)
        return RemoteCall(self, None, None, approvals.wait_seconds(wait), approval_id=approval_id)

    def governed(
        self,
        action: str | None = None,
        *,
        resource: str | Callable[[Mapping[str, Any]], str] | None = None,
        purpose: str | None = None,
        exclude: Collection[str] = (),
        args: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
        wait: timedelta | float | None = None,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorate a function so every call is a governed call through the gateway.

        As :meth:`clearance.Gate.governed` (the intent's args are the bound arguments
        minus ``exclude``, or built by ``args``), with the principal taken from the API
        key. A coroutine function is supported too: the exchanges then run in a worker
        thread, the body on the event loop.
        """
        return governed_sync(
            self,
            action,
            resource=resource,
            purpose=purpose,
            exclude=exclude,
            args=args,
            wait=approvals.wait_seconds(wait),
        )

    # -- outcomes ----------------------------------------------------------------------

    def _deliver(self, report: Mapping[str, Any], request_id: str, status: str) -> None:
        self._reporter.deliver(report, request_id, status)

    def flush(self) -> int:
        """Send spooled outcomes now; returns how many the gateway took.

        Stops at the first transient failure (the rest stay spooled). Files that fail
        authentication, or that the gateway refuses for good, are quarantined with a
        WARNING on ``clearance.spool``.
        """
        return self._reporter.flush()

    # -- lifetime ----------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection pool (spooled outcomes stay on disk)."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RemoteCall:
    """The context manager :meth:`Client.clearance` and :meth:`Client.resume` return.

    :meth:`open` makes the exchanges and checks (no context change), ``__enter__`` then
    marks the request as running; :meth:`finish` reports the outcome. The split lets
    the decorator run the exchanges in a worker thread around an async body.
    """

    def __init__(
        self,
        client: Client,
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

    def open(self) -> tuple[Cleared, RunningRequest]:
        """Authorize (or collect the approved grant), verify it here; nothing runs yet."""
        if self._entered:
            raise RuntimeError("a clearance context is entered once; call clearance() again")
        self._entered = True
        client, session = self._client, self._client._session
        if self._approval_id is not None:
            cleared = client._collect(self._approval_id, self._wait)
            return cleared, session.running(cleared, 0)
        if self._intent is None:
            raise RuntimeError("internal: a clearance call without an intent or approval id")
        bound = session.bind(self._intent, self._trace)
        cleared = client._decide(bound, wait=self._wait)
        return cleared, session.running(cleared, bound.depth)

    def finish(
        self, cleared: Cleared, exc_type: type[BaseException] | None, duration_us: int
    ) -> None:
        """Report the outcome of the body that ran."""
        status, error_type = ("ok", None) if exc_type is None else ("error", exc_type.__qualname__)
        report = self._client._session.report(cleared, status, error_type, duration_us)
        self._client._deliver(report, cleared.request_id, status)

    def __enter__(self) -> Cleared:
        self._cleared, running = self.open()
        self._token = enter_request(running)
        self._started = time.perf_counter()
        return self._cleared

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        duration_us = int((time.perf_counter() - self._started) * 1e6)
        exit_request(self._token)
        self.finish(self._cleared, exc_type, duration_us)
