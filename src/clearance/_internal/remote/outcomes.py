"""Outcome reports (``POST /v1/executions``) and the spool that keeps them when the gateway is down.

Invariants (docs/design.md §1 step 7, over HTTP):

* An outcome is never lost silently. A report is delivered (201, or 409: the
  gateway already holds an outcome for that grant, which counts as done), or, after
  a few tries on a connection error, a 5xx or a 429, written to the spool, with a
  WARNING; or, when the gateway refuses it for good (any other 4xx) or the spool
  cannot take it either, the caller gets :class:`~clearance.errors.OutcomeUnrecorded`
  and an ERROR is logged on ``clearance.client``.
* The spool is the gate's own :class:`~clearance._internal.gate.spool.Spool`: one file
  per outcome, written to a fresh name, fsynced and renamed into place before
  :meth:`OutcomeSpool.put` returns. Files are sealed (HMAC-SHA256) under a key derived
  from the client's API key, in a subdirectory named by a fingerprint of the key, so
  clients with different keys can share a ``spool_dir``, and a file nobody holding
  the key wrote is quarantined, never sent.
* Draining sends each spooled report once more: delivered (201/409) removes the
  file; refused for good quarantines it (kept for a human, with a WARNING naming the
  reason); a transient failure stops the drain and leaves the rest for next time.
* A spooled report holds the grant, which by then is spent or expired (it lives at
  most 60 s); the spool directory is created 0700 and its files 0600.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from clearance._internal.gate.cleared import Cleared
from clearance._internal.remote.wire import Reply
from clearance.errors import LedgerError, OutcomeUnrecorded

if TYPE_CHECKING:
    from clearance._internal.gate.spool import DrainReport

log = logging.getLogger("clearance.client")

CLIENT_SPOOL_PURPOSE: Final[str] = "clearance/v1 client outcome spool"
"""HKDF ``info`` of the key sealing a client's spool files (:mod:`clearance._internal.sealing`)."""
EXECUTIONS_PATH: Final[str] = "/v1/executions"


class Delivery(enum.Enum):
    """What a reply to ``POST /v1/executions`` means for the report."""

    DONE = "done"
    """Recorded now (201) or already (409)."""
    TRANSIENT = "transient"
    """Try again later: 5xx, 429, or no answer."""
    REFUSED = "refused"
    """The gateway will never take it (401, 403, 404, 422...)."""


def delivery_of(reply: Reply | None) -> Delivery:
    """Classify a reply (None: the exchange failed below HTTP)."""
    if reply is None or reply.status >= 500 or reply.status == 429:
        return Delivery.TRANSIENT
    if reply.ok or reply.status == 409:
        return Delivery.DONE
    return Delivery.REFUSED


def refusal_reason(reply: Reply | None) -> str:
    """A one-line account of why a report was not taken."""
    if reply is None:
        return "the gateway is unreachable"
    error = reply.member("error")
    message = error.get("message") if isinstance(error, dict) else None
    return f"HTTP {reply.status}" + (f": {str(message)[:300]}" if message else "")


def report_body(
    cleared: Cleared, *, status: str, error_type: str | None, duration_us: int, executor: str
) -> dict[str, Any]:
    """The body of ``POST /v1/executions`` for a governed body that ran."""
    auth = cleared.authorization
    return {
        "grant": auth.grant,
        "intent": auth.intent.to_json(),
        "status": status,
        "result_digest": cleared.result_digest,
        "duration_us": max(0, int(duration_us)),
        "executor": executor,
        "error_type": error_type,
    }


def unrecorded(request_id: str, status: str, problem: str) -> OutcomeUnrecorded:
    """Log at ERROR and build the OutcomeUnrecorded for a body that ran without a record."""
    log.error("outcome of request %s UNRECORDED after its body ran: %s", request_id, problem)
    return OutcomeUnrecorded(
        f"the body of request {request_id} ran, but its outcome ({status}) could not be "
        f"recorded: {problem}",
        request_id=request_id,
    )


def key_fingerprint(api_key: str) -> str:
    """16 hex digits naming an API key's spool subdirectory (not the key, not reversible)."""
    return hashlib.sha256(b"clearance client spool\x00" + api_key.encode("utf-8")).hexdigest()[:16]


class OutcomeSpool:
    """The on-disk spool of one client (see the module invariants)."""

    def __init__(self, directory: str | os.PathLike[str], api_key: str) -> None:
        """Spool under ``directory/<key fingerprint>``; nothing is created until needed."""
        # Imported here: a tool service's guard loads this module without ever spooling.
        from clearance._internal.gate.spool import Spool
        from clearance._internal.sealing import derive_key

        self._spool = Spool(
            Path(directory) / key_fingerprint(api_key), derive_key(api_key, CLIENT_SPOOL_PURPOSE)
        )

    @property
    def directory(self) -> Path:
        """Where this client's outcomes wait."""
        return self._spool.directory

    def put(self, report: Mapping[str, Any], request_id: str) -> Path:
        """Write ``report`` durably; LedgerError if the disk refuses it."""
        return self._spool.put(
            {"type": "execution", "request_id": request_id, "report": dict(report)}
        )

    def depth(self) -> int:
        """How many files wait (unauthenticated count; a drain decides)."""
        return len(self._spool.pending())

    def drain(self, deliver: Callable[[Mapping[str, Any]], Reply | None]) -> DrainReport:
        """Send every authenticated spooled report with ``deliver`` (see the module invariants)."""
        from clearance._internal.gate.spool import SpoolVerdict

        def classify(entry: Mapping[str, Any]) -> SpoolVerdict:
            report = entry.get("report")
            if not isinstance(report, dict):
                return SpoolVerdict.reject("a sealed spool entry without a report")
            reply = deliver(report)
            outcome = delivery_of(reply)
            if outcome is Delivery.DONE:
                return SpoolVerdict.ALREADY_LOGGED
            if outcome is Delivery.REFUSED:
                return SpoolVerdict.reject(f"the gateway refused it: {refusal_reason(reply)}")
            raise LedgerError(
                f"the gateway did not take a spooled outcome: {refusal_reason(reply)}"
            )

        def never(entry: Mapping[str, Any]) -> None:  # classify delivers; nothing is appended
            raise LedgerError("internal: a client spool appends nothing locally")

        return self._spool.drain(never, classify)
