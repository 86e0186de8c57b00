"""Deciding a bound intent, logging the decision ledger-first, and issuing its grant.

Invariants (docs/design.md §1 and §4):

* A decision entry is durable in the ledger before any grant exists; a grant is
  issued only for an ``allow`` decision and is bound to the intent digest. The
  ``policy`` and ``key`` entries a decision refers to are appended before it.
* Every failure while deciding denies (fail-closed rule 9): a ledger failure (rule 4,
  logged on ``clearance.gate`` at WARNING), a missing signing key (rule 5), a rule
  error (rule 3, decided by the engine), no bundle (rule 1), a pending approval
  (rule 7); anything unexpected is ``gate-error`` (logged at ERROR).
* Decisions in one trace are serialized from reading the facts to appending the
  decision, so each decision's facts include every decision of its trace committed
  before it, and its view of the trace's value provenance every ``provenance`` entry
  (:mod:`~clearance._internal.gate.provenance` appends them under the same lock).
* A decision entry's ``effect`` is what the gate did: an ``allow`` refused for an
  environmental reason (no signing key) is logged as ``deny`` with the policy's own
  effect in ``policy_effect`` and the reason in ``override``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn, cast

from clearance._internal import entries
from clearance._internal.approvals.requirement import requirement_for
from clearance._internal.gate.binding import Binding, TraceBinder
from clearance._internal.gate.cleared import Authorization
from clearance._internal.gate.decide import decide
from clearance._internal.gate.facts import advance, for_request
from clearance._internal.gate.key_trust import GateKeys
from clearance._internal.gate.observers import DecisionObservers
from clearance._internal.gate.provenance import ProvenanceBook, with_evidence
from clearance._internal.gate.traces import TraceStates
from clearance._internal.grants.keys import SigningKey
from clearance._internal.grants.token import GrantClaims, issue_grant, new_jti
from clearance._internal.ids import new_id
from clearance._internal.intent import Intent
from clearance._internal.ledger.store import LedgerStore
from clearance._internal.limits import Limits
from clearance._internal.policy.engine import Decision, EvaluationInput, PolicyEngine
from clearance._internal.policy.source import PolicySource
from clearance.errors import ApprovalRequired, Denied, InputError, LedgerError

if TYPE_CHECKING:
    from clearance._internal.approvals.book import ApprovalBook

log = logging.getLogger("clearance.gate")


class Authorizer:
    """Decides bound intents for one gate and logs every decision before granting anything."""

    def __init__(
        self,
        *,
        policy: PolicySource,
        ledger: LedgerStore,
        binder: TraceBinder,
        states: TraceStates,
        keys: GateKeys,
        clock: Callable[[], float],
        issuer: str,
        limits: Limits,
        provenance: ProvenanceBook,
        approvals: ApprovalBook | None = None,
        observers: DecisionObservers | None = None,
    ) -> None:
        """Decide with ``policy``, append to ``ledger``, sign with ``keys``.

        ``approvals`` is told about each new pending approval (its webhook announces it);
        ``observers`` about every decision (:mod:`~clearance._internal.gate.observers`).
        """
        self._policy = policy
        self._ledger = ledger
        self._binder = binder
        self._states = states
        self._provenance = provenance
        self._keys = keys
        self._clock = clock
        self._issuer = issuer
        self._grant_lifetime = limits.grant_lifetime
        self._approval_ttl = limits.approval_ttl
        self._approvals = approvals
        self._observers = observers if observers is not None else DecisionObservers()
        self._lock = threading.Lock()
        self._logged_policies: set[str] = set()

    def evaluate(self, binding: Binding) -> tuple[Intent, Decision, dict[str, Any]]:
        """Decide ``binding`` with its trace's facts, writing nothing (a dry run)."""
        now = self._clock()
        engine = self._policy.engine_at(now)
        state = self._binder.state(binding, self._ledger.generation)
        facts = for_request(state, binding.depth)
        request = EvaluationInput.for_intent(
            binding.intent,
            trace=facts,
            now=datetime.fromtimestamp(now, UTC),
            provenance=self._provenance.view(state["id"], state["provenance_index"]),
        )
        return binding.intent, decide(engine, request), facts

    def authorize(self, binding: Binding, *, audience: str) -> Authorization:
        """Decide and log ``binding``; a signed grant for ``audience`` on allow.

        Every failure denies. For executors in other processes (or this one, through
        ``gate.execute``): the grant is an EdDSA JWT they verify with public keys.
        """
        authorization, claims, key = self.decide(binding, audience=audience)
        return replace(authorization, grant=issue_grant(key, claims), expires_at=claims.exp)

    def decide(
        self, binding: Binding, *, audience: str
    ) -> tuple[Authorization, GrantClaims, SigningKey]:
        """Decide and log ``binding``: on allow, the claims of its grant and the key that would
        sign them, but no signature (``Authorization.grant`` is empty). Every failure denies.

        ``gate.clearance`` runs the body in this process right after this returns: the
        decision entry is durable, the intent is the very object decided, and nothing
        leaves the process, so a signature that only this process would verify adds
        nothing but cost. The signed token is made on demand (``Cleared.grant``).
        """
        if not self._observers:
            return self._decide(binding, audience)
        started = self._clock()
        try:
            decided = self._decide(binding, audience)
        except Denied as refused:  # ApprovalRequired too; InputError decides nothing
            self._observers.refused(binding.intent, refused.decision, started, self._clock())
            raise
        self._observers.allowed(decided[0], started, self._clock())
        return decided

    def _decide(
        self, binding: Binding, audience: str
    ) -> tuple[Authorization, GrantClaims, SigningKey]:
        try:
            return self._authorize(binding, audience)
        except (Denied, InputError):
            raise
        except LedgerError as exc:
            log.warning("denied %s: ledger error: %s", binding.intent.action, exc)
            raise Denied(
                "denied: the ledger is unavailable, so nothing can be authorized",
                decision={"effect": "deny", "reasons": ["ledger-unavailable"], "detail": str(exc)},
            ) from exc
        except Exception as exc:
            log.error("denied %s: gate error: %r", binding.intent.action, exc)
            raise Denied(
                "denied: the gate failed while deciding",
                decision={"effect": "deny", "reasons": ["gate-error"], "detail": repr(exc)},
            ) from exc

    def _authorize(
        self, binding: Binding, audience: str
    ) -> tuple[Authorization, GrantClaims, SigningKey]:
        intent = binding.intent
        trace_id = cast(str, intent.trace_id)
        now = self._clock()
        engine = self._policy.engine_at(now)
        request_id = new_id("r", now)
        attrs = engine.principal_attributes(intent.principal)
        tool = engine.tool(intent.action)
        logged_args, redacted = entries.redact_args(intent.args, tool.sensitive if tool else ())
        logged_intent = {**intent.members(), "args": logged_args}
        jti = new_jti()
        ledger = self._ledger
        # Serialized per trace from reading the facts to appending the decision, so the
        # facts of every decision include every decision of its trace committed before it.
        with self._states.lock(trace_id, fresh=binding.fresh):
            generation = ledger.generation
            state = self._binder.state(binding, generation)
            facts = for_request(state, binding.depth)
            view = self._provenance.view(trace_id, state["provenance_index"])
            request = EvaluationInput.for_intent(
                intent, trace=facts, now=datetime.fromtimestamp(now, UTC), provenance=view
            )
            decision = decide(engine, request)
            if redacted and tool is not None:
                # Replay cannot read a redacted value: log what the helpers said about it.
                with_evidence(logged_args, intent.args, tool.sensitive, view)
            signing_key, override = None, None
            if decision.effect == "allow":
                signing_key, override = self._keys.signing_key(now)
            if engine.digest not in self._logged_policies:
                self._log_policy(engine, now)
            if signing_key is not None and signing_key.kid not in self._keys.logged:
                self._keys.log(signing_key.kid, now)
            grant_info: dict[str, Any] | None = None
            if signing_key is not None:
                grant_info = {
                    "jti": jti,
                    "kid": signing_key.kid,
                    "aud": audience,
                    "exp": int(now) + self._grant_lifetime,
                }
            approval_id = new_id("a", now) if decision.effect == "approval_required" else None
            entry = entries.decision_entry(
                now,
                request_id=request_id,
                intent=logged_intent,
                intent_digest=intent.digest,
                decision=decision.to_json(),
                facts=facts,
                principal_attrs=attrs,
                parent_index=binding.parent_index,
                untrusted_output=bool(tool and tool.untrusted_output),
                grant=grant_info,
                approval_id=approval_id,
                redacted=redacted,
            )
            if override is not None:
                # The entry says what happened; the policy's own effect is kept for replay.
                entry["effect"] = "deny"
                entry["policy_effect"] = decision.effect
                entry["override"] = {"effect": "deny", "reason": override}
            # Ledger first: nothing below runs unless this append committed.
            try:
                index = ledger.append(entry)
            except BaseException:
                self._states.forget(trace_id)
                raise
            self._states.put(trace_id, generation, advance(state, entry))
            pending: dict[str, Any] | None = None
            expires: float | None = None
            if approval_id is not None:
                terms = requirement_for(engine, decision, self._approval_ttl)
                expires = now + terms.ttl
                pending = entries.approval_entry(
                    now,
                    approval_id=approval_id,
                    request_id=request_id,
                    trace_id=trace_id,
                    status="pending",
                    decision_index=index,
                    expires_at=expires,
                    required=terms.required,
                    approvers=terms.approvers,
                    rules=terms.rules,
                    principal=intent.principal,
                    intent_digest=intent.digest,
                    action=intent.action,
                )
                ledger.append(pending)
        if pending is not None and self._approvals is not None:
            self._approvals.created(pending, intent)  # never raises
        if override is not None or decision.effect != "allow" or signing_key is None:
            refuse(decision, request_id, index, approval_id, override, expires)
        claims = GrantClaims.for_intent(
            intent,
            issuer=self._issuer,
            audience=audience,
            policy_digest=engine.digest,
            request_id=request_id,
            ledger_index=index,
            now=now,
            lifetime=self._grant_lifetime,
            jti=jti,
        )
        return (
            Authorization(request_id, intent, decision, index, "", facts=facts),
            claims,
            signing_key,
        )

    def _log_policy(self, engine: PolicyEngine, now: float) -> None:
        """Append the ``policy`` entry of ``engine``'s bundle unless the ledger holds it."""
        with self._lock:
            if engine.digest in self._logged_policies:
                return
            if not self._ledger.find("policy", engine.digest):
                self._ledger.append(entries.policy_entry(now, engine.digest, engine.document()))
            self._logged_policies.add(engine.digest)


def refuse(
    decision: Decision,
    request_id: str,
    index: int,
    approval_id: str | None,
    override: str | None,
    expires_at: float | None = None,
) -> NoReturn:
    """Raise what a logged decision that grants nothing means to the caller.

    For an approval, ``decision`` also holds ``approval_id`` and ``expires_at`` (POSIX
    seconds, as the runtime API answers it).
    """
    decision_json = {**decision.to_json(), "request_id": request_id, "index": index}
    if approval_id is not None:
        decision_json.update(approval_id=approval_id, expires_at=expires_at)
    if override is not None:
        raise Denied(
            "denied: the grant-signing key is unavailable",
            decision={
                **decision_json,
                "effect": "deny",
                "reasons": ["signing-key-unavailable"],
            },
        )
    if decision.effect == "approval_required":
        raise ApprovalRequired(
            f"approval required: {'; '.join(r.message or r.rule for r in decision.reasons)}",
            approval_id=cast(str, approval_id),
            decision=decision_json,
        )
    raise Denied(
        f"denied: {'; '.join(r.message or r.rule for r in decision.reasons)}",
        decision=decision_json,
    )
