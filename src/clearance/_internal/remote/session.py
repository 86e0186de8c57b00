"""The state and the steps a sync and an async client share (sans-IO: no exchange here).

A :class:`Session` holds what one client trusts and remembers: the gateway's keys
(:class:`~clearance._internal.remote.jwks.JwksCache`), the pinned issuer, audience and
principal, the replay guard, and the intents sent for pending approvals. The drivers
(:mod:`.client`, :mod:`.async_client`) make the exchanges and hand every reply to it;
every rule about what a reply means lives here or in the modules it calls, so both
drivers behave alike by construction.

Invariants:

* A body runs only with a :class:`~clearance._internal.gate.cleared.Cleared` built by
  :meth:`Session.cleared`, which runs every check of
  :mod:`~clearance._internal.remote.grant_check`. A refusal is logged at WARNING on
  ``clearance.client`` with its precise reason; the caller gets the opaque
  :class:`~clearance.errors.InvalidGrant`.
* Identifiers put into URL paths (trace ids, approval ids) are validated first, so
  no value can change which endpoint is called.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Final

from clearance._internal.gate.cleared import Cleared
from clearance._internal.gate.traces import RunningRequest, Trace
from clearance._internal.intent import ID_PATTERN, Intent
from clearance._internal.policy.engine import Decision, Reason
from clearance._internal.remote import approvals
from clearance._internal.remote.binding import Bound, bind, owner_for
from clearance._internal.remote.grant_check import Pins, check_allowed
from clearance._internal.remote.jwks import JwksCache
from clearance._internal.remote.outcomes import report_body
from clearance._internal.remote.replay import MemoryReplayGuard
from clearance._internal.remote.settings import RemoteSettings
from clearance._internal.remote.wire import Reply, decision_of, error_for, gateway_url
from clearance.errors import ApprovalRequired, Error, InputError, InvalidGrant, SigningKeyError

log = logging.getLogger("clearance.client")

JWKS_PATH: Final[str] = "/.well-known/jwks.json"
AUTHORIZE_PATH: Final[str] = "/v1/authorize"
TRACES_PATH: Final[str] = "/v1/traces"
EVALUATE_PATH: Final[str] = "/v1/policies/evaluate"
REMEMBERED_APPROVALS: Final[int] = 1024
"""Pending approvals whose sent intent a client keeps, to check the grant collected later."""


def checked_id(kind: str, value: object) -> str:
    """``value`` if it is a well-formed id to put in a URL path (InputError otherwise)."""
    if not isinstance(value, str) or ID_PATTERN.fullmatch(value) is None:
        raise InputError(f"{kind} {value!r} is not a valid id")
    return value


class Session:
    """One client's trust and memory (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        settings: RemoteSettings,
        executor: str,
        issuer: str | None,
        audience: str | None,
        principal: str | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Validate the configuration; nothing is sent."""
        self.url = gateway_url(url)
        if not isinstance(executor, str) or not executor:
            raise InputError("executor must be a non-empty name (it goes into outcome reports)")
        for name, value in (("issuer", issuer), ("audience", audience), ("principal", principal)):
            if value is not None and (not isinstance(value, str) or not value):
                raise InputError(f"{name} must be a non-empty string or None")
        self.settings = settings
        self.executor = executor
        self.owner = owner_for(self.url)
        self.pins = Pins(issuer, audience, principal)
        self.jwks = JwksCache(refetch_interval=settings.jwks_refetch_interval)
        self.replay = MemoryReplayGuard()
        self.clock = clock
        self._approvals: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._approvals_lock = threading.Lock()

    # -- requests ----------------------------------------------------------------------

    def bind(self, intent: Intent | Mapping[str, Any], trace: Trace | None) -> Bound:
        """The intent to send, bound to the current trace and parent."""
        return bind(intent, trace, owner=self.owner, principal=self.pins.principal)

    def trace_request(
        self, mandate: str, bounds: Mapping[str, Any] | None, principal: str | None
    ) -> dict[str, Any]:
        """The body of ``POST /v1/traces``."""
        if not isinstance(mandate, str):
            raise InputError(
                f"mandate must be the human's instruction text, not {type(mandate).__name__}"
            )
        if bounds is not None and not isinstance(bounds, Mapping):
            raise InputError(f"bounds must be a JSON object, not {type(bounds).__name__}")
        body: dict[str, Any] = {"mandate": {"text": mandate, "bounds": dict(bounds or {})}}
        if principal is not None:
            body["principal"] = principal
        return body

    def opened_trace(self, reply: Reply, request: Mapping[str, Any]) -> Trace:
        """The handle of a trace the gateway opened (or the error it answered)."""
        if not reply.ok:
            raise error_for(reply, fail_closed=False)
        trace_id = checked_id("trace id", reply.member("trace_id"))
        return Trace(trace_id, request["mandate"], self.owner)

    def resumed_trace(self, reply: Reply, trace_id: str) -> Trace:
        """The handle of an existing trace, from ``GET /v1/traces/{id}``."""
        if not reply.ok:
            raise error_for(reply, fail_closed=False)
        mandate = reply.member("mandate")
        if reply.member("trace_id") != trace_id or not isinstance(mandate, dict):
            raise InputError(f"the gateway's record of trace {trace_id} is unreadable")
        return Trace(trace_id, mandate, self.owner)

    # -- decisions ---------------------------------------------------------------------

    def decision(self, reply: Reply, bound: Bound) -> str | None:
        """None for an ``allow`` reply; the approval id for a 202; else the error raised."""
        if reply.status == 200 and reply.member("effect") == "allow":
            return None
        if reply.status == 202:
            approval_id = checked_id("approval id", reply.member("approval_id"))
            self.remember(approval_id, bound.sent)
            return approval_id
        if reply.ok:
            raise error_for(Reply(502, reply.body, reply.headers), fail_closed=True)
        raise error_for(reply, fail_closed=True)

    def approval_required(self, approval_id: str, body: Any) -> ApprovalRequired:
        """The error of a decision that needs a human approval first."""
        reasons = decision_of(body, "approval_required")["reasons"]
        text = "; ".join(r["message"] or r["rule"] for r in reasons) or "the policy asks for it"
        return approvals.pending(
            approval_id,
            body,
            f"approval required: {text} (approval {approval_id}; wait=... or resume it later)",
        )

    def remember(self, approval_id: str, sent: Mapping[str, Any]) -> None:
        """Keep the intent sent for a pending approval (bounded, oldest forgotten first)."""
        with self._approvals_lock:
            self._approvals[approval_id] = dict(sent)
            self._approvals.move_to_end(approval_id)
            while len(self._approvals) > REMEMBERED_APPROVALS:
                self._approvals.popitem(last=False)

    def sent_for(self, state: approvals.ApprovalState) -> dict[str, Any]:
        """The intent a collected grant must be for: the one this client sent, if it did.

        Otherwise (a resume in another process) the approval record's own intent, which
        must be a whole normalized intent of this client's principal.
        """
        with self._approvals_lock:
            sent = self._approvals.get(state.approval_id)
        if sent is not None:
            return sent
        if state.intent is None:
            raise InputError(f"approval {state.approval_id} carries no intent to resume")
        return state.intent

    def forget(self, approval_id: str) -> None:
        """Drop a remembered approval once its grant was collected (or refused)."""
        with self._approvals_lock:
            self._approvals.pop(approval_id, None)

    # -- grants ------------------------------------------------------------------------

    def grant_of(self, body: Any) -> object:
        """The grant member of a reply (unchecked), to decide whether keys must be fetched."""
        return body.get("grant") if isinstance(body, dict) else None

    def adopt_jwks(self, reply: Reply | None) -> None:
        """Adopt a fetched JWKS (the old keys stay when the fetch failed)."""
        if reply is None or not reply.ok:
            self.jwks.fetch_failed()
            log.warning(
                "could not fetch the gateway's JWKS (%s); verifying with the keys held",
                "unreachable" if reply is None else f"HTTP {reply.status}",
            )
            return
        try:
            self.jwks.update(reply.body)
        except SigningKeyError as exc:
            self.jwks.fetch_failed()
            log.warning("the gateway's JWKS was refused: %s", exc)

    def cleared(self, body: Any, sent: Mapping[str, Any]) -> Cleared:
        """Run every local check on an ``allow`` reply; the Cleared a body may use."""
        try:
            authorization, claims = check_allowed(
                body,
                sent,
                keys=self.jwks.keys,
                pins=self.pins,
                replay=self.replay,
                now=self.clock(),
                leeway=self.settings.leeway,
            )
        except InvalidGrant as exc:
            log.warning("grant from %s refused, nothing runs: %s", self.url, exc.audit_reason)
            raise
        return Cleared(authorization, claims)

    def running(self, cleared: Cleared, depth: int) -> RunningRequest:
        """The running-request marker of a verified call (the parent of nested calls)."""
        auth = cleared.authorization
        return RunningRequest(
            self.owner, str(auth.intent.trace_id), auth.request_id, auth.decision_index, depth
        )

    # -- evaluation and outcomes -------------------------------------------------------

    def evaluation(self, reply: Reply) -> tuple[Decision, dict[str, Any]]:
        """The dry-run answer: the decision and the facts it used."""
        if not reply.ok:
            raise error_for(reply, fail_closed=False)
        effect = reply.member("effect")
        if effect not in ("allow", "deny", "approval_required"):
            raise Error("the gateway's evaluation is unreadable")
        reasons = tuple(
            Reason(r["rule"], r["message"]) for r in decision_of(reply.body, effect)["reasons"]
        )
        facts = reply.member("facts")
        digest = reply.member("policy_digest")
        return (
            Decision(effect, reasons, digest if isinstance(digest, str) else ""),
            facts if isinstance(facts, dict) else {},
        )

    def report(
        self, cleared: Cleared, status: str, error_type: str | None, duration_us: int
    ) -> dict[str, Any]:
        """The outcome report of a body that ran."""
        return report_body(
            cleared,
            status=status,
            error_type=error_type,
            duration_us=duration_us,
            executor=self.executor,
        )
