"""The optional webhook that announces each new pending approval (``approvals.webhook_url``).

What is sent: ``POST <webhook_url>`` with a JSON body (RFC 8785 bytes)::

    {"type": "approval.pending", "delivery_id": "<random hex>", "timestamp": <POSIX s>,
     "approval": {"approval_id", "request_id", "trace_id", "decision_index", "action",
                  "principal", "intent_digest", "rules", "required", "approvers",
                  "expires_at"}}

and the headers ``Clearance-Signature: sha256=<hex HMAC-SHA256 of the body, keyed with
the secret>``, ``Clearance-Timestamp`` (the body's ``timestamp``) and
``Clearance-Delivery`` (the body's ``delivery_id``, the same on every retry). A receiver
recomputes the HMAC over the raw body, compares in constant time, and refuses a stale
``timestamp`` (replay) and a ``delivery_id`` it has seen (a retry it already handled).

Invariants:

* A webhook never changes a decision and never blocks the caller: :meth:`notify` only
  queues (a full queue drops the notice, logged), and delivery runs on one background
  thread.
* Each notice is tried at most ``attempts`` times: a connection error, a timeout, a 5xx,
  408 or 429 answer is retried after an exponential backoff (``backoff``, doubled each
  time, at most ``max_backoff`` seconds); any other non-2xx answer is final. Every
  failure is logged on ``clearance.gate`` (WARNING per attempt, ERROR when it gives up);
  the secret is never logged.
* :meth:`close` stops the thread at once (a backoff wait is interrupted); notices still
  queued are dropped and counted in the log.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from clearance._internal.approvals.settings import ApprovalSettings, read_webhook_secret
from clearance._internal.canonical import canonical_json

if TYPE_CHECKING:
    import httpx

__all__ = ["SIGNATURE_HEADER", "ApprovalWebhook", "signature", "summary_of", "webhook_for"]

log = logging.getLogger("clearance.gate")

SIGNATURE_HEADER: Final = "Clearance-Signature"
TIMESTAMP_HEADER: Final = "Clearance-Timestamp"
DELIVERY_HEADER: Final = "Clearance-Delivery"
_RETRY_STATUSES: Final = frozenset({408, 429})
_SUMMARY_KEYS: Final = (
    "approval_id",
    "request_id",
    "trace_id",
    "decision_index",
    "action",
    "principal",
    "intent_digest",
    "rules",
    "required",
    "approvers",
)


def signature(secret: bytes, body: bytes) -> str:
    """The ``Clearance-Signature`` value of ``body``: ``sha256=`` + hex HMAC-SHA256."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def summary_of(pending: Mapping[str, Any], expires_at: float) -> dict[str, Any]:
    """The ``approval`` member of a notice, from a ``pending`` approval entry."""
    return {**{key: pending.get(key) for key in _SUMMARY_KEYS}, "expires_at": expires_at}


class ApprovalWebhook:
    """Delivers notices of new pending approvals (see the module docstring)."""

    def __init__(
        self,
        url: str,
        secret: bytes,
        *,
        attempts: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        timeout: float = 5.0,
        capacity: int = 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Post to ``url``, signing with ``secret``; ValueError for nonsensical numbers."""
        if not secret:
            raise ValueError("a webhook needs a non-empty secret")
        if attempts < 1 or backoff < 0 or max_backoff < backoff or timeout <= 0 or capacity < 1:
            raise ValueError(
                "attempts >= 1, 0 <= backoff <= max_backoff, timeout > 0, capacity >= 1"
            )
        self.url = url
        self._secret = secret
        self._attempts = attempts
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._timeout = timeout
        self._clock = clock
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(capacity)
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._busy = 0
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.delivered = 0
        """Notices the receiver acknowledged with a 2xx."""
        self.failed = 0
        """Notices given up on (or dropped)."""

    def __repr__(self) -> str:
        return f"ApprovalWebhook({self.url!r})"  # never the secret

    def notify(self, approval: Mapping[str, Any]) -> None:
        """Queue a notice about ``approval`` (a :func:`summary_of` dict). Never raises."""
        try:
            if self._stop.is_set():
                return
            self._ensure_thread()
            with self._idle:
                self._busy += 1
            try:
                self._queue.put_nowait(dict(approval))
            except queue.Full:
                with self._idle:
                    self._busy -= 1
                    self._idle.notify_all()
                self.failed += 1
                log.error(
                    "approval webhook queue full: notice of %s dropped", approval.get("approval_id")
                )
        except Exception as exc:  # a notice must never disturb the decision that caused it
            log.error("approval webhook: cannot queue a notice: %r", exc)

    def drain(self, timeout: float) -> bool:
        """Wait until every queued notice was delivered or given up; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def close(self) -> None:
        """Stop delivering; notices not yet delivered are dropped (logged)."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=self._timeout + 1)
        left = self._queue.qsize()
        if left:
            log.warning("approval webhook closed with %d notice(s) undelivered", left)

    def _ensure_thread(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(
                    target=self._run, name="clearance-approval-webhook", daemon=True
                )
                thread.start()
                self._thread = thread

    def _run(self) -> None:
        import httpx  # only a gate with a webhook pays for it

        with httpx.Client(timeout=self._timeout, follow_redirects=False) as client:
            while not self._stop.is_set():
                try:
                    approval = self._queue.get(timeout=0.2)
                except queue.Empty:
                    continue
                try:
                    self._deliver(client, approval)
                except Exception as exc:  # never let the delivery thread die
                    self.failed += 1
                    log.error("approval webhook: delivery failed unexpectedly: %r", exc)
                finally:
                    with self._idle:
                        self._busy -= 1
                        self._idle.notify_all()

    def _deliver(self, client: httpx.Client, approval: Mapping[str, Any]) -> None:
        import httpx

        delivery = secrets.token_hex(16)
        approval_id = approval.get("approval_id")
        for attempt in range(1, self._attempts + 1):
            timestamp = int(self._clock())
            body = canonical_json(
                {
                    "type": "approval.pending",
                    "delivery_id": delivery,
                    "timestamp": timestamp,
                    "approval": approval,
                }
            )
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: signature(self._secret, body),
                TIMESTAMP_HEADER: str(timestamp),
                DELIVERY_HEADER: delivery,
                "User-Agent": "clearance-approvals",
            }
            retry = True
            try:
                response = client.post(self.url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if 200 <= response.status_code < 300:
                    self.delivered += 1
                    return
                problem = f"HTTP {response.status_code}"
                retry = response.status_code >= 500 or response.status_code in _RETRY_STATUSES
            if not retry or attempt == self._attempts:
                self.failed += 1
                log.error(
                    "approval webhook gave up on the notice of %s after %d attempt(s): %s",
                    approval_id,
                    attempt,
                    problem,
                )
                return
            delay = min(self._backoff * 2 ** (attempt - 1), self._max_backoff)
            log.warning(
                "approval webhook attempt %d/%d for %s failed (%s); retrying in %.2f s",
                attempt,
                self._attempts,
                approval_id,
                problem,
                delay,
            )
            if self._stop.wait(delay):
                return


def webhook_for(settings: ApprovalSettings, home: Path) -> ApprovalWebhook | None:
    """The webhook ``settings`` configure for the home at ``home``, or None.

    Reads the secret file now, so a gate with a webhook it cannot sign for refuses to
    open (InputError naming the file) instead of sending unsigned notices.
    """
    secret = read_webhook_secret(settings, home)
    if secret is None or settings.webhook_url is None:
        return None
    return ApprovalWebhook(settings.webhook_url, secret)
