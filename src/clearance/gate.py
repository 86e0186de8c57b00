"""The gate: intent → decision → ledger → grant → verify → execute → record.

Invariants (DESIGN §1 and §4):

* A decision entry is durable in the ledger before any grant exists; a grant is
  issued only for an ``allow`` decision and is bound to the intent digest.
* Every failure inside the gate denies (fail-closed rule 9): a ledger failure
  (rule 4), a missing signing key (rule 5), a rule error (rule 3, decided by the
  engine), no bundle (rule 1, :class:`DenyAllEngine`), a pending approval
  (rule 7), a malformed intent (rule 8, :class:`InputError`). The governed body
  never runs unless :func:`~clearance.grants.verify_grant` accepted the grant.
* After the body runs, its outcome is appended; if that fails it is spooled
  durably (:mod:`clearance.spool`) and appended on the next open.
* Trace facts come from the ledger, never from the caller (:mod:`clearance.facts`);
  a trace's mandate is written once by trusted code through :meth:`Gate.trace`.
* Only the outermost layer reads the clock: the gate takes ``clock``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, NoReturn, ParamSpec, TypeVar, cast

from clearance import entries
from clearance.canonical import canonical_json, json_digest
from clearance.cleared import Authorization, Cleared
from clearance.context import TraceContext, _current_request, _current_trace, decide, new_id
from clearance.errors import (
    ApprovalRequired,
    Denied,
    Error,
    InputError,
    InvalidGrant,
    LedgerError,
    SigningKeyError,
)
from clearance.facts import compute_facts
from clearance.grants import GrantClaims, issue_grant, new_jti, verify_grant
from clearance.intent import Intent
from clearance.keys import GrantKeyRing
from clearance.ledger.store import LedgerStore
from clearance.policy.engine import Decision, EvaluationInput, PolicyEngine
from clearance.replay import ReplayGuard
from clearance.spool import Spool

P = ParamSpec("P")
R = TypeVar("R")

MAX_MANDATE_TEXT = 16 * 1024
APPROVAL_TTL_SECONDS = 3600.0
KEY_REFRESH_SECONDS = 1.0
IN_PROCESS_SUFFIX = "#in-process"


class _SingleUse:
    """The replay guard of one in-process verification: accepts the first jti it sees, once."""

    def __init__(self) -> None:
        self._seen: str | None = None

    def consume(self, jti: str, exp: float, now: float) -> None:
        if self._seen is not None:
            raise InvalidGrant(f"replayed jti {jti!r} (in-process grant)")
        self._seen = jti

    def close(self) -> None:
        return None


class Gate:
    """The in-process governed-execution core. See the module docstring for invariants."""

    def __init__(
        self,
        *,
        policy: PolicyEngine | Any | None,
        ledger: LedgerStore,
        keyring: GrantKeyRing | None,
        replay_guard: ReplayGuard,
        issuer: str,
        audience: str,
        spool: Spool | None = None,
        clock: Callable[[], float] = time.time,
        grant_lifetime: int = 30,
        executor: str = "in-process",
        default_principal: str | None = None,
    ) -> None:
        from clearance.policy import DenyAllEngine

        self._policy_source = policy if policy is not None else DenyAllEngine()
        self._ledger = ledger
        self._keyring = keyring
        self._replay_guard = replay_guard
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
        self._spool = spool
        self._clock = clock
        self.grant_lifetime = grant_lifetime
        self.executor = executor
        self.default_principal = default_principal
        self._lock = threading.Lock()
        self._logged_policies: set[str] = set()
        self._logged_keys: set[str] = set()
        self._keys_checked_at = float("-inf")
        if spool is not None:
            self.drain_spool()

    # --- wiring -----------------------------------------------------------------------

    @property
    def ledger(self) -> LedgerStore:
        """The ledger this gate appends to."""
        return self._ledger

    @property
    def engine(self) -> PolicyEngine:
        """The active policy engine (reloading from disk when the source supports it)."""
        source: Any = self._policy_source
        if hasattr(source, "maybe_reload"):
            source.maybe_reload(self._clock())
            return cast(PolicyEngine, source.engine)
        return cast(PolicyEngine, source)

    def drain_spool(self) -> int:
        """Append spooled outcomes left by an earlier failure; returns how many."""
        if self._spool is None:
            return 0
        return self._spool.drain(self._ledger.append, self._outcome_logged)

    def _outcome_logged(self, request_id: str) -> bool:
        """True when the ledger holds this request's outcome.

        ``rejected`` entries do not count: their request id comes from an
        unverified grant, so a forger could name any request with one.
        """
        return any(
            e.entry.get("status") != "rejected" for e in self._ledger.find("execution", request_id)
        )

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

    @contextmanager
    def trace(
        self,
        mandate: str = "",
        *,
        bounds: Mapping[str, Any] | None = None,
        opened_by: str | None = None,
    ) -> Iterator[TraceContext]:
        """Open a trace with the human's mandate; governed calls inside inherit it.

        Call this from trusted application code, never with text the model wrote:
        the mandate is what grounding rules compare arguments against. It is
        appended to the ledger once (a ``trace`` entry) and cannot change.
        """
        if not isinstance(mandate, str) or len(mandate) > MAX_MANDATE_TEXT:
            raise InputError(f"mandate must be a string of at most {MAX_MANDATE_TEXT} characters")
        bounds_obj = dict(bounds or {})
        try:
            canonical_json(bounds_obj)
        except InputError as exc:
            raise InputError(f"mandate bounds must be JSON: {exc}") from None
        if "expires_at" in bounds_obj:
            entries.parse_timestamp(str(bounds_obj["expires_at"]))
        now = self._clock()
        trace_id = new_id("t", now)
        mandate_obj = {"text": mandate, "bounds": bounds_obj}
        self._ledger.append(entries.trace_entry(now, trace_id, mandate_obj, opened_by))
        context = TraceContext(trace_id, mandate_obj)
        token = _current_trace.set(context)
        try:
            yield context
        finally:
            _current_trace.reset(token)

    # --- authorization ----------------------------------------------------------------

    def _contextualize(self, intent: Intent | Mapping[str, Any]) -> tuple[Intent, bool]:
        """The intent with its trace and parent filled in from context.

        The flag is true when the gate minted a new trace id here: such a trace
        has no entries yet, so its facts need no ledger read.
        """
        parsed = intent if isinstance(intent, Intent) else Intent.from_json(intent)
        active = _current_trace.get()
        running = _current_request.get()
        trace_id = parsed.trace_id
        if active is not None:
            if trace_id is not None and trace_id != active.trace_id:
                raise InputError(
                    f"intent names trace {trace_id!r} but runs inside trace {active.trace_id!r}"
                )
            trace_id = active.trace_id
        if trace_id is None and running is not None:
            trace_id = running[0]
        fresh = trace_id is None
        if trace_id is None:
            trace_id = new_id("t", self._clock())
        parent_id = parsed.parent_id
        if parent_id is None and running is not None and running[0] == trace_id:
            parent_id = running[1]
        if trace_id == parsed.trace_id and parent_id == parsed.parent_id:
            return parsed, fresh
        return parsed.with_context(trace_id=trace_id, parent_id=parent_id), fresh

    def _refresh_keys(self, now: float) -> None:
        """Pick up a key rotation done by another process (checked at most once a second)."""
        if self._keyring is not None and now - self._keys_checked_at >= KEY_REFRESH_SECONDS:
            self._keys_checked_at = now
            self._keyring.refresh()

    def _ensure_logged(self, engine: PolicyEngine, kid: str | None, now: float) -> None:
        """Append the policy and key entries a decision refers to, once per gate."""
        if engine.digest in self._logged_policies and (kid is None or kid in self._logged_keys):
            return  # both sets only grow, so a hit needs no lock
        with self._lock:
            if engine.digest not in self._logged_policies:
                if not self._ledger.find("policy", engine.digest):
                    self._ledger.append(entries.policy_entry(now, engine.digest, engine.document()))
                self._logged_policies.add(engine.digest)
            if kid is not None and kid not in self._logged_keys and self._keyring is not None:
                if not self._ledger.find("key", kid):
                    jwk = next(k for k in self._keyring.jwks(now)["keys"] if k["kid"] == kid)
                    self._ledger.append(entries.key_entry(now, kid, jwk))
                self._logged_keys.add(kid)

    def evaluate(
        self, intent: Intent | Mapping[str, Any]
    ) -> tuple[Intent, Decision, dict[str, Any]]:
        """Dry run: decide ``intent`` against the ledger's trace facts without writing.

        Returns the contextualized intent, the decision and the facts it used.
        """
        parsed, fresh = self._contextualize(intent)
        engine = self.engine
        request, _, _ = self._evaluation_input(engine, parsed, self._clock(), fresh=fresh)
        return parsed, decide(engine, request), dict(request.trace)

    def _evaluation_input(
        self, engine: PolicyEngine, intent: Intent, now: float, *, fresh: bool
    ) -> tuple[EvaluationInput, int | None, Mapping[str, Any]]:
        trace_id = cast(str, intent.trace_id)
        stored = () if fresh else self._ledger.trace(trace_id)
        trace = [{**e.entry, "index": e.index} for e in stored]
        facts, parent_index = compute_facts(trace_id, intent.parent_id, trace)
        attrs = engine.principal_attributes(intent.principal)
        request = EvaluationInput.for_intent(
            intent, trace=facts, now=datetime.fromtimestamp(now, UTC)
        )
        return request, parent_index, attrs

    def authorize(self, intent: Intent | Mapping[str, Any]) -> Authorization:
        """Decide ``intent``, log the decision durably, and return a grant on ``allow``.

        Raises :class:`Denied` (with the reasons), :class:`ApprovalRequired`, or
        :class:`InputError` for a malformed intent. Never returns without a grant.
        """
        return self._authorize_guarded(intent, audience=self.audience)

    def _authorize_guarded(
        self, intent: Intent | Mapping[str, Any], *, audience: str
    ) -> Authorization:
        """:meth:`authorize` for grants addressed to ``audience``; every failure denies."""
        parsed, fresh = self._contextualize(intent)
        try:
            return self._authorize(parsed, fresh=fresh, audience=audience)
        except (Denied, InputError):
            raise
        except LedgerError as exc:
            raise Denied(
                "denied: the ledger is unavailable, so nothing can be authorized",
                decision={"effect": "deny", "reasons": ["ledger-unavailable"], "detail": str(exc)},
            ) from exc
        except Exception as exc:
            raise Denied(
                "denied: the gate failed while deciding",
                decision={"effect": "deny", "reasons": ["gate-error"], "detail": repr(exc)},
            ) from exc

    def _authorize(self, intent: Intent, *, fresh: bool, audience: str) -> Authorization:
        now = self._clock()
        engine = self.engine
        request_id = new_id("r", now)
        request, parent_index, attrs = self._evaluation_input(engine, intent, now, fresh=fresh)
        decision = decide(engine, request)
        signing_key = None
        override: str | None = None
        if decision.effect == "allow":
            try:
                if self._keyring is None:
                    raise SigningKeyError("no grant-signing key is configured")
                self._refresh_keys(now)
                signing_key = self._keyring.signing_key()
            except SigningKeyError as exc:
                override = f"signing-key-unavailable: {exc}"
        self._ensure_logged(engine, signing_key.kid if signing_key else None, now)

        tool = engine.tool(intent.action)
        logged_args, redacted = entries.redact_args(intent.args, tool.sensitive if tool else ())
        logged_intent = {**intent.members(), "args": logged_args}
        grant_info: dict[str, Any] | None = None
        jti = new_jti()
        if signing_key is not None and override is None:
            grant_info = {
                "jti": jti,
                "kid": signing_key.kid,
                "aud": audience,
                "exp": int(now) + self.grant_lifetime,
            }
        approval_id = new_id("a", now) if decision.effect == "approval_required" else None
        entry = entries.decision_entry(
            now,
            request_id=request_id,
            intent=logged_intent,
            intent_digest=intent.digest,
            decision=decision.to_json(),
            facts=request.trace,
            principal_attrs=attrs,
            parent_index=parent_index,
            untrusted_output=bool(tool and tool.untrusted_output),
            grant=grant_info,
            approval_id=approval_id,
            redacted=redacted,
        )
        if override is not None:
            entry["override"] = {"effect": "deny", "reason": override}
        # Ledger first: nothing below runs unless this append committed.
        index = self._ledger.append(entry)
        if approval_id is not None:
            self._ledger.append(
                entries.approval_entry(
                    now,
                    approval_id=approval_id,
                    request_id=request_id,
                    trace_id=intent.trace_id,
                    status="pending",
                    decision_index=index,
                    expires_at=now + APPROVAL_TTL_SECONDS,
                )
            )
        if override is not None or decision.effect != "allow" or signing_key is None:
            self._refuse(decision, request_id, index, approval_id, override)
        claims = GrantClaims.for_intent(
            intent,
            issuer=self.issuer,
            audience=audience,
            policy_digest=engine.digest,
            request_id=request_id,
            ledger_index=index,
            now=now,
            lifetime=self.grant_lifetime,
            jti=jti,
        )
        token = issue_grant(signing_key, claims)
        return Authorization(request_id, intent, decision, index, token)

    @staticmethod
    def _refuse(
        decision: Decision,
        request_id: str,
        index: int,
        approval_id: str | None,
        override: str | None,
    ) -> NoReturn:
        """Raise what a logged decision that grants nothing means to the caller."""
        decision_json = {**decision.to_json(), "request_id": request_id, "index": index}
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

    # --- execution --------------------------------------------------------------------

    def verify(self, grant: str, intent: Intent | Mapping[str, Any]) -> GrantClaims:
        """Executor-side check of a presented grant (fail-closed rule 6); consumes its jti.

        A refusal is appended to the ledger as an execution entry with status
        ``rejected`` and the precise reason; the caller sees an opaque InvalidGrant.
        """
        return self._verify(grant, intent, audience=self.audience, replay=self._replay_guard)

    def _verify(
        self,
        grant: str,
        intent: Intent | Mapping[str, Any],
        *,
        audience: str,
        replay: ReplayGuard,
    ) -> GrantClaims:
        now = self._clock()
        keys: Mapping[str, Any] = {}
        if self._keyring is not None:
            # An unreadable rotation leaves the keys already loaded; signing fails closed.
            with contextlib.suppress(SigningKeyError):
                self._refresh_keys(now)
            keys = self._keyring.verification_keys(now)  # a fresh dict per call
        try:
            return verify_grant(
                grant,
                intent if isinstance(intent, Intent) else Intent.from_json(intent),
                keys=keys,
                audience=audience,
                issuer=self.issuer,
                now=now,
                replay=replay,
            )
        except InvalidGrant as exc:
            self._record_rejection(grant, intent, exc.reason, now)
            raise
        except InputError as exc:
            self._record_rejection(grant, intent, f"malformed intent: {exc}", now)
            raise InvalidGrant(f"malformed intent: {exc}") from None

    def _record_rejection(
        self, grant: str, intent: Intent | Mapping[str, Any], reason: str, now: float
    ) -> None:
        from clearance.grants import peek_claims

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
            decision_index=lix if isinstance(lix, int) else -1,
            jti=str(unverified.get("jti", "")),
            status="rejected",
            error_type=reason[:500],
            result_digest=None,
            duration_us=0,
            executor=self.executor,
        )
        # request_id, decision_index and jti above come from the UNVERIFIED grant.
        entry["unverified_claims"] = True
        try:
            self._ledger.append(entry)
        except LedgerError:
            if self._spool is not None and isinstance(rid, str):
                self._spool.put(entry)

    def clearance(self, intent: Intent | Mapping[str, Any]) -> AbstractContextManager[Cleared]:
        """Authorize, verify and govern the ``with`` body; record its outcome afterwards.

        The body runs only after the grant verified. Nested governed calls inside
        the body inherit the trace and get this request as their parent.
        """
        return _GovernedCall(self, intent)

    def _begin(self, intent: Intent | Mapping[str, Any]) -> Cleared:
        """Entering :meth:`clearance`: authorize, then verify the grant once, in process."""
        # The grant is addressed to this gate's in-process verifier alone, which checks
        # it once, right here: see in_process_audience for why no replay-store write.
        authorization = self._authorize_guarded(intent, audience=self.in_process_audience)
        claims = self._verify(
            authorization.grant,
            authorization.intent,
            audience=self.in_process_audience,
            replay=_SingleUse(),
        )
        return Cleared(authorization, claims)

    def execute(self, grant: str, intent: Intent | Mapping[str, Any], body: Callable[[], R]) -> R:
        """Run ``body`` only if ``grant`` verifies for ``intent``; record the outcome.

        For executors that receive a grant from elsewhere (an agent process, a queue).
        """
        parsed = intent if isinstance(intent, Intent) else Intent.from_json(intent)
        claims = self.verify(grant, parsed)
        decision = Decision("allow", (), claims.pol)
        cleared = Cleared(Authorization(claims.rid, parsed, decision, claims.lix, grant), claims)
        started = time.perf_counter()
        status, error_type = "ok", None
        try:
            result = body()
            cleared.record_result(result)
            return result
        except BaseException as exc:
            status, error_type = "error", type(exc).__qualname__
            raise
        finally:
            self._record_outcome(
                cleared, status, error_type, int((time.perf_counter() - started) * 1e6)
            )

    def _record_outcome(
        self, cleared: Cleared, status: str, error_type: str | None, duration_us: int
    ) -> None:
        result_digest = None
        if cleared.has_result:
            try:
                result_digest = json_digest(cleared.result)
            except InputError:
                result_digest = None
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
            executor=self.executor,
        )
        try:
            self._ledger.append(entry)
        except LedgerError:
            if self._spool is None:
                raise
            self._spool.put(entry)

    # --- replay -----------------------------------------------------------------------

    def replay(self, request_id: str) -> Any:
        """Re-evaluate the logged decision of ``request_id`` (see :mod:`clearance.decision_replay`).

        Returns a :class:`~clearance.decision_replay.ReplayResult`.
        """
        from clearance.decision_replay import DecisionReplayer

        return DecisionReplayer(self._ledger).replay_request(request_id)

    # --- decorator --------------------------------------------------------------------

    def governed(
        self,
        action: str | None = None,
        *,
        principal: str | None = None,
        resource: str | Callable[[Mapping[str, Any]], str] | None = None,
        purpose: str | None = None,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorate a sync or async function so every call is a governed call.

        See :func:`clearance.governed.governed` for how the intent is built.
        """
        from clearance.governed import governed

        return governed(self, action, principal=principal, resource=resource, purpose=purpose)


class _GovernedCall:
    """The context manager :meth:`Gate.clearance` returns (one per governed call).

    ``__enter__`` runs only the gate's checks; the body runs between the two
    halves with this request as the running one; ``__exit__`` records the
    outcome, ``error`` with the exception type when the body raised, which then
    propagates unchanged. A class rather than a generator keeps this per-call
    wrapper cheap.
    """

    __slots__ = ("_cleared", "_gate", "_intent", "_started", "_token")

    def __init__(self, gate: Gate, intent: Intent | Mapping[str, Any]) -> None:
        self._gate = gate
        self._intent = intent

    def __enter__(self) -> Cleared:
        cleared = self._cleared = self._gate._begin(self._intent)
        authorization = cleared.authorization
        self._token = _current_request.set(
            (cast(str, authorization.intent.trace_id), authorization.request_id)
        )
        self._started = time.perf_counter()
        return cleared

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        duration_us = int((time.perf_counter() - self._started) * 1e6)
        _current_request.reset(self._token)
        status, error_type = ("ok", None) if exc_type is None else ("error", exc_type.__qualname__)
        self._gate._record_outcome(self._cleared, status, error_type, duration_us)
