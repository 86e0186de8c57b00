"""The gate: intent → decision → ledger → grant → verify → execute → record.

:class:`Gate` is the façade; each step is a small collaborator with its own
invariants:

* :mod:`.binding` — binding an intent to its principal, trace and parent (fail-closed
  rule 11), opening and resuming traces, the trace state a decision starts from;
* :mod:`.authorizer` — deciding and logging ledger-first, issuing the grant (rules 1-5,
  7, 9);
* :mod:`.key_trust` — which keys the gate signs and verifies with, and picking up a
  rotation made by another process (rules 5, 13);
* :mod:`.verification` — checking a presented grant and recording every refusal
  (rule 6);
* :mod:`.governed_call` — running a governed call and recording its outcome, spooling
  it when the ledger refuses it;
* :mod:`.provenance` — fingerprints of the values marked tools returned, per trace,
  and each decision's view of them;
* :mod:`.drain` — appending spooled outcomes on the next open.

Invariants the façade keeps (docs/design.md §1 and §4):

* Every failure inside the gate denies (fail-closed rule 9); the governed body never
  runs unless :func:`~clearance._internal.grants.token.verify_grant` accepted its grant.
* One gate's collaborators share one ledger, one clock, one key view and one private
  token (which marks the gate's trace handles and running requests); they are wired
  once, here, and never replaced.
* The policy is normalized once, in the constructor, into a
  :class:`~clearance._internal.policy.source.PolicySource`: a hot-reloading
  :class:`~clearance._internal.policy.reload.PolicyHolder`, a fixed engine, or none
  (deny everything, rule 1).
* Only the outermost layer reads the clock: the gate takes ``clock``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from typing import Any, ParamSpec, TypeVar

from clearance._internal.decision_replay import DecisionReplayer, ReplayResult
from clearance._internal.gate.authorizer import Authorizer
from clearance._internal.gate.binding import TraceBinder
from clearance._internal.gate.cleared import Authorization, Cleared
from clearance._internal.gate.drain import drain_spool
from clearance._internal.gate.facts import EMPTY_MANDATE
from clearance._internal.gate.governed import governed
from clearance._internal.gate.governed_call import GovernedCall, GovernedCalls, OutcomeRecorder
from clearance._internal.gate.key_trust import GateKeys
from clearance._internal.gate.provenance import ProvenanceBook
from clearance._internal.gate.spool import Spool
from clearance._internal.gate.traces import Trace, states_for
from clearance._internal.gate.verification import GrantVerifier
from clearance._internal.grants.jti_store import ReplayGuard
from clearance._internal.grants.keys import GrantKeyRing
from clearance._internal.grants.token import GrantClaims
from clearance._internal.intent import Intent
from clearance._internal.ledger.store import LedgerStore
from clearance._internal.limits import DEFAULT_LIMITS, Limits
from clearance._internal.policy.engine import Decision, PolicyEngine
from clearance._internal.policy.source import PolicySource, as_policy_source
from clearance.errors import InputError

P = ParamSpec("P")
R = TypeVar("R")

IN_PROCESS_SUFFIX = "#in-process"


class Gate:
    """The in-process governed-execution core. See the module docstring for invariants."""

    def __init__(
        self,
        *,
        policy: PolicyEngine | PolicySource | None,
        ledger: LedgerStore,
        keyring: GrantKeyRing | None,
        replay_guard: ReplayGuard,
        issuer: str,
        audience: str,
        spool: Spool | None = None,
        clock: Callable[[], float] = time.time,
        grant_lifetime: int | None = None,
        executor: str = "in-process",
        principal: str | None = None,
        multi_principal: bool = False,
        default_mandate: Mapping[str, Any] | None = None,
        require_trace: bool = False,
        limits: Limits = DEFAULT_LIMITS,
        provenance_key: bytes | None = None,
    ) -> None:
        """Wire a gate from its parts (:func:`clearance.open_gate` does this for a home).

        ``principal`` binds the gate: every intent must name it (or omit it). A gate
        opened with ``multi_principal=True`` is a trusted service that authenticated the
        principal itself and accepts any; a gate with neither refuses every intent.
        ``policy`` is a :class:`PolicyEngine`, a :class:`PolicySource` (such as the
        hot-reloading holder) or None (deny everything). ``limits`` bounds the gate;
        ``grant_lifetime``, when given, replaces ``limits.grant_lifetime`` (ValueError
        outside 1 to 60 seconds). ``provenance_key`` keys the fingerprints of values that
        marked tools return (:mod:`clearance._internal.gate.provenance`);
        :func:`clearance.open_gate` derives it from the home's log key. Without it the
        fingerprints are only salted: anyone holding the ledger can test guesses.
        """
        if principal is not None and multi_principal:
            raise InputError("open a gate either for one principal or as multi_principal")
        if grant_lifetime is not None:
            limits = replace(limits, grant_lifetime=grant_lifetime)
        self._policy = as_policy_source(policy)
        self._ledger = ledger
        self._replay_guard = replay_guard
        self._spool = spool
        self._clock = clock
        self.limits = limits
        self.issuer = issuer
        self.audience = audience
        self.in_process_audience = f"{audience}{IN_PROCESS_SUFFIX}"
        """``aud`` of grants for governed calls run in this process (``clearance``, ``governed``).

        No executor accepts it (they check ``aud == audience``), and only
        :meth:`clearance` verifies it, exactly once, right after issuing it; so
        its single use holds by construction and costs no replay-store write.
        Grants from :meth:`authorize` carry ``audience`` and are single-use through
        the durable replay store (fail-closed rule 6).
        """
        self.grant_lifetime = limits.grant_lifetime
        self.executor = executor
        self.principal = principal
        """The principal this gate is bound to (None for a multi-principal service)."""
        self.multi_principal = multi_principal
        self.require_trace = require_trace
        owner = object()  # marks this gate's trace handles and running requests
        states = states_for(ledger)
        self._binder = TraceBinder(
            ledger=ledger,
            states=states,
            clock=clock,
            owner=owner,
            principal=principal,
            multi_principal=multi_principal,
            require_trace=require_trace,
            default_mandate=default_mandate or EMPTY_MANDATE,
            mandate_text=limits.mandate_text,
        )
        keys = GateKeys(keyring, ledger, refresh_interval=limits.key_refresh)
        self._provenance = ProvenanceBook(
            ledger=ledger, states=states, key=provenance_key, limit=limits.provenance_values
        )
        self._authorizer = Authorizer(
            policy=self._policy,
            ledger=ledger,
            binder=self._binder,
            states=states,
            keys=keys,
            clock=clock,
            issuer=issuer,
            limits=limits,
            provenance=self._provenance,
        )
        self._recorder = OutcomeRecorder(
            ledger=ledger,
            spool=spool,
            clock=clock,
            executor=executor,
            provenance=self._provenance,
            tools=lambda action: self._policy.engine_at(clock()).tool(action),
        )
        self._calls = GovernedCalls(
            binder=self._binder,
            authorizer=self._authorizer,
            verifier=GrantVerifier(
                keys=keys,
                ledger=ledger,
                spool=spool,
                clock=clock,
                issuer=issuer,
                executor=executor,
                leeway=limits.leeway,
            ),
            recorder=self._recorder,
            replay_guard=replay_guard,
            owner=owner,
            audience=audience,
            in_process_audience=self.in_process_audience,
        )
        if spool is not None:
            self.drain_spool()

    # --- wiring -----------------------------------------------------------------------

    @property
    def ledger(self) -> LedgerStore:
        """The ledger this gate appends to."""
        return self._ledger

    @property
    def default_principal(self) -> str | None:
        """The bound principal (kept for callers of the 0.1 name)."""
        return self.principal

    @property
    def engine(self) -> PolicyEngine:
        """The active policy engine (reloading from disk when the source supports it)."""
        return self._policy.engine_at(self._clock())

    @property
    def outcomes_unrecorded(self) -> int:
        """How many outcomes neither the ledger nor the spool took (each also logged)."""
        return self._recorder.unrecorded

    def drain_spool(self) -> int:
        """Append authenticated spooled outcomes left by an earlier failure; returns how many."""
        if self._spool is None:
            return 0
        return drain_spool(self._spool, self._ledger)

    def close(self) -> None:
        """Close the ledger and the replay guard."""
        try:
            self._ledger.close()
        finally:
            self._replay_guard.close()

    def __enter__(self) -> Gate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- traces -----------------------------------------------------------------------

    def open_trace(
        self,
        mandate: str = "",
        *,
        bounds: Mapping[str, Any] | None = None,
        opened_by: str | None = None,
    ) -> Trace:
        """Open a trace with the human's mandate and return its handle (a capability).

        Call this from trusted application code, never with text the model wrote:
        the mandate is what grounding rules compare arguments against. It is
        appended to the ledger once (a ``trace`` entry) and cannot change. Decide
        under it with ``gate.clearance(intent, trace=handle)`` or inside
        ``with handle.active():``; :meth:`trace` does the latter for a block.
        """
        return self._binder.open(mandate, bounds, opened_by)

    def resume_trace(self, trace_id: str) -> Trace:
        """A handle for a trace opened earlier (by this or an earlier process) on this ledger.

        For trusted code only (for example a session store that kept the trace id across
        a restart): the handle carries the mandate recorded in the trace's ``trace`` entry,
        read from the ledger and proven to be in the log. BindingError when the ledger
        holds no such trace.
        """
        return self._binder.resume(trace_id)

    @contextmanager
    def trace(
        self,
        mandate: str = "",
        *,
        bounds: Mapping[str, Any] | None = None,
        opened_by: str | None = None,
    ) -> Iterator[Trace]:
        """Open a trace (:meth:`open_trace`) and make it active for the ``with`` body.

        Governed calls in the body, and in asyncio tasks it creates, run in the trace;
        hand work to threads with :func:`clearance.carry` or ``trace.bind(fn)``.
        """
        handle = self.open_trace(mandate, bounds=bounds, opened_by=opened_by)
        with handle.active():
            yield handle

    # --- authorization ----------------------------------------------------------------

    def evaluate(
        self, intent: Intent | Mapping[str, Any], *, trace: Trace | None = None
    ) -> tuple[Intent, Decision, dict[str, Any]]:
        """Dry run: decide ``intent`` with its trace's facts, writing nothing.

        Returns the bound intent, the decision and the facts it used.
        """
        return self._authorizer.evaluate(self._binder.bind(intent, trace))

    def authorize(
        self, intent: Intent | Mapping[str, Any], *, trace: Trace | None = None
    ) -> Authorization:
        """Decide ``intent``, log the decision durably, and return a grant on ``allow``.

        Raises :class:`Denied` (with the reasons), :class:`ApprovalRequired`,
        :class:`BindingError` for an intent that claims a trace, parent or principal it
        is not bound to, or :class:`InputError` for a malformed intent. Never returns
        without a grant.
        """
        return self._authorizer.authorize(self._binder.bind(intent, trace), audience=self.audience)

    # --- execution --------------------------------------------------------------------

    def verify(self, grant: str, intent: Intent | Mapping[str, Any]) -> GrantClaims:
        """Executor-side check of a presented grant (fail-closed rule 6); consumes its jti.

        Verify against :attr:`Authorization.intent` (the gate fills in ``trace_id`` and
        ``parent_id``), not the intent as first submitted. A refusal is appended to the
        ledger as an execution entry with status ``rejected`` and the precise reason;
        the caller sees an opaque InvalidGrant.
        """
        return self._calls.verify(grant, intent)

    def clearance(
        self, intent: Intent | Mapping[str, Any], *, trace: Trace | None = None
    ) -> AbstractContextManager[Cleared]:
        """Authorize, verify and govern the ``with`` body; record its outcome afterwards.

        The body runs only after the grant verified. Governed calls inside the body
        run in the same trace and get this request as their parent.
        """
        return GovernedCall(self._calls, intent, trace)

    def execute(self, grant: str, intent: Intent | Mapping[str, Any], body: Callable[[], R]) -> R:
        """Run ``body`` only if ``grant`` verifies for ``intent``; record the outcome.

        For executors that receive a grant from elsewhere (an agent process, a queue).
        ``intent`` must be :attr:`Authorization.intent` (with the gate's ``trace_id``).
        """
        return self._calls.execute(grant, intent, body)

    # --- replay -----------------------------------------------------------------------

    def replay(self, request_id: str) -> ReplayResult:
        """Re-evaluate the logged decision of ``request_id``.

        See :mod:`clearance._internal.decision_replay`.
        """
        return DecisionReplayer(self._ledger, provenance_key=self._provenance.key).replay_request(
            request_id
        )

    # --- decorator --------------------------------------------------------------------

    def governed(
        self,
        action: str | None = None,
        *,
        principal: str | None = None,
        resource: str | Callable[[Mapping[str, Any]], str] | None = None,
        purpose: str | None = None,
        exclude: Collection[str] = (),
        args: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorate a sync or async function so every call is a governed call.

        ``exclude`` names parameters left out of the intent's ``args`` (injected
        dependencies); ``args`` builds them from the bound arguments instead. See
        :func:`clearance._internal.gate.governed.governed` for how the intent is built.
        """
        return governed(
            self,
            action,
            principal=principal,
            resource=resource,
            purpose=purpose,
            exclude=exclude,
            args=args,
        )
