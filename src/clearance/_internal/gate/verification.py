"""The gate's executor-side grant check, and the audit record of every refusal.

Invariants (fail-closed rules 6 and 13):

* A grant is checked by :func:`~clearance._internal.grants.token.verify_grant` against
  the ring's keys that were logged as ``key`` entries (:meth:`GateKeys.trusted`), with
  the gate's issuer, the audience the grant must carry and a replay guard that
  consumes its ``jti``.
* Every refusal is appended to the ledger as an ``execution`` entry with status
  ``rejected``, the precise reason, and ``unverified_claims: true`` (its request id,
  decision index and jti come from the *unverified* grant); if the ledger refuses it,
  it is spooled. The caller only ever sees the opaque
  :class:`~clearance.errors.InvalidGrant`, and the reason is logged on
  ``clearance.gate`` at INFO.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from clearance._internal import entries
from clearance._internal.gate.key_trust import GateKeys
from clearance._internal.gate.spool import Spool
from clearance._internal.grants.jti_store import ReplayGuard
from clearance._internal.grants.token import GrantClaims, peek_claims, verify_grant
from clearance._internal.intent import Intent
from clearance._internal.ledger.store import LedgerStore
from clearance.errors import Error, InputError, InvalidGrant, LedgerError

log = logging.getLogger("clearance.gate")


class SingleUse:
    """The replay guard of one in-process verification: accepts the first jti it sees, once."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: str | None = None

    def consume(self, jti: str, exp: float, now: float) -> None:
        """Accept ``jti`` if it is the first one; InvalidGrant for any later one."""
        if self._seen is not None:
            raise InvalidGrant(f"replayed jti {jti!r} (in-process grant)")
        self._seen = jti

    def close(self) -> None:
        """Nothing to release."""


class GrantVerifier:
    """Checks grants presented to one gate and records every refusal."""

    def __init__(
        self,
        *,
        keys: GateKeys,
        ledger: LedgerStore,
        spool: Spool | None,
        clock: Callable[[], float],
        issuer: str,
        executor: str,
        leeway: float,
    ) -> None:
        """Verify with ``keys`` for ``issuer``; record refusals as ``executor``."""
        self._keys = keys
        self._ledger = ledger
        self._spool = spool
        self._clock = clock
        self._issuer = issuer
        self._executor = executor
        self._leeway = leeway

    def verify(
        self,
        grant: str,
        intent: Intent | Mapping[str, Any],
        *,
        audience: str,
        replay: ReplayGuard,
    ) -> GrantClaims:
        """The claims of ``grant`` if it verifies for ``intent``; else record why and raise."""
        now = self._clock()
        try:
            keys = self._keys.trusted(grant, now) if isinstance(grant, str) else {}
            return verify_grant(
                grant,
                intent if isinstance(intent, Intent) else Intent.from_json(intent),
                keys=keys,
                audience=audience,
                issuer=self._issuer,
                now=now,
                replay=replay,
                leeway=self._leeway,
            )
        except InvalidGrant as exc:
            reason = exc.audit_reason
            if reason.startswith("intent digest mismatch") and _unbound(intent):
                # The usual mistake, named in the audit log (the caller still learns nothing).
                reason += (
                    "; the presented intent has no trace_id: verify against "
                    "Authorization.intent, which carries the trace the gate bound it to"
                )
                exc = InvalidGrant(reason)
            log.info("grant refused: %s", reason)
            self._record_rejection(grant, reason, now)
            raise exc from None
        except InputError as exc:
            self._record_rejection(grant, f"malformed intent: {exc}", now)
            raise InvalidGrant(f"malformed intent: {exc}") from None
        except LedgerError as exc:
            self._record_rejection(grant, f"key check failed: {exc}", now)
            raise InvalidGrant(f"key check failed: {exc}") from None

    def _record_rejection(self, grant: str, reason: str, now: float) -> None:
        try:
            unverified = peek_claims(grant) or {}
        except Error:
            unverified = {}
        rid = unverified.get("rid")
        lix = unverified.get("lix")
        entry = entries.execution_entry(
            now,
            request_id=rid if isinstance(rid, str) else "unknown",
            trace_id=None,
            decision_index=lix if isinstance(lix, int) and not isinstance(lix, bool) else -1,
            jti=str(unverified.get("jti", ""))[:200],
            status="rejected",
            error_type=reason[:500],
            result_digest=None,
            duration_us=0,
            executor=self._executor,
        )
        # request_id, decision_index and jti above come from the UNVERIFIED grant.
        entry["unverified_claims"] = True
        try:
            self._ledger.append(entry)
        except (LedgerError, InputError) as exc:
            log.warning("could not log a grant rejection: %s", exc)
            if self._spool is not None:
                with contextlib.suppress(LedgerError, InputError):
                    self._spool.put(entry)


def _unbound(intent: Intent | Mapping[str, Any]) -> bool:
    """True when ``intent`` names no trace (so it cannot be what the gate decided)."""
    if isinstance(intent, Intent):
        return intent.trace_id is None
    return isinstance(intent, Mapping) and intent.get("trace_id") is None
