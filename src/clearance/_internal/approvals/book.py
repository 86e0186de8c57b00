"""One gate's approvals: reading, voting, expiring, collecting, and waiting for a change.

Invariants (docs/design.md §9; fail-closed rule 7):

* Every step is an ``approval`` entry, linked to its decision, appended before anyone is
  told about it: a vote and the status it reaches go in one commit
  (:meth:`~clearance._internal.ledger.store.LedgerStore.append_many`); ``expired`` is
  appended by the first reader after ``expires_at`` (and by :meth:`ApprovalBook.expire_due`);
  ``collected`` is appended before the grant leaves the book.
* What a caller gets is read from the ledger and proven (inclusion in the verified tree)
  at that moment: the approval's entries and its decision entry, which must name each
  other (:class:`~clearance.errors.TamperError` otherwise). The in-memory index
  (:mod:`.index`) only finds them.
* Changes to one approval are serialized in this process (a lock per approval). Across
  processes the log order decides (:mod:`.fold`): after appending, the book reads the
  approval again and raises :class:`~clearance.errors.Conflict` unless its step counted.
  So a vote counts once, and a grant is collected once, even by two processes at once
  or after a restart.
* Nothing grants unless the approval is approved: pending raises
  :class:`~clearance.errors.ApprovalRequired`, denied and expired raise
  :class:`~clearance.errors.Denied`, collected raises Conflict.
* Waiters wake as soon as this process changes an approval, and look at the ledger again
  at least every ``poll_interval`` seconds otherwise, which is how a change made by
  another process (``clearance approvals approve``) is noticed. Nobody spins.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any, Final

from clearance._internal import entries
from clearance._internal.approvals.fold import Fold, snapshot, terms_of
from clearance._internal.approvals.grants import ApprovalGrants
from clearance._internal.approvals.index import ApprovalIndex
from clearance._internal.approvals.model import STATUSES, VOTE_DECISIONS, Approval, Status
from clearance._internal.approvals.webhook import ApprovalWebhook, summary_of
from clearance._internal.gate.cleared import Authorization
from clearance._internal.grants.keys import SigningKey
from clearance._internal.grants.token import GrantClaims, issue_grant
from clearance._internal.intent import PRINCIPAL_PATTERN, Intent
from clearance._internal.ledger.store import LedgerStore
from clearance._internal.limits import MAX_APPROVAL_TTL
from clearance._internal.policy.engine import Decision, Reason
from clearance.errors import (
    ApprovalRequired,
    Conflict,
    Denied,
    InputError,
    NotFound,
    NotPermitted,
    SigningKeyError,
    TamperError,
)

__all__ = ["MAX_LIST", "MAX_REASON", "ApprovalBook", "wait_seconds"]

log = logging.getLogger("clearance.gate")

MAX_LIST: Final = 1000
"""Most approvals one listing returns."""
MAX_REASON: Final = 2000
"""Longest vote reason, in characters."""
_MAX_ID: Final = 64
_STRIPES: Final = 64
_INTENTS: Final = 1024


def _shown(value: str) -> str:
    return repr(value if len(value) <= _MAX_ID else value[:_MAX_ID] + "…")


class ApprovalBook:
    """The approvals of one ledger, for one gate or one command (see the module docstring)."""

    def __init__(
        self,
        *,
        ledger: LedgerStore,
        clock: Callable[[], float],
        grants: ApprovalGrants | None = None,
        webhook: ApprovalWebhook | None = None,
        poll_interval: float = 0.25,
    ) -> None:
        """Keep the approvals of ``ledger``; ``grants`` signs collected grants (None: a book
        that cannot issue any, such as the command line's); ``webhook`` announces new ones."""
        if not 0 < poll_interval <= 5:
            raise ValueError("poll_interval must be within (0, 5] seconds")
        self._ledger = ledger
        self._clock = clock
        self._grants = grants
        self.webhook = webhook
        self._poll = poll_interval
        self._index = ApprovalIndex(ledger)
        self._locks = [threading.Lock() for _ in range(_STRIPES)]
        self._changed = threading.Condition()
        self._version = 0
        self._intents: OrderedDict[str, Intent] = OrderedDict()
        self._intents_lock = threading.Lock()

    def close(self) -> None:
        """Stop the webhook (the ledger belongs to the caller)."""
        if self.webhook is not None:
            self.webhook.close()

    # --- new approvals (called by the authorizer) ------------------------------------

    def created(self, pending: Mapping[str, Any], intent: Intent) -> None:
        """A ``pending`` entry was appended for ``intent``: remember the intent, announce it.

        Keeping the intent lets this process hand the real one (not its redacted ledger
        form) back with the grant. Never raises: nothing here may change the decision.
        """
        try:
            approval_id = str(pending.get("approval_id"))
            with self._intents_lock:
                self._intents[approval_id] = intent
                while len(self._intents) > _INTENTS:
                    self._intents.popitem(last=False)
            if self.webhook is not None:
                expires_at = terms_of(pending, int(pending["decision_index"]) + 1).expires_at
                self.webhook.notify(summary_of(pending, expires_at))
        except Exception as exc:
            log.error("new approval %s not announced: %r", pending.get("approval_id"), exc)

    # --- reading ---------------------------------------------------------------------

    def get(self, approval_id: str) -> Approval:
        """The approval now (NotFound); a reader after ``expires_at`` appends ``expired``."""
        self._index.sync()
        with self._lock_of(approval_id):
            fold, decision = self._read(approval_id)
            now = self._clock()
            if fold.state == "pending" and fold.status_at(now) == "expired":
                fold, decision = self._expire(fold, now)
            return snapshot(fold, decision, now)

    def list(
        self, status: str | None = None, *, limit: int = 100, after: str | None = None
    ) -> list[Approval]:
        """Approvals newest first, optionally only those with ``status``, after the approval
        named by the cursor ``after``. Writes nothing (a pending approval past its expiry
        is listed as ``expired``; :meth:`expire_due` records it)."""
        if status is not None and status not in STATUSES:
            raise InputError(f"status must be one of {', '.join(STATUSES)}, not {_shown(status)}")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST:
            raise InputError(f"limit must be a whole number from 1 to {MAX_LIST}")
        self._index.sync()
        if after is not None and not self._index.knows(self._checked_id(after)):
            raise InputError(f"unknown cursor {_shown(after)}: pass an approval id from a listing")
        now = self._clock()
        found: list[Approval] = []
        wanted: Status | None = status  # checked above
        for approval_id in self._index.newest_first(now, status=wanted, after=after):
            fold, decision = self._read(approval_id)
            approval = snapshot(fold, decision, now)
            if wanted is None or approval.status == wanted:
                found.append(approval)
                if len(found) == limit:
                    break
        return found

    def wait(self, approval_id: str, timeout: float) -> Approval:
        """The approval as soon as it is no longer pending, or still pending after ``timeout``
        seconds (changes by other processes are seen within ``poll_interval``)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._changed:
                seen = self._version
            approval = self.get(approval_id)
            remaining = deadline - time.monotonic()
            if approval.status != "pending" or remaining <= 0:
                return approval
            with self._changed:
                if self._version == seen:
                    self._changed.wait(min(remaining, self._poll))

    # --- steps -----------------------------------------------------------------------

    def vote(self, approval_id: str, *, approver: str, decision: str, reason: str) -> Approval:
        """Record ``approver``'s vote (see :meth:`clearance.Gate.approve` for the rules)."""
        if decision not in VOTE_DECISIONS:
            raise InputError(f"a vote is 'approve' or 'deny', not {decision!r}")
        if not isinstance(approver, str) or not PRINCIPAL_PATTERN.fullmatch(approver):
            raise InputError(
                f"approver must be a principal id such as user:alice, not {approver!r}"
            )
        if not isinstance(reason, str) or not reason.strip():
            raise InputError("a vote needs a reason (a non-empty text saying why)")
        if len(reason) > MAX_REASON:
            raise InputError(f"a vote's reason is at most {MAX_REASON} characters")
        self._index.sync()
        with self._lock_of(approval_id):
            fold, logged = self._read(approval_id)
            now = self._clock()
            self._require_pending(fold, logged, now)
            terms = fold.terms
            if approver == terms.principal:
                raise NotPermitted(
                    f"{approver} made request {terms.request_id}: nobody approves or denies a "
                    "request made under their own principal"
                )
            if not fold.may_vote(approver):
                raise NotPermitted(
                    f"{approver} may not vote on approval {approval_id}: its approvers are "
                    f"{', '.join(terms.approvers) or 'nobody (the rules name disjoint approvers)'}"
                )
            if fold.voted(approver):
                raise Conflict(
                    f"{approver} already voted on approval {approval_id}; a vote counts once"
                )
            step = {"approver": approver, "decision": decision, "reason": reason}
            steps = [self._step(fold, "vote", now, step)]
            approvals = sum(vote.decision == "approve" for vote in fold.votes) + 1
            if decision == "deny":
                steps.append(self._step(fold, "denied", now, {"denied_by": approver}))
            elif approvals >= terms.required:
                approvers = [*(v.approver for v in fold.votes), approver]
                steps.append(self._step(fold, "approved", now, {"approved_by": approvers}))
            first = self._ledger.append_many(steps)[0]
            fold, logged = self._counted(approval_id, first)
            self._changed_now()
            return snapshot(fold, logged, now)

    def expire_due(self) -> int:
        """Append ``expired`` for every pending approval past its expiry; returns how many."""
        self._index.sync()
        count = 0
        for approval_id in self._index.due(self._clock()):
            with self._lock_of(approval_id):
                fold, _ = self._read(approval_id)
                now = self._clock()
                if fold.state == "pending" and fold.status_at(now) == "expired":
                    self._expire(fold, now)
                    count += 1
        return count

    def collect(
        self,
        approval_id: str,
        *,
        audience: str,
        principal: str | None = None,
        intent: Intent | None = None,
        sign: bool = True,
    ) -> tuple[Authorization, GrantClaims, SigningKey]:
        """Issue the one grant of an approved request (see :meth:`clearance.Gate.collect`).

        ``intent`` is the intent object decided, when the caller holds it (an in-process
        governed call): its digest must be the approved one. ``sign`` False leaves
        ``Authorization.grant`` empty (the in-process capability signs on demand).
        """
        if self._grants is None:
            raise SigningKeyError("this approvals book issues no grants (no signing keys)")
        if not isinstance(audience, str) or not audience:
            raise InputError("audience must be a non-empty string")
        self._index.sync()
        with self._lock_of(approval_id):
            fold, logged = self._read(approval_id)
            now = self._clock()
            approval = snapshot(fold, logged, now)
            self._require_collectable(fold, approval, now, logged)
            if principal is not None and principal != approval.principal:
                raise NotPermitted(
                    f"only {approval.principal}, who made request {approval.request_id}, may "
                    "collect its grant"
                )
            if intent is not None and intent.digest != approval.intent_digest:
                raise Denied(
                    "denied: the intent differs from the approved one; a changed intent needs "
                    "a new approval",
                    decision=_payload(approval, "deny", [Reason("intent-changed", "")]),
                )
            claims, key = self._grants.claims(approval, audience=audience, now=now)
            token = issue_grant(key, claims) if sign else ""
            grant = {"jti": claims.jti, "kid": key.kid, "aud": claims.aud, "exp": claims.exp}
            details = {"grant": grant, "principal": approval.principal}
            index = self._ledger.append(self._step(fold, "collected", now, details))
            self._counted(approval_id, index)
            self._changed_now()
        reason = Reason(
            "approved",
            f"approved by {', '.join(approval.approved_by)} (approval {approval_id})",
        )
        authorization = Authorization(
            approval.request_id,
            intent if intent is not None else self._intent_of(approval),
            Decision("allow", (reason,), approval.policy_digest),
            approval.decision_index,
            token,
        )
        return authorization, claims, key

    # --- internals -------------------------------------------------------------------

    def _checked_id(self, approval_id: object) -> str:
        if not isinstance(approval_id, str) or not approval_id:
            raise InputError("an approval id is a non-empty string (from ApprovalRequired)")
        return approval_id

    def _lock_of(self, approval_id: str) -> threading.Lock:
        return self._locks[hash(self._checked_id(approval_id)) % _STRIPES]

    def _read(self, approval_id: str) -> tuple[Fold, Mapping[str, Any]]:
        """The approval's proven entries folded, and its proven decision entry."""
        request_id = self._index.request_of(approval_id)
        if request_id is None:
            raise NotFound(f"no approval {_shown(approval_id)} in this ledger")
        ledger = self._ledger
        rows = [
            ledger.prove(stored)
            for stored in ledger.find("approval", request_id)
            if stored.entry.get("approval_id") == approval_id
        ]
        pending = next((row for row in rows if row.entry.get("status") == "pending"), None)
        if pending is None:
            raise TamperError(f"approval {approval_id} has no pending entry among its proven ones")
        try:
            terms = terms_of(pending.entry, pending.index)
        except ValueError as exc:
            raise TamperError(str(exc), index=pending.index) from None
        decision = ledger.prove(ledger.get(terms.decision_index)).entry
        intent = decision.get("intent")
        if (
            decision.get("type") != "decision"
            or decision.get("request_id") != request_id
            or decision.get("approval_id") != approval_id
            or not isinstance(intent, Mapping)
            or terms.principal not in (None, intent.get("principal"))
            or terms.intent_digest not in (None, decision.get("intent_digest"))
            or terms.action not in (None, intent.get("action"))
        ):
            raise TamperError(
                f"approval {approval_id} (entry {pending.index}) and decision entry "
                f"{terms.decision_index} do not name each other",
                index=pending.index,
            )
        fold = Fold(replace(terms, principal=str(intent.get("principal"))))
        fold.apply_all([(row.index, row.entry) for row in rows])
        return fold, decision

    def _step(
        self, fold: Fold, status: str, now: float, details: Mapping[str, Any]
    ) -> dict[str, Any]:
        terms = fold.terms
        return entries.approval_step_entry(
            now,
            approval_id=terms.approval_id,
            request_id=terms.request_id,
            trace_id=terms.trace_id,
            decision_index=terms.decision_index,
            status=status,
            details=details,
        )

    def _counted(self, approval_id: str, index: int) -> tuple[Fold, Mapping[str, Any]]:
        """Read the approval again; Conflict unless the step appended at ``index`` counted."""
        self._index.sync()
        fold, decision = self._read(approval_id)
        if index not in fold.applied:
            raise Conflict(
                f"approval {approval_id} changed before entry {index} was logged (another "
                "process got there first), so that step does not count; read it again"
            )
        return fold, decision

    def _expire(self, fold: Fold, now: float) -> tuple[Fold, Mapping[str, Any]]:
        index = self._ledger.append(self._step(fold, "expired", now, {}))
        self._index.sync()
        result = self._read(fold.terms.approval_id)
        self._changed_now()
        del index  # whether ours or another process's expired entry counted, it expired
        return result

    def _require_pending(self, fold: Fold, logged: Mapping[str, Any], now: float) -> None:
        approval_id = fold.terms.approval_id
        if fold.state == "pending" and fold.status_at(now) == "expired":
            self._expire(fold, now)
            raise Conflict(f"approval {approval_id} expired; it counts as denied")
        if fold.state != "pending":
            raise Conflict(f"approval {approval_id} is {fold.state}: it takes no more votes")

    def _require_collectable(
        self, fold: Fold, approval: Approval, now: float, logged: Mapping[str, Any]
    ) -> None:
        approval_id = approval.approval_id
        status = approval.status
        if fold.state == "pending" and status == "expired":
            self._expire(fold, now)
        if status == "pending":
            raise ApprovalRequired(
                f"approval {approval_id} is still pending "
                f"({len(approval.approved_by)} of {approval.required} approvals)",
                approval_id=approval_id,
                decision=_payload(
                    approval, "approval_required", [Reason(rule) for rule in approval.rules]
                ),
            )
        if status in ("denied", "expired"):
            denial = approval.denied_by
            why = (
                f"denied by {denial.approver}: {denial.reason}"
                if denial is not None
                else "expired before it was approved"
            )
            raise Denied(
                f"denied: approval {approval_id} was {why}",
                decision=_payload(approval, "deny", [Reason(f"approval-{status}", why)]),
            )
        if status == "collected":
            raise Conflict(
                f"the grant of approval {approval_id} was already collected (ledger entry "
                f"{approval.collected_index}); it is issued once"
            )

    def _intent_of(self, approval: Approval) -> Intent:
        """The real intent when this process decided it, else its ledger form."""
        with self._intents_lock:
            kept = self._intents.pop(approval.approval_id, None)
        if kept is not None and kept.digest == approval.intent_digest:
            return kept
        return Intent.from_json(dict(approval.intent))

    def _changed_now(self) -> None:
        with self._changed:
            self._version += 1
            self._changed.notify_all()


def _payload(approval: Approval, effect: str, reasons: list[Reason]) -> dict[str, Any]:
    """The ``decision`` an error about ``approval`` carries (as the authorizer's do)."""
    return {
        "effect": effect,
        "reasons": [reason.to_json() for reason in reasons],
        "policy_digest": approval.policy_digest,
        "request_id": approval.request_id,
        "index": approval.decision_index,
        "approval_id": approval.approval_id,
        "expires_at": approval.expires_at,
    }


def wait_seconds(value: float | timedelta | None, what: str = "wait") -> float | None:
    """``value`` (seconds or a timedelta) as seconds; None stays None.

    InputError for a negative, non-finite or non-numeric value, or one longer than the
    longest approval (:data:`~clearance._internal.limits.MAX_APPROVAL_TTL`).
    """
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise InputError(f"{what} must be a number of seconds or a timedelta, not {value!r}")
    if not 0 <= seconds <= MAX_APPROVAL_TTL:
        raise InputError(f"{what} must be from 0 to {MAX_APPROVAL_TTL:g} seconds, not {value!r}")
    return float(seconds)
