"""The gate: intent → decision → ledger → grant → verify → execute → record.

Invariants (DESIGN §1 and §4):

* A decision entry is durable in the ledger before any grant exists; a grant is
  issued only for an ``allow`` decision and is bound to the intent digest.
* Every failure inside the gate denies (fail-closed rule 9): a ledger failure
  (rule 4), a missing signing key (rule 5), a rule error (rule 3, decided by the
  engine), no bundle (rule 1, :class:`DenyAllEngine`), a pending approval
  (rule 7), a malformed intent (rule 8, :class:`InputError`). The governed body
  never runs unless :func:`~clearance._internal.grants.token.verify_grant` accepted the grant.
* After the body runs, its outcome is appended; if that fails it is spooled
  durably (:mod:`clearance._internal.gate.spool`) and appended on the next open.
* Trace integrity (fail-closed rule 11, :mod:`~clearance._internal.gate.traces`): an intent is
  decided
  under a trace only when trusted code opened it (:meth:`Gate.trace`,
  :meth:`Gate.open_trace`) and its handle is active or passed explicitly; the parent is
  the running governed call; the principal is the one the gate is bound to. An intent
  that claims anything else is refused with :class:`~clearance.errors.BindingError`.
  With no trace open, the gate applies its default mandate (narrowest by default) or,
  with ``require_trace``, refuses.
* Decisions in one trace are serialized from reading the facts to appending the
  decision, so each decision's facts include every decision of its trace committed
  before it. Facts are a fold (:mod:`~clearance._internal.gate.facts`) cached per trace and, on a
  miss,
  read from the trace's last decision entry after proving it is in the log, so a
  decision costs the same at trace length 1 and 10,000.
* A decision entry's ``effect`` is what the gate did: an ``allow`` refused for an
  environmental reason (no signing key) is logged as ``deny`` with the policy's own
  effect in ``policy_effect`` and the reason in ``override``.
* A grant verifies only with a key that is in the ring *and* was logged as a ``key``
  entry when the gate first signed with it.
* An outcome the ledger and the spool both refuse raises
  :class:`~clearance.errors.OutcomeUnrecorded` (the body ran) and is logged on the
  ``clearance._internal.gate.core`` logger.
* Only the outermost layer reads the clock: the gate takes ``clock``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, NoReturn, ParamSpec, TypeVar, cast

from clearance._internal import entries
from clearance._internal.canonical import canonical_json, json_digest
from clearance._internal.gate.cleared import Authorization, Cleared
from clearance._internal.gate.decide import decide, new_id
from clearance._internal.gate.facts import (
    EMPTY_MANDATE,
    advance,
    for_request,
    initial_state,
    state_of,
)
from clearance._internal.gate.spool import Spool, SpoolVerdict
from clearance._internal.gate.traces import (
    RunningRequest,
    Trace,
    active_trace,
    enter_request,
    exit_request,
    running_request,
    states_for,
)
from clearance._internal.grants.jti_store import ReplayGuard
from clearance._internal.grants.keys import GrantKeyRing, b64url_decode
from clearance._internal.grants.token import GrantClaims, issue_grant, new_jti, verify_grant
from clearance._internal.home import parse_mandate
from clearance._internal.intent import Intent
from clearance._internal.ledger.store import LedgerStore
from clearance._internal.policy.engine import Decision, EvaluationInput, PolicyEngine
from clearance.errors import (
    ApprovalRequired,
    BindingError,
    Denied,
    Error,
    InputError,
    InvalidGrant,
    LedgerError,
    OutcomeUnrecorded,
    SigningKeyError,
    TamperError,
)

P = ParamSpec("P")
R = TypeVar("R")

APPROVAL_TTL_SECONDS = 3600.0
KEY_REFRESH_SECONDS = 1.0
IN_PROCESS_SUFFIX = "#in-process"

log = logging.getLogger("clearance.gate")


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


@dataclass(frozen=True, slots=True)
class _Binding:
    """An intent bound to where it runs: its trace, parent and (for a new trace) mandate."""

    intent: Intent
    mandate: Mapping[str, Any] | None
    """The mandate of a trace with no decision yet; None for the running request's trace."""
    fresh: bool
    """The gate minted the trace id here: it has no entries, so no ledger read is needed."""
    depth: int
    parent_index: int | None


def _grant_kid(token: str) -> object:
    """The ``kid`` in an unverified grant's header (for key lookup only; None if unreadable)."""
    try:
        header = json.loads(b64url_decode(token.split(".", 1)[0]))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return header.get("kid") if isinstance(header, dict) else None


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
        principal: str | None = None,
        multi_principal: bool = False,
        default_mandate: Mapping[str, Any] | None = None,
        require_trace: bool = False,
    ) -> None:
        """Wire a gate from its parts (:func:`clearance.open_gate` does this for a home).

        ``principal`` binds the gate: every intent must name it (or omit it). A gate
        opened with ``multi_principal=True`` is a trusted service that authenticated the
        principal itself and accepts any; a gate with neither refuses every intent.
        """
        from clearance._internal.policy import DenyAllEngine

        if principal is not None and multi_principal:
            raise InputError("open a gate either for one principal or as multi_principal")
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
        self.principal = principal
        """The principal this gate is bound to (None for a multi-principal service)."""
        self.multi_principal = multi_principal
        self.require_trace = require_trace
        self._default_mandate = _ledger_form(
            parse_mandate(dict(default_mandate or EMPTY_MANDATE), "default mandate")
        )
        self._token = object()
        """Identifies this gate's trace handles and running requests (never shown to anyone)."""
        self._states = states_for(ledger)
        self._lock = threading.Lock()
        self._logged_policies: set[str] = set()
        self._logged_keys: set[str] = set()
        """Kids with a ``key`` entry in the ledger: the only keys grants verify with."""
        self._keys_checked_at = float("-inf")
        self.outcomes_unrecorded = 0
        """How many outcomes neither the ledger nor the spool took (each also logged)."""
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
        source: Any = self._policy_source
        if hasattr(source, "maybe_reload"):
            source.maybe_reload(self._clock())
            return cast(PolicyEngine, source.engine)
        return cast(PolicyEngine, source)

    def drain_spool(self) -> int:
        """Append authenticated spooled outcomes left by an earlier failure; returns how many."""
        if self._spool is None:
            return 0
        report = self._spool.drain(self._ledger.append, self._classify_spooled)
        if report.appended:
            log.info("drained %d spooled outcomes into the ledger", report.appended)
        if report.error is not None:
            # The rest stay spooled for the next open; deciding does not depend on them.
            log.warning("spool drain stopped: %s", report.error)
        return report.appended

    def _classify_spooled(self, entry: Mapping[str, Any]) -> SpoolVerdict:
        """Whether a (sealed) spooled execution entry is appended, already logged, or refused.

        An ``ok``/``error`` outcome needs its ``allow`` decision at ``decision_index``;
        a ``rejected`` one records a refused (possibly forged) grant and is appended once.
        """
        request_id = entry.get("request_id")
        if not isinstance(request_id, str):
            return SpoolVerdict.reject("the outcome names no request id")
        logged = self._ledger.find("execution", request_id)
        if entry.get("status") == "rejected":
            if any(stored.leaf == canonical_json(dict(entry)) for stored in logged):
                return SpoolVerdict.ALREADY_LOGGED
            return SpoolVerdict.APPEND
        if any(stored.entry.get("status") != "rejected" for stored in logged):
            return SpoolVerdict.ALREADY_LOGGED
        decisions = [self._ledger.prove(d) for d in self._ledger.find("decision", request_id)]
        if not any(
            d.index == entry.get("decision_index") and d.entry.get("effect") == "allow"
            for d in decisions
        ):
            return SpoolVerdict.reject(f"no allow decision for request {request_id} in the ledger")
        return SpoolVerdict.APPEND

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
        if not isinstance(mandate, str):
            raise InputError("mandate must be a string")
        mandate_obj = _ledger_form(
            parse_mandate({"text": mandate, "bounds": dict(bounds or {})}, "mandate")
        )
        now = self._clock()
        trace_id = new_id("t", now)
        self._ledger.append(entries.trace_entry(now, trace_id, mandate_obj, opened_by))
        return Trace(trace_id, mandate_obj, self._token)

    def resume_trace(self, trace_id: str) -> Trace:
        """A handle for a trace opened earlier (by this or an earlier process) on this ledger.

        For trusted code only (for example a session store that kept the trace id across
        a restart): the handle carries the mandate recorded in the trace's ``trace`` entry,
        read from the ledger and proven to be in the log. BindingError when the ledger
        holds no such trace.
        """
        found = self._ledger.find("trace", trace_id)
        if not found:
            raise BindingError(f"no trace {trace_id!r} in the ledger")
        stored = self._ledger.prove(found[0])
        mandate = stored.entry.get("mandate")
        if not isinstance(mandate, Mapping):
            raise TamperError(f"trace entry {stored.index} has no mandate", index=stored.index)
        return Trace(trace_id, _ledger_form(parse_mandate(mandate, "stored mandate")), self._token)

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

    # --- binding ----------------------------------------------------------------------

    def _bind(self, intent: Intent | Mapping[str, Any], trace: Trace | None) -> _Binding:
        """Bind ``intent`` to its principal, trace and parent (fail-closed rule 11)."""
        if isinstance(intent, Intent):
            parsed = intent
        else:
            if isinstance(intent, Mapping) and "principal" not in intent and self.principal:
                intent = {**intent, "principal": self.principal}
            parsed = Intent.from_json(intent)
        if not self.multi_principal and parsed.principal != self.principal:
            if self.principal is None:
                raise BindingError(
                    "this gate is bound to no principal: open it with principal=... "
                    "(or multi_principal=True for a service that authenticates principals)"
                )
            raise BindingError(
                f"intent names principal {parsed.principal!r}, but this gate is bound to "
                f"{self.principal!r}"
            )
        handle = trace if trace is not None else active_trace()
        if handle is not None and not handle.owned_by(self._token):
            raise BindingError(f"trace {handle.trace_id!r} was opened by another gate")
        current = running_request()
        if current is not None and current.owner is not self._token:
            current = None
        trace_id: str | None
        mandate: Mapping[str, Any] | None
        if handle is not None:
            trace_id, mandate = handle.trace_id, handle.mandate
        elif current is not None:
            trace_id, mandate = current.trace_id, None
        else:
            trace_id, mandate = None, self._default_mandate
        if parsed.trace_id is not None and parsed.trace_id != trace_id:
            where = f"runs in trace {trace_id!r}" if trace_id else "runs in no open trace"
            raise BindingError(
                f"intent names trace {parsed.trace_id!r} but {where}; only trusted code "
                "opens traces (gate.trace), and an intent cannot choose one"
            )
        parent = current if current is not None and current.trace_id == trace_id else None
        if parsed.parent_id is not None and (
            parent is None or parsed.parent_id != parent.request_id
        ):
            running_id = parent.request_id if parent is not None else None
            raise BindingError(
                f"intent names parent {parsed.parent_id!r}, but the running request is "
                f"{running_id!r}; the parent comes from the running governed call"
            )
        fresh = trace_id is None
        if trace_id is None:
            if self.require_trace:
                raise BindingError(
                    "no trace is open and this gate requires one: open it in trusted code "
                    "with gate.trace(mandate) (settings: require_trace)"
                )
            trace_id = new_id("t", self._clock())
        parent_id = parent.request_id if parent is not None else None
        if parsed.trace_id != trace_id or parsed.parent_id != parent_id:
            parsed = parsed.with_context(trace_id=trace_id, parent_id=parent_id)
        return _Binding(
            parsed,
            mandate,
            fresh,
            parent.depth + 1 if parent is not None else 0,
            parent.decision_index if parent is not None else None,
        )

    def _trace_state(self, binding: _Binding, generation: int) -> Mapping[str, Any]:
        """The trace's state before this decision: cached, or folded from its last decision.

        Called with the trace's lock held. Every entry read here is proven to be in the
        log (its leaf hash and inclusion in the tree the store verified at open).
        """
        trace_id = cast(str, binding.intent.trace_id)
        if binding.fresh:
            return initial_state(trace_id, cast(Mapping[str, Any], binding.mandate))
        cached = self._states.get(trace_id, generation)
        if cached is not None:
            return cached
        last = self._ledger.last_in_trace(trace_id, "decision")
        if last is not None:
            try:
                return advance(state_of(last.entry["facts"]), last.entry)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise TamperError(
                    f"the last decision of trace {trace_id} has malformed facts ({exc!r})",
                    index=last.index,
                ) from None
        if binding.mandate is None:
            raise TamperError(f"the running request's decision in trace {trace_id} is missing")
        return initial_state(trace_id, binding.mandate)

    # --- authorization ----------------------------------------------------------------

    def evaluate(
        self, intent: Intent | Mapping[str, Any], *, trace: Trace | None = None
    ) -> tuple[Intent, Decision, dict[str, Any]]:
        """Dry run: decide ``intent`` with its trace's facts, writing nothing.

        Returns the bound intent, the decision and the facts it used.
        """
        binding = self._bind(intent, trace)
        engine = self.engine
        state = self._trace_state(binding, self._ledger.generation)
        facts = for_request(state, binding.depth)
        request = EvaluationInput.for_intent(
            binding.intent, trace=facts, now=datetime.fromtimestamp(self._clock(), UTC)
        )
        return binding.intent, decide(engine, request), facts

    def authorize(
        self, intent: Intent | Mapping[str, Any], *, trace: Trace | None = None
    ) -> Authorization:
        """Decide ``intent``, log the decision durably, and return a grant on ``allow``.

        Raises :class:`Denied` (with the reasons), :class:`ApprovalRequired`,
        :class:`BindingError` for an intent that claims a trace, parent or principal it
        is not bound to, or :class:`InputError` for a malformed intent. Never returns
        without a grant.
        """
        return self._authorize_guarded(self._bind(intent, trace), audience=self.audience)

    def _authorize_guarded(self, binding: _Binding, *, audience: str) -> Authorization:
        """:meth:`authorize` for grants addressed to ``audience``; every failure denies."""
        try:
            return self._authorize(binding, audience=audience)
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

    def _signing_key(self, now: float) -> tuple[Any, str | None]:
        """The active signing key, or None and why not (fail-closed rule 5)."""
        try:
            if self._keyring is None:
                raise SigningKeyError("no grant-signing key is configured")
            self._refresh_keys(now)
            return self._keyring.signing_key(), None
        except SigningKeyError as exc:
            return None, f"signing-key-unavailable: {exc}"

    def _authorize(self, binding: _Binding, *, audience: str) -> Authorization:
        intent = binding.intent
        trace_id = cast(str, intent.trace_id)
        now = self._clock()
        engine = self.engine
        request_id = new_id("r", now)
        attrs = engine.principal_attributes(intent.principal)
        tool = engine.tool(intent.action)
        logged_args, redacted = entries.redact_args(intent.args, tool.sensitive if tool else ())
        logged_intent = {**intent.members(), "args": logged_args}
        jti = new_jti()
        # Serialized per trace from reading the facts to appending the decision, so the
        # facts of every decision include every decision of its trace committed before it.
        with self._states.lock(trace_id):
            generation = self._ledger.generation
            state = self._trace_state(binding, generation)
            facts = for_request(state, binding.depth)
            request = EvaluationInput.for_intent(
                intent, trace=facts, now=datetime.fromtimestamp(now, UTC)
            )
            decision = decide(engine, request)
            signing_key, override = None, None
            if decision.effect == "allow":
                signing_key, override = self._signing_key(now)
            self._ensure_logged(engine, signing_key.kid if signing_key else None, now)
            grant_info: dict[str, Any] | None = None
            if signing_key is not None:
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
                index = self._ledger.append(entry)
            except BaseException:
                self._states.forget(trace_id)
                raise
            self._states.put(trace_id, generation, advance(state, entry))
            if approval_id is not None:
                self._ledger.append(
                    entries.approval_entry(
                        now,
                        approval_id=approval_id,
                        request_id=request_id,
                        trace_id=trace_id,
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

        Verify against :attr:`Authorization.intent` (the gate fills in ``trace_id`` and
        ``parent_id``), not the intent as first submitted. A refusal is appended to the
        ledger as an execution entry with status ``rejected`` and the precise reason;
        the caller sees an opaque InvalidGrant.
        """
        return self._verify(grant, intent, audience=self.audience, replay=self._replay_guard)

    def _trusted_keys(self, grant: str, now: float) -> dict[str, Any]:
        """The ring's live keys that were logged as ``key`` entries (fail-closed rule 13).

        A key the gate signed with was logged before its first grant, so this drops
        nothing legitimate; a key added to the ring by anyone else is never trusted.
        """
        if self._keyring is None:
            return {}
        # An unreadable rotation leaves the keys already loaded; signing fails closed.
        with contextlib.suppress(SigningKeyError):
            self._refresh_keys(now)
        ring = self._keyring.verification_keys(now)
        if ring.keys() <= self._logged_keys:
            return ring  # every key of the ring is known to be logged: nothing to look up
        kid = _grant_kid(grant)
        if isinstance(kid, str) and kid in ring and kid not in self._logged_keys:
            expected = base64.urlsafe_b64encode(ring[kid].public_bytes_raw()).rstrip(b"=")
            for stored in self._ledger.find("key", kid):
                jwk = self._ledger.prove(stored).entry.get("jwk")
                if isinstance(jwk, Mapping) and jwk.get("x") == expected.decode("ascii"):
                    self._logged_keys.add(kid)
                    break
        return {k: v for k, v in ring.items() if k in self._logged_keys}

    def _verify(
        self,
        grant: str,
        intent: Intent | Mapping[str, Any],
        *,
        audience: str,
        replay: ReplayGuard,
    ) -> GrantClaims:
        now = self._clock()
        try:
            keys = self._trusted_keys(grant, now) if isinstance(grant, str) else {}
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
            log.info("grant refused: %s", exc.audit_reason)
            self._record_rejection(grant, exc.audit_reason, now)
            raise
        except InputError as exc:
            self._record_rejection(grant, f"malformed intent: {exc}", now)
            raise InvalidGrant(f"malformed intent: {exc}") from None
        except LedgerError as exc:
            self._record_rejection(grant, f"key check failed: {exc}", now)
            raise InvalidGrant(f"key check failed: {exc}") from None

    def _record_rejection(self, grant: str, reason: str, now: float) -> None:
        from clearance._internal.grants.token import peek_claims

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
            executor=self.executor,
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

    def clearance(
        self, intent: Intent | Mapping[str, Any], *, trace: Trace | None = None
    ) -> AbstractContextManager[Cleared]:
        """Authorize, verify and govern the ``with`` body; record its outcome afterwards.

        The body runs only after the grant verified. Governed calls inside the body
        run in the same trace and get this request as their parent.
        """
        return _GovernedCall(self, intent, trace)

    def _begin(self, intent: Intent | Mapping[str, Any], trace: Trace | None) -> _Begun:
        """Entering :meth:`clearance`: authorize, then verify the grant once, in process."""
        binding = self._bind(intent, trace)
        # The grant is addressed to this gate's in-process verifier alone, which checks
        # it once, right here: see in_process_audience for why no replay-store write.
        authorization = self._authorize_guarded(binding, audience=self.in_process_audience)
        claims = self._verify(
            authorization.grant,
            authorization.intent,
            audience=self.in_process_audience,
            replay=_SingleUse(),
        )
        request = RunningRequest(
            self._token,
            cast(str, authorization.intent.trace_id),
            authorization.request_id,
            authorization.decision_index,
            binding.depth,
        )
        return _Begun(Cleared(authorization, claims), request)

    def execute(self, grant: str, intent: Intent | Mapping[str, Any], body: Callable[[], R]) -> R:
        """Run ``body`` only if ``grant`` verifies for ``intent``; record the outcome.

        For executors that receive a grant from elsewhere (an agent process, a queue).
        ``intent`` must be :attr:`Authorization.intent` (with the gate's ``trace_id``).
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
            return
        except LedgerError as exc:
            ledger_problem = exc
        try:
            if self._spool is None:
                raise LedgerError("no spool is configured")
            self._spool.put(entry)
        except LedgerError as exc:
            self.outcomes_unrecorded += 1
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

    # --- replay -----------------------------------------------------------------------

    def replay(self, request_id: str) -> Any:
        """Re-evaluate the logged decision of ``request_id``.

        See :mod:`clearance._internal.decision_replay`.

        Returns a :class:`~clearance._internal.decision_replay.ReplayResult`.
        """
        from clearance._internal.decision_replay import DecisionReplayer

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

        See :func:`clearance._internal.gate.governed.governed` for how the intent is built.
        """
        from clearance._internal.gate.governed import governed

        return governed(self, action, principal=principal, resource=resource, purpose=purpose)


def _ledger_form(value: Mapping[str, Any]) -> dict[str, Any]:
    """``value`` as the ledger reads it back (RFC 8785 round trip: ``600.0`` becomes ``600``).

    Mandates are kept in this form so the facts a live decision sees equal the facts
    its replay reads from the log.
    """
    return cast(dict[str, Any], json.loads(canonical_json(dict(value))))


@dataclass(frozen=True, slots=True)
class _Begun:
    cleared: Cleared
    request: RunningRequest


class _GovernedCall:
    """The context manager :meth:`Gate.clearance` returns (one per governed call).

    ``__enter__`` runs only the gate's checks; the body runs between the two
    halves with this request as the running one; ``__exit__`` records the
    outcome, ``error`` with the exception type when the body raised, which then
    propagates unchanged. A class rather than a generator keeps this per-call
    wrapper cheap.
    """

    __slots__ = ("_begun", "_gate", "_intent", "_started", "_token", "_trace")

    def __init__(self, gate: Gate, intent: Intent | Mapping[str, Any], trace: Trace | None) -> None:
        self._gate = gate
        self._intent = intent
        self._trace = trace

    def __enter__(self) -> Cleared:
        begun = self._begun = self._gate._begin(self._intent, self._trace)
        self._token = enter_request(begun.request)
        self._started = time.perf_counter()
        return begun.cleared

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        duration_us = int((time.perf_counter() - self._started) * 1e6)
        exit_request(self._token)
        status, error_type = ("ok", None) if exc_type is None else ("error", exc_type.__qualname__)
        self._gate._record_outcome(self._begun.cleared, status, error_type, duration_us)
