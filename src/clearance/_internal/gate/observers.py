"""Decision observers: a callback per decision, for telemetry, never for enforcement.

Invariants:

* An observer sees a decision only after the gate made it: an ``allow`` after its
  decision entry is durable (before any body runs), a refusal right before the
  gate raises it. It is called synchronously in the thread (and context) of the
  caller of ``authorize`` / ``clearance``, so it sees the caller's context variables:
  an OpenTelemetry instrumentation parents its span on the caller's current span.
* An observer never changes a decision: whatever it raises is logged on
  ``clearance.gate`` at WARNING and dropped; the decision stands and is returned or
  raised exactly as without observers.
* No observer, no cost: the gate reads the clock for an event only when at least
  one observer is registered.
* Nothing here imports a telemetry library; instrumentations
  (:mod:`clearance.integrations.otel`) register a plain callable.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from clearance._internal.gate.cleared import Authorization
from clearance._internal.intent import Intent

log = logging.getLogger("clearance.gate")


@dataclass(frozen=True, slots=True)
class DecisionEvent:
    """One decision of a gate, as an observer sees it.

    ``effect`` is what the gate did (``allow``, ``deny``, ``approval_required``);
    ``reasons`` the ``(rule id, message)`` pairs that decided it. ``request_id`` and
    ``ledger_index`` are None only when the gate failed before logging anything
    (``failure`` then names why: ``ledger-unavailable`` or ``gate-error``).
    ``started`` and ``ended`` are the gate's clock (POSIX seconds) around the decision.
    """

    action: str
    principal: str | None
    trace_id: str | None
    effect: str
    reasons: tuple[tuple[str, str], ...]
    policy_digest: str | None
    request_id: str | None
    ledger_index: int | None
    approval_id: str | None
    failure: str | None
    started: float
    ended: float

    @property
    def rule_ids(self) -> tuple[str, ...]:
        """The ids of the rules (or gate reasons) that decided it."""
        return tuple(rule for rule, _ in self.reasons)


DecisionObserver = Callable[[DecisionEvent], None]
"""What :meth:`clearance.Gate.observe_decisions` takes."""

_FAILURES = frozenset({"ledger-unavailable", "gate-error"})


class DecisionObservers:
    """The observers of one gate (copy-on-write: notifying takes no lock)."""

    def __init__(self) -> None:
        self._observers: tuple[DecisionObserver, ...] = ()
        self._guard = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self._observers)

    def add(self, observer: DecisionObserver) -> Callable[[], None]:
        """Register ``observer``; returns the function that unregisters it (idempotent)."""
        with self._guard:
            self._observers = (*self._observers, observer)

        def remove() -> None:
            with self._guard:
                self._observers = tuple(o for o in self._observers if o is not observer)

        return remove

    def allowed(self, authorization: Authorization, started: float, ended: float) -> None:
        """Tell every observer about an ``allow`` (its decision entry is durable)."""
        intent = authorization.intent
        decision = authorization.decision
        self._notify(
            DecisionEvent(
                action=intent.action,
                principal=intent.principal,
                trace_id=intent.trace_id,
                effect="allow",
                reasons=tuple((r.rule, r.message or r.rule) for r in decision.reasons),
                policy_digest=decision.policy_digest or None,
                request_id=authorization.request_id,
                ledger_index=authorization.decision_index,
                approval_id=None,
                failure=None,
                started=started,
                ended=ended,
            )
        )

    def refused(
        self, intent: Intent, decision: Mapping[str, Any], started: float, ended: float
    ) -> None:
        """Tell every observer about a refusal: ``decision`` is the raised error's."""
        reasons = tuple(_reason(r) for r in decision.get("reasons") or ())
        request_id = decision.get("request_id")
        index = decision.get("index")
        approval_id = decision.get("approval_id")
        digest = decision.get("policy_digest")
        failure = next((rule for rule, _ in reasons if rule in _FAILURES), None)
        self._notify(
            DecisionEvent(
                action=intent.action,
                principal=intent.principal,
                trace_id=intent.trace_id,
                effect=str(decision.get("effect") or "deny"),
                reasons=reasons,
                policy_digest=digest if isinstance(digest, str) and digest else None,
                request_id=request_id if isinstance(request_id, str) else None,
                ledger_index=index if type(index) is int else None,
                approval_id=approval_id if isinstance(approval_id, str) else None,
                failure=failure if request_id is None else None,
                started=started,
                ended=ended,
            )
        )

    def _notify(self, event: DecisionEvent) -> None:
        for observer in self._observers:
            try:
                observer(event)
            except Exception as exc:  # telemetry never changes a decision
                log.warning("decision observer %r failed: %r", observer, exc)


def _reason(raw: object) -> tuple[str, str]:
    if isinstance(raw, Mapping):
        rule = str(raw.get("rule", ""))
        message = raw.get("message")
        return rule, str(message) if message else rule
    return str(raw), str(raw)
