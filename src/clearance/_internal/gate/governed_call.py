"""Running a governed call: authorize, verify, run the body, record its outcome.

Invariants (docs/design.md §1 steps 5-7, fail-closed rules 6 and 9):

* The body never runs unless it was allowed: :meth:`GovernedCalls.begin` decides
  (ledger first: the decision entry is durable before anything else happens) and only
  then does ``with gate.clearance(...)`` enter its body; :meth:`GovernedCalls.execute`
  verifies a signed grant from elsewhere (fail-closed rule 6) before calling ``body``.
* A call run in this process is authorized by an in-process capability: the
  :class:`Cleared` the gate hands to the body, built from the very intent object it
  decided, carrying the grant's claims (addressed to ``in_process_audience``, which no
  executor accepts). Nothing crosses a process boundary, so no signature is made or
  checked on this path; ``Cleared.grant`` signs the JWT on demand. Its single use holds
  by construction (one ``Cleared`` per decision). Grants for other executors are signed
  EdDSA JWTs checked with the durable replay store.
* After the body ran, its outcome is appended; if that fails it is spooled durably
  (:mod:`clearance._internal.gate.spool`) and appended on the next open. The append
  is committed before the call returns (it survives ``kill -9``) but, in ``durable``
  mode, does not wait for its own fsync: the next decision's commit or the next signed
  checkpoint fsyncs it (within two checkpoint intervals,
  :mod:`clearance._internal.ledger.sqlite`), so the caller's critical path holds one
  fsync, the decision's. A power cut can lose the outcomes of that window; it never
  loses a decision, which is fsynced before the body runs. An outcome
  the ledger and the spool both refuse raises
  :class:`~clearance.errors.OutcomeUnrecorded` (the body ran), is counted, and is
  logged on ``clearance.gate`` at ERROR.
* The recorded result of a tool marked ``untrusted_output`` or ``sensitive_output``
  (by the bundle active when the outcome is recorded) is fingerprinted into the
  trace's value provenance (:mod:`clearance._internal.gate.provenance`) right after
  its execution entry. If that fails, the result must not be used as if it had been
  seen: :class:`~clearance.errors.OutcomeUnrecorded` is raised the same way (a
  governed function's caller never receives the result).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

from clearance._internal import entries
from clearance._internal.gate.authorizer import Authorizer
from clearance._internal.gate.binding import TraceBinder
from clearance._internal.gate.cleared import Authorization, Cleared
from clearance._internal.gate.provenance import ProvenanceBook
from clearance._internal.gate.spool import Spool
from clearance._internal.gate.traces import RunningRequest, Trace, enter_request, exit_request
from clearance._internal.gate.verification import GrantVerifier
from clearance._internal.grants.jti_store import ReplayGuard
from clearance._internal.grants.token import GrantClaims, issue_grant
from clearance._internal.intent import Intent
from clearance._internal.ledger.store import LedgerStore
from clearance._internal.policy.engine import Decision, ToolSpec
from clearance._internal.policy.provenance import Origin
from clearance.errors import ApprovalRequired, InputError, LedgerError, OutcomeUnrecorded

if TYPE_CHECKING:
    from clearance._internal.approvals.book import ApprovalBook

R = TypeVar("R")

log = logging.getLogger("clearance.gate")


class OutcomeRecorder:
    """Appends execution outcomes, falling back to the spool (see the module invariants)."""

    def __init__(
        self,
        *,
        ledger: LedgerStore,
        spool: Spool | None,
        clock: Callable[[], float],
        executor: str,
        provenance: ProvenanceBook,
        tools: Callable[[str], ToolSpec | None],
    ) -> None:
        """Record into ``ledger`` (else ``spool``) as ``executor``.

        ``tools`` looks up an action in the active bundle; results of tools it marks
        ``untrusted_output`` or ``sensitive_output`` go into ``provenance``.
        """
        self._ledger = ledger
        self._spool = spool
        self._clock = clock
        self._executor = executor
        self._provenance = provenance
        self._tools = tools
        self.unrecorded = 0
        """How many outcomes neither the ledger nor the spool took (each also logged)."""

    def record(
        self, cleared: Cleared, status: str, error_type: str | None, duration_us: int
    ) -> None:
        """Append the outcome of a body that ran; OutcomeUnrecorded if nothing takes it."""
        result_digest = cleared.result_digest
        auth = cleared.authorization
        entry = entries.execution_entry(
            self._clock(),
            request_id=auth.request_id,
            trace_id=auth.intent.trace_id,
            decision_index=auth.decision_index,
            jti=cleared.claims.jti,
            status=status,
            error_type=error_type,
            result_digest=result_digest,
            duration_us=duration_us,
            executor=self._executor,
        )
        if cleared.result_error is not None:
            entry["result_error"] = cleared.result_error
        try:
            self._ledger.append(entry, sync=False)  # off the fsync path: module docstring
        except LedgerError as exc:
            ledger_problem = exc
        else:
            if _holds_result(cleared):
                self._fingerprint(cleared)
            return
        try:
            if self._spool is None:
                raise LedgerError("no spool is configured")
            self._spool.put(entry)
        except LedgerError as exc:
            self.unrecorded += 1
            log.error(
                "outcome of request %s UNRECORDED after its body ran: ledger: %s; spool: %s",
                auth.request_id,
                ledger_problem,
                exc,
            )
            raise OutcomeUnrecorded(
                f"the body of request {auth.request_id} ran, but its outcome ({status}) could "
                f"not be recorded: the ledger failed ({ledger_problem}) and so did the spool "
                f"({exc})",
                request_id=auth.request_id,
            ) from exc
        if _holds_result(cleared) and self._marked(auth.intent.action):
            # The outcome is spooled, but fingerprints need the ledger: refuse the result.
            self._unrecorded_provenance(auth.request_id, ledger_problem)

    def _marked(self, action: str) -> tuple[Origin, ...]:
        """The origins ``action``'s results count for (an unlisted action: none)."""
        tool = self._tools(action)
        untrusted = tool is not None and tool.untrusted_output
        sensitive = tool is not None and tool.sensitive_output
        return (*(("untrusted",) if untrusted else ()), *(("sensitive",) if sensitive else ()))

    def _fingerprint(self, cleared: Cleared) -> None:
        auth = cleared.authorization
        origins = self._marked(auth.intent.action)
        if not origins or auth.intent.trace_id is None:
            return
        try:
            self._provenance.record(
                trace_id=auth.intent.trace_id,
                request_id=auth.request_id,
                decision_index=auth.decision_index,
                result=cleared.result,
                origins=origins,
                now=self._clock(),
            )
        except Exception as exc:  # ledger, tamper, a foreign key: none may pass as recorded
            self._unrecorded_provenance(auth.request_id, exc)

    def _unrecorded_provenance(self, request_id: str, problem: Exception) -> NoReturn:
        self.unrecorded += 1
        log.error("provenance of request %s UNRECORDED after its body ran: %s", request_id, problem)
        raise OutcomeUnrecorded(
            f"the body of request {request_id} ran, but the provenance of its result could not "
            f"be recorded ({problem}); do not use the result",
            request_id=request_id,
        )


def _holds_result(cleared: Cleared) -> bool:
    """The body handed back a result: recorded, or refused as not JSON but still returned.

    Provenance reads it either way (its extraction walks any value, reading an object
    it does not know by its ``str()``), so a non-JSON result is no way around it.
    """
    return cleared.has_result or cleared.result_error is not None


class GovernedCalls:
    """One gate's governed calls: the steps from an intent to a recorded outcome."""

    def __init__(
        self,
        *,
        binder: TraceBinder,
        authorizer: Authorizer,
        verifier: GrantVerifier,
        recorder: OutcomeRecorder,
        replay_guard: ReplayGuard,
        owner: object,
        audience: str,
        in_process_audience: str,
        approvals: ApprovalBook | None = None,
    ) -> None:
        """Compose the gate's collaborators; ``owner`` is the gate's private token.

        ``approvals`` lets a call that needs an approval wait for it (``wait=``).
        """
        self._binder = binder
        self._authorizer = authorizer
        self._verifier = verifier
        self._replay_guard = replay_guard
        self._owner = owner
        self._audience = audience
        self._in_process_audience = in_process_audience
        self._approvals = approvals
        self.record = recorder.record
        """Bound once: :class:`GovernedCall` calls it on every exit."""

    def begin(
        self, intent: Intent | Mapping[str, Any], trace: Trace | None, wait: float | None = None
    ) -> tuple[Cleared, RunningRequest]:
        """Entering ``gate.clearance``: authorize, then verify the grant once, in process.

        With ``wait`` seconds, an ``approval_required`` decision waits for the approval;
        approved, the call proceeds with the approval's one grant (collected here, for the
        intent object decided); denied or expired raises Denied, still pending the
        original ApprovalRequired.
        """
        binding = self._binder.bind(intent, trace)
        # An in-process capability, not a token: the decision entry is durable, the body
        # runs right here for exactly the intent object decided, and only this gate hands
        # it the Cleared. The claims are the grant's, addressed to the in-process audience
        # that no executor accepts; the JWT is signed only if the body asks for it.
        try:
            authorization, claims, key = self._authorizer.decide(
                binding, audience=self._in_process_audience
            )
        except ApprovalRequired as pending:
            if wait is None or self._approvals is None:
                raise
            if self._approvals.wait(pending.approval_id, wait).status == "pending":
                raise
            authorization, claims, key = self._approvals.collect(
                pending.approval_id,
                audience=self._in_process_audience,
                intent=binding.intent,
                sign=False,
            )
        request = RunningRequest(
            self._owner,
            cast(str, authorization.intent.trace_id),
            authorization.request_id,
            authorization.decision_index,
            binding.depth,
        )
        return Cleared(authorization, claims, sign=partial(issue_grant, key, claims)), request

    def verify(self, grant: str, intent: Intent | Mapping[str, Any]) -> GrantClaims:
        """A grant presented by another process; its jti goes into the durable replay store."""
        return self._verifier.verify(
            grant, intent, audience=self._audience, replay=self._replay_guard
        )

    def execute(self, grant: str, intent: Intent | Mapping[str, Any], body: Callable[[], R]) -> R:
        """Run ``body`` only if ``grant`` verifies for ``intent``; record the outcome."""
        parsed = intent if isinstance(intent, Intent) else Intent.from_json(intent)
        claims = self.verify(grant, parsed)
        decision = Decision("allow", (), claims.pol)
        cleared = Cleared(Authorization(claims.rid, parsed, decision, claims.lix, grant), claims)
        started = time.perf_counter()
        status, error_type = "ok", None
        try:
            result = body()
            try:
                cleared.record_result(result)
            except InputError as exc:  # the body ran: say why its result is not recorded
                cleared.note_unrecordable(result, str(exc))
            return result
        except BaseException as exc:
            status, error_type = "error", type(exc).__qualname__
            raise
        finally:
            self.record(cleared, status, error_type, int((time.perf_counter() - started) * 1e6))


class GovernedCall:
    """The context manager ``gate.clearance`` returns (one per governed call).

    ``__enter__`` runs only the gate's checks; the body runs between the two
    halves with this request as the running one; ``__exit__`` records the
    outcome, ``error`` with the exception type when the body raised, which then
    propagates unchanged. A class rather than a generator keeps this per-call
    wrapper cheap.
    """

    __slots__ = ("_calls", "_cleared", "_intent", "_started", "_token", "_trace", "_wait")

    def __init__(
        self,
        calls: GovernedCalls,
        intent: Intent | Mapping[str, Any],
        trace: Trace | None,
        wait: float | None = None,
    ) -> None:
        self._calls = calls
        self._intent = intent
        self._trace = trace
        self._wait = wait

    def __enter__(self) -> Cleared:
        cleared, request = self._calls.begin(self._intent, self._trace, self._wait)
        self._cleared = cleared
        self._token = enter_request(request)
        self._started = time.perf_counter()
        return cleared

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        duration_us = int((time.perf_counter() - self._started) * 1e6)
        exit_request(self._token)
        status, error_type = ("ok", None) if exc_type is None else ("error", exc_type.__qualname__)
        self._calls.record(self._cleared, status, error_type, duration_us)
