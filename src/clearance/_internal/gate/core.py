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
* :mod:`.drain` — appending spooled outcomes on the next open;
* :mod:`clearance._internal.approvals` — human approvals after ``approval_required``:
  votes, quorum, expiry and the one grant of an approved request (rule 7).

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
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar

from clearance._internal.approvals.book import ApprovalBook, wait_seconds
from clearance._internal.approvals.grants import ApprovalGrants
from clearance._internal.approvals.model import Approval
from clearance._internal.approvals.webhook import ApprovalWebhook
from clearance._internal.decision_replay import DecisionReplayer, ReplayResult
from clearance._internal.gate.authorizer import Authorizer
from clearance._internal.gate.binding import TraceBinder
from clearance._internal.gate.cleared import Authorization, Cleared
from clearance._internal.gate.drain import drain_spool
from clearance._internal.gate.facts import EMPTY_MANDATE
from clearance._internal.gate.governed import governed
from clearance._internal.gate.governed_call import GovernedCall, GovernedCalls, OutcomeRecorder
from clearance._internal.gate.key_trust import GateKeys
from clearance._internal.gate.observers import DecisionObserver, DecisionObservers
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
from clearance.errors import InputError, NotPermitted, PolicyError

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
        approval_webhook: ApprovalWebhook | None = None,
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
        ``approval_webhook`` announces new pending approvals (``approvals.webhook_url``).
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
        self._approvals = ApprovalBook(
            ledger=ledger,
            clock=clock,
            grants=ApprovalGrants(keys=keys, issuer=issuer, lifetime=limits.grant_lifetime),
            webhook=approval_webhook,
        )
        self._provenance = ProvenanceBook(
            ledger=ledger, states=states, key=provenance_key, limit=limits.provenance_values
        )
        self._observers = DecisionObservers()
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
            approvals=self._approvals,
            observers=self._observers,
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
            approvals=self._approvals,
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

    def reload_policy(self) -> str:
        """Load the policy bundle from its files now and return the active digest.

        For an operator (the runtime API's ``PUT /v1/policies``) who just replaced the
        files: the new bundle is active when this returns. A bundle that does not load
        raises PolicyError with the loader's message, and the last good bundle stays
        active (fail-closed rule 2). InputError for a gate whose policy is not a
        reloading bundle on disk.
        """
        reload = getattr(self._policy, "reload", None)
        if not callable(reload):
            raise InputError("this gate's policy is not a bundle on disk; it cannot be reloaded")
        reload()
        problem = getattr(self._policy, "last_error", None)
        if problem:
            raise PolicyError(str(problem))
        return self.engine.digest

    def observe_decisions(self, observer: DecisionObserver) -> Callable[[], None]:
        """Call ``observer`` with a :class:`~clearance._internal.gate.observers.DecisionEvent`
        after every decision of :meth:`authorize` and :meth:`clearance`; returns the function
        that stops it.

        For telemetry (:func:`clearance.integrations.otel.instrument`): the observer runs in
        the caller's thread and context, after the decision is logged and before it is
        returned or raised; whatever it raises is logged and dropped, so it never changes
        a decision. Dry runs (:meth:`evaluate`) are not decisions and are not observed.
        """
        return self._observers.add(observer)

    def drain_spool(self) -> int:
        """Append authenticated spooled outcomes left by an earlier failure; returns how many."""
        if self._spool is None:
            return 0
        return drain_spool(self._spool, self._ledger)

    def close(self) -> None:
        """Close the ledger and the replay guard (and stop the approvals webhook)."""
        try:
            self._approvals.close()
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
        principal: str | None = None,
    ) -> Trace:
        """Open a trace with the human's mandate and return its handle (a capability).

        Call this from trusted application code, never with text the model wrote:
        the mandate is what grounding rules compare arguments against. It is
        appended to the ledger once (a ``trace`` entry) and cannot change. Decide
        under it with ``gate.clearance(intent, trace=handle)`` or inside
        ``with handle.active():``; :meth:`trace` does the latter for a block.
        With ``principal`` (a multi-principal service opening a trace for one of its
        callers) the trace accepts intents from that principal only.
        """
        return self._binder.open(mandate, bounds, opened_by, principal)

    def resume_trace(self, trace_id: str, *, principal: str | None = None) -> Trace:
        """A handle for a trace opened earlier (by this or an earlier process) on this ledger.

        For trusted code only (for example a session store that kept the trace id across
        a restart): the handle carries the mandate recorded in the trace's ``trace`` entry,
        read from the ledger and proven to be in the log. BindingError when the ledger
        holds no such trace, or, with ``principal``, when the trace was not opened for
        exactly that principal.
        """
        return self._binder.resume(trace_id, principal)

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
        self,
        intent: Intent | Mapping[str, Any],
        *,
        trace: Trace | None = None,
        parent: str | None = None,
    ) -> tuple[Intent, Decision, dict[str, Any]]:
        """Dry run: decide ``intent`` with its trace's facts, writing nothing.

        Returns the bound intent, the decision and the facts it used. ``parent`` is as
        for :meth:`authorize`.
        """
        return self._authorizer.evaluate(self._binder.bind(intent, trace, parent))

    def authorize(
        self,
        intent: Intent | Mapping[str, Any],
        *,
        trace: Trace | None = None,
        parent: str | None = None,
    ) -> Authorization:
        """Decide ``intent``, log the decision durably, and return a grant on ``allow``.

        Raises :class:`Denied` (with the reasons), :class:`ApprovalRequired`,
        :class:`BindingError` for an intent that claims a trace, parent or principal it
        is not bound to, or :class:`InputError` for a malformed intent. Never returns
        without a grant.

        ``parent`` is for a trusted service that carries lineage across processes (the
        runtime API): the request id of an earlier decision of ``trace``, proven from the
        ledger, which then stands in for the running governed call (BindingError when it
        is not a decision of that trace). In process, leave it out.
        """
        return self._authorizer.authorize(
            self._binder.bind(intent, trace, parent), audience=self.audience
        )

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
        self,
        intent: Intent | Mapping[str, Any],
        *,
        trace: Trace | None = None,
        wait: float | timedelta | None = None,
    ) -> AbstractContextManager[Cleared]:
        """Authorize, verify and govern the ``with`` body; record its outcome afterwards.

        The body runs only after the grant verified. Governed calls inside the body
        run in the same trace and get this request as their parent.

        With ``wait`` (seconds or a timedelta), an ``approval_required`` decision blocks
        this thread until the approval is decided or ``wait`` passed: approved, the body
        runs for the intent object decided (the approval's one collection); denied or
        expired raises :class:`Denied`; still pending raises :class:`ApprovalRequired`,
        and :meth:`resume` continues later. Without ``wait`` it raises at once.
        """
        return GovernedCall(self._calls, intent, trace, wait_seconds(wait))

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
        wait: float | timedelta | None = None,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorate a sync or async function so every call is a governed call.

        ``exclude`` names parameters left out of the intent's ``args`` (injected
        dependencies); ``args`` builds them from the bound arguments instead. See
        :func:`clearance._internal.gate.governed.governed` for how the intent is built.
        ``wait`` is as for :meth:`clearance` (sync functions only).
        """
        return governed(
            self,
            action,
            principal=principal,
            resource=resource,
            purpose=purpose,
            exclude=exclude,
            args=args,
            wait=wait,
        )

    # --- approvals --------------------------------------------------------------------

    def approvals(
        self, status: str | None = None, *, limit: int = 100, after: str | None = None
    ) -> list[Approval]:
        """Approvals of this ledger, newest first (docs/design.md §9).

        ``status`` keeps only ``pending``, ``approved``, ``denied``, ``expired`` or
        ``collected`` ones; ``after`` is the id of the last approval of a previous page.
        A pending approval past its expiry is listed as ``expired`` (listing writes
        nothing; :meth:`approval` and :meth:`expire_approvals` record it). InputError for
        an unknown status, a limit outside 1 to 1000 or an unknown cursor.
        """
        return self._approvals.list(status, limit=limit, after=after)

    def approval(self, approval_id: str) -> Approval:
        """The approval now, read from the ledger and proven; NotFound when there is none.

        The first reader after ``expires_at`` appends its ``expired`` entry.
        """
        return self._approvals.get(approval_id)

    def approve(self, approval_id: str, *, approver: str, reason: str) -> Approval:
        """Vote to approve, as ``approver`` (a principal id), saying why.

        The vote is a ledger entry; the vote that completes the quorum (the rule's
        ``approvals``, distinct approvers) also appends ``approved``. NotPermitted when
        ``approver`` made the request or does not match the approval's ``approvers``;
        Conflict when they already voted or the approval is no longer pending (an
        expired one is recorded as such); InputError for an empty reason. The caller
        vouches for ``approver`` (the runtime API passes the API key's principal).
        """
        return self._approvals.vote(
            approval_id, approver=approver, decision="approve", reason=reason
        )

    def deny(self, approval_id: str, *, approver: str, reason: str) -> Approval:
        """Vote to deny, as :meth:`approve`. One deny vote denies the approval at once.

        So any one approver can stop a risky action; approving takes the whole quorum.
        """
        return self._approvals.vote(approval_id, approver=approver, decision="deny", reason=reason)

    def wait_for_approval(self, approval_id: str, timeout: float) -> Approval:
        """The approval as soon as it is not pending, or still pending after ``timeout`` s.

        Wakes at once for a change made through this gate, and notices one made by another
        process (``clearance approvals approve``) within a quarter of a second.
        """
        return self._approvals.wait(approval_id, wait_seconds(timeout, "timeout") or 0.0)

    def collect(
        self, approval_id: str, *, principal: str | None = None, audience: str | None = None
    ) -> Authorization:
        """The one grant of an approved request: an EdDSA JWT for the approved intent digest.

        New ``jti``, ``rid`` the request id, ``lix`` its decision's index, the gate's grant
        lifetime, ``aud`` ``audience`` (default :attr:`audience`); a ``collected`` entry is
        appended before it is returned. Conflict when it was collected before (by any
        process); ApprovalRequired while pending; Denied when denied or expired;
        NotPermitted when ``principal`` is not the request's. A gate bound to a principal
        collects for that principal only. ``Authorization.intent`` is the real intent when
        this process decided it, else the logged one (sensitive arguments redacted: verify
        the grant against the real intent).
        """
        if self.principal is not None:
            if principal is not None and principal != self.principal:
                raise NotPermitted(f"this gate is bound to {self.principal}, not {principal}")
            principal = self.principal
        elif principal is None and not self.multi_principal:
            raise NotPermitted("a gate bound to no principal collects no grant")
        authorization, _, _ = self._approvals.collect(
            approval_id,
            principal=principal,
            audience=self.audience if audience is None else audience,
        )
        return authorization

    def resume(self, approval_id: str, *, wait: float | timedelta | None = None) -> Authorization:
        """Continue after :class:`ApprovalRequired`: wait up to ``wait``, then :meth:`collect`.

        ApprovalRequired when it is still pending after the wait.
        """
        seconds = wait_seconds(wait)
        if seconds:
            self._approvals.wait(approval_id, seconds)
        return self.collect(approval_id)

    def expire_approvals(self) -> int:
        """Append ``expired`` for every pending approval past its expiry; returns how many.

        Reading an approval does this for that one; a server calls this periodically so
        that listings and the ledger say so without anyone asking.
        """
        return self._approvals.expire_due()
