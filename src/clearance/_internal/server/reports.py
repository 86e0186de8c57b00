"""Outcome reports over HTTP: verify the grant, accept one report per grant, log refusals.

Invariants (docs/http-api.md "Executions"; fail-closed rules 6 and 13):

* A report is accepted only for a grant that :func:`~clearance._internal.grants.token.verify_grant`
  accepts: a signature by a key of the gate's ring that the ledger logged as a ``key``
  entry (:meth:`~clearance._internal.gate.key_trust.GateKeys.trusted`), the gate's issuer,
  the gate's executor audience, and the intent digest of the reported intent.
* Reports may be late: a grant that expired at most ``report_window`` seconds ago is
  checked as of its last valid second (``exp - 1``). Only the window moves; every
  other check is the same, and the expiry read before verification is the one the
  signature then covers (a forged ``exp`` fails the signature).
* One report per grant and reporter, for ever: under a per-grant lock the ledger is
  asked whether an ``ok``/``error`` execution entry for the grant's request and ``jti``
  from the same reporting principal exists (409 :class:`~clearance.errors.Conflict`),
  and only then is the new one appended. Per reporter, not per grant: the agent holds
  the grant before the tool runs, and a first-report-wins rule would let it pre-empt
  the tool service's own report with a made-up outcome. Each report names its
  authenticated reporter, so an auditor reads the tool's account beside the agent's.
  The ledger is the record, so this survives restarts; one ``clearance serve`` per
  ledger (the serve lock) makes the lock sufficient. Nothing is consumed before the
  append commits, so a report the ledger refused (503) can be sent again.
* Every refused grant is appended as a ``rejected`` execution entry with the precise
  reason and ``unverified_claims: true``; the caller sees only the opaque
  :class:`~clearance.errors.InvalidGrant`.
* The entry's ``executor`` is the reporting key's principal (authenticated); what the
  body calls itself is kept apart as ``executor_label`` (self-declared).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from clearance._internal import entries
from clearance._internal.gate.key_trust import GateKeys
from clearance._internal.grants.token import GrantClaims, peek_claims, verify_grant
from clearance._internal.intent import Intent
from clearance._internal.ledger.store import LedgerStore
from clearance.errors import Conflict, InputError, InvalidGrant, LedgerError

log = logging.getLogger("clearance.server")

_STRIPES = 256


class _Unguarded:
    """A replay guard that consumes nothing: single use is the ledger check below."""

    def consume(self, jti: str, exp: float, now: float) -> None:
        """Accept; :meth:`ReportDesk.record_outcome` enforces one report per grant."""

    def close(self) -> None:
        """Nothing to release."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a tool service reports about one granted call."""

    status: str
    result_digest: str | None
    duration_us: int
    error_type: str | None
    executor_label: str | None


class ReportDesk:
    """Takes outcome and refusal reports for one gate's ledger."""

    def __init__(
        self,
        *,
        ledger: LedgerStore,
        keys: GateKeys,
        issuer: str,
        audience: str,
        leeway: float,
        window: float,
        clock: Callable[[], float],
        on_rejected: Callable[[], None] = lambda: None,
    ) -> None:
        """Verify for ``issuer``/``audience`` with ``keys``; accept reports up to ``window``
        seconds after a grant expired. ``on_rejected`` counts refused grants (metrics)."""
        self._ledger = ledger
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway
        self._window = window
        self._clock = clock
        self._on_rejected = on_rejected
        self._locks = tuple(threading.Lock() for _ in range(_STRIPES))

    def record_outcome(
        self, grant: str, intent: Mapping[str, Any], outcome: Outcome, *, reporter: str
    ) -> tuple[GrantClaims, int]:
        """Verify ``grant`` for ``intent`` and append the outcome; returns the claims and index.

        InvalidGrant (logged as ``rejected``) for a grant that does not verify; Conflict
        when this grant's outcome was already reported; InputError for a malformed
        intent; LedgerError when the ledger refuses the entry (nothing is recorded).
        """
        now = self._clock()
        parsed = Intent.from_json(intent)
        claims = self._verify(grant, parsed, now, reporter)
        lock = self._locks[hash(claims.jti) % _STRIPES]
        with lock:
            for stored in self._ledger.find("execution", claims.rid):
                entry = stored.entry
                if (
                    entry.get("status") != "rejected"
                    and entry.get("jti") == claims.jti
                    and entry.get("executor") == reporter
                ):
                    raise Conflict(
                        f"{reporter} already reported the outcome of request {claims.rid} "
                        f"(ledger index {stored.index})"
                    )
            entry = entries.execution_entry(
                now,
                request_id=claims.rid,
                trace_id=parsed.trace_id,
                decision_index=claims.lix,
                jti=claims.jti,
                status=outcome.status,
                error_type=outcome.error_type,
                result_digest=outcome.result_digest,
                duration_us=outcome.duration_us,
                executor=reporter,
            )
            if outcome.executor_label is not None:
                entry["executor_label"] = outcome.executor_label
            index = self._ledger.append(entry)
        return claims, index

    def record_refusal(
        self,
        *,
        reason: str,
        grant: str | None,
        action: str | None,
        intent_digest: str | None,
        executor_label: str | None,
        reporter: str,
    ) -> int:
        """Append a tool service's refusal as a ``rejected`` execution entry; returns its index.

        Everything in it but ``executor`` (the reporting key's principal) is what the
        service said; the grant's claims are read unverified, as for any rejection.
        """
        entry = self._rejection(grant, reason, self._clock(), reporter)
        if action is not None:
            entry["action"] = action
        if intent_digest is not None:
            entry["intent_digest"] = intent_digest
        if executor_label is not None:
            entry["executor_label"] = executor_label
        index = self._ledger.append(entry)
        self._on_rejected()
        return index

    def _verify(self, grant: str, intent: Intent, now: float, reporter: str) -> GrantClaims:
        at = now
        unverified = peek_claims(grant) if isinstance(grant, str) else None
        exp = unverified.get("exp") if unverified else None
        if type(exp) is int and exp + self._leeway <= now < exp + self._window and exp - 1 >= 0:
            at = float(exp - 1)  # a late report: check as of the grant's last valid second
        try:
            return verify_grant(
                grant,
                intent,
                keys=self._keys.trusted(grant, now),
                audience=self._audience,
                issuer=self._issuer,
                now=at,
                replay=_Unguarded(),
                leeway=self._leeway,
            )
        except InvalidGrant as exc:
            reason = exc.audit_reason
            if at != now:
                reason += f" (a late report, checked as of {at:.0f})"
            log.info("outcome report refused: %s", reason)
            self._on_rejected()
            try:
                self._ledger.append(self._rejection(grant, reason, now, reporter))
            except (LedgerError, InputError) as problem:
                # The grant stays refused; only its audit record is missing (and logged).
                log.warning("could not log a refused outcome report (%s): %s", reason, problem)
            raise InvalidGrant(reason) from None

    @staticmethod
    def _rejection(grant: str | None, reason: str, now: float, reporter: str) -> dict[str, Any]:
        """A ``rejected`` execution entry; its request, decision and jti are UNVERIFIED."""
        unverified = (peek_claims(grant) if isinstance(grant, str) else None) or {}
        rid = unverified.get("rid")
        lix = unverified.get("lix")
        entry = entries.execution_entry(
            now,
            request_id=rid if isinstance(rid, str) and rid else "unknown",
            trace_id=None,
            decision_index=lix if type(lix) is int else -1,
            jti=str(unverified.get("jti", ""))[:200],
            status="rejected",
            error_type=reason[:500],
            result_digest=None,
            duration_us=0,
            executor=reporter,
        )
        entry["unverified_claims"] = True
        return entry
