"""Where the hook's decisions are made: the home's gate in process, or ``clearance serve``.

Both backends do the same three things, with the same ledger entries: open the trace of a
new session, decide one tool call under it, and record the outcome of an allowed call
(an ``execution`` entry for the decision's grant, verified like every outcome report:
signature, issuer, audience, intent digest, one report per grant and reporter; a report
may come up to ``server.report_window`` seconds after the grant expired, because a tool
such as a long test run outlives a grant).

Invariants:

* Only an ``allow`` that the gate logged, with a grant that verified (in process: issued
  by the gate itself; over HTTP: checked by :class:`clearance.Client` against the
  gateway's keys), becomes :class:`Verdict` ``allow``. Every error raises: the caller
  denies.
* The principal is never taken from the event: in process it is the hook's configured
  principal (the gate is bound to it); over HTTP it is the API key's.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from clearance.errors import ApprovalRequired, Denied, InputError

_EXECUTOR = "claude-code"


@dataclass(frozen=True, slots=True)
class Verdict:
    """A decision about one tool call, as the hook answers it."""

    effect: str
    """``allow``, ``deny`` or ``approval_required``."""
    reason: str
    request_id: str | None = None
    ledger_index: int | None = None
    grant: str | None = None
    intent: Mapping[str, Any] | None = None
    """The bound intent the grant is for (JSON), on ``allow``."""
    approval_id: str | None = None


def refusal(error: Denied) -> Verdict:
    """The verdict of a gate's Denied / ApprovalRequired."""
    decision = error.decision
    reasons = [
        f"{r.get('rule')}: {r.get('message') or r.get('rule')}"
        for r in decision.get("reasons") or ()
        if isinstance(r, Mapping)
    ]
    request_id = decision.get("request_id")
    index = decision.get("index", decision.get("ledger_index"))
    where = f" (clearance request {request_id}, ledger index {index})" if request_id else ""
    text = "; ".join(reasons) or str(error)
    if isinstance(error, ApprovalRequired):
        return Verdict(
            "approval_required",
            f"clearance requires a human approval ({error.approval_id}): {text}{where}",
            request_id=request_id if isinstance(request_id, str) else None,
            approval_id=error.approval_id,
        )
    return Verdict(
        "deny",
        f"clearance denied this tool call: {text}{where}",
        request_id=request_id if isinstance(request_id, str) else None,
    )


class Backend(Protocol):
    """What the hook needs from a gate."""

    state_dir: Path

    def open_trace(self, mandate: str, bounds: Mapping[str, Any]) -> str:
        """Open the trace of a new session; its id."""
        ...

    def decide(self, intent: Mapping[str, Any], trace_id: str, approval_wait: float) -> Verdict:
        """Decide ``intent`` in ``trace_id`` (waiting up to ``approval_wait`` s for one)."""
        ...

    def record(
        self,
        call: Mapping[str, Any],
        *,
        status: str,
        error_type: str | None,
        result_digest: str | None,
        duration_us: int,
    ) -> int:
        """Append the outcome of the allowed ``call``; the ledger index of its entry."""
        ...

    def close(self) -> None:
        """Release what the backend holds."""
        ...


def _allowed(request_id: str, index: int, grant: str, intent: Mapping[str, Any]) -> Verdict:
    return Verdict(
        "allow",
        f"clearance allowed this tool call (request {request_id}, ledger index {index})",
        request_id=request_id,
        ledger_index=index,
        grant=grant,
        intent=intent,
    )


class InProcessBackend:
    """The home's own gate, opened in this process for one principal."""

    def __init__(self, home: Path | None, principal: str) -> None:
        from clearance._internal.home import Home, find_home
        from clearance._internal.wiring import open_gate

        self._home = Home.load(find_home(home))
        self._principal = principal
        self._gate = open_gate(self._home.path, principal=principal, executor=_EXECUTOR)
        self.state_dir = self._home.path / "hooks" / "claude-code"

    def open_trace(self, mandate: str, bounds: Mapping[str, Any]) -> str:
        """A new trace opened by trusted code (this hook) for the principal."""
        trace = self._gate.open_trace(
            mandate,
            bounds=bounds,
            opened_by="clearance hook claude-code",
            principal=self._principal,
        )
        return trace.trace_id

    def decide(self, intent: Mapping[str, Any], trace_id: str, approval_wait: float) -> Verdict:
        """Authorize under the session's trace, read back from the ledger and proven."""
        trace = self._gate.resume_trace(trace_id, principal=self._principal)
        try:
            try:
                granted = self._gate.authorize(intent, trace=trace)
            except ApprovalRequired as pending:
                if approval_wait <= 0:
                    raise
                granted = self._gate.resume(pending.approval_id, wait=approval_wait)
        except Denied as refused:
            return refusal(refused)
        return _allowed(
            granted.request_id, granted.decision_index, granted.grant, granted.intent.to_json()
        )

    def record(
        self,
        call: Mapping[str, Any],
        *,
        status: str,
        error_type: str | None,
        result_digest: str | None,
        duration_us: int,
    ) -> int:
        """Verify the call's grant and append its outcome, as ``POST /v1/executions`` does."""
        from clearance._internal.gate.key_trust import GateKeys
        from clearance._internal.grants.keys import GrantKeyRing
        from clearance._internal.sealing import JWKS_PURPOSE, derive_key
        from clearance._internal.server.reports import Outcome, ReportDesk

        home, gate = self._home, self._gate
        ring = GrantKeyRing.load(
            home.grant_key_dir, seal_key=derive_key(home.read_log_skey(), JWKS_PURPOSE)
        )
        limits = home.settings.limits
        desk = ReportDesk(
            ledger=gate.ledger,
            keys=GateKeys(ring, gate.ledger, refresh_interval=limits.key_refresh),
            issuer=gate.issuer,
            audience=gate.audience,
            leeway=limits.leeway,
            window=home.settings.server.report_window,
            clock=time.time,
        )
        _, index = desk.record_outcome(
            str(call["grant"]),
            call["intent"],
            Outcome(status, result_digest, duration_us, error_type, _EXECUTOR),
            reporter=self._principal,
        )
        return index

    def close(self) -> None:
        """Close the gate."""
        self._gate.close()


class GatewayBackend:
    """A ``clearance serve`` gateway, through :class:`clearance.Client` and its HTTP API.

    The API key needs the ``orchestrator`` scope: it opens each session's trace for its
    own principal, and authorizes and reports as that principal.
    """

    def __init__(self, url: str, api_key: str, state_dir: Path, timeout: float) -> None:
        import httpx

        from clearance._internal.remote.client import Client

        self._client = Client(url, api_key, executor=_EXECUTOR, timeout=timeout)
        self._http = httpx.Client(
            base_url=self._client.url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
        )
        self.state_dir = state_dir

    def open_trace(self, mandate: str, bounds: Mapping[str, Any]) -> str:
        """``POST /v1/traces`` for the key's own principal."""
        return self._client.open_trace(mandate, bounds=bounds).trace_id

    def decide(self, intent: Mapping[str, Any], trace_id: str, approval_wait: float) -> Verdict:
        """``POST /v1/authorize`` under the session's trace; the grant verified here.

        ``approval_wait`` is not used over HTTP: a pending approval is answered ``ask``.
        """
        trace = self._client.resume_trace(trace_id)
        try:
            granted = self._client.authorize(intent, trace=trace)
        except Denied as refused:
            return refusal(refused)
        return _allowed(
            granted.request_id, granted.decision_index, granted.grant, granted.intent.to_json()
        )

    def record(
        self,
        call: Mapping[str, Any],
        *,
        status: str,
        error_type: str | None,
        result_digest: str | None,
        duration_us: int,
    ) -> int:
        """``POST /v1/executions`` (docs/http-api.md "Executions")."""
        import httpx

        body: dict[str, Any] = {
            "grant": call["grant"],
            "intent": call["intent"],
            "status": status,
            "result_digest": result_digest,
            "duration_us": duration_us,
            "executor": _EXECUTOR,
            "error_type": error_type,
        }
        try:
            reply = self._http.post("/v1/executions", json=body)
        except httpx.HTTPError as exc:
            raise InputError(f"the gateway did not take the outcome: {exc}") from None
        if reply.status_code != 201:
            raise InputError(
                f"the gateway refused the outcome report: {reply.status_code} {reply.text[:300]}"
            )
        index = reply.json().get("ledger_index")
        if type(index) is not int:
            raise InputError("the gateway's answer to the outcome report has no ledger index")
        return index

    def close(self) -> None:
        """Close both HTTP clients."""
        try:
            self._client.close()
        finally:
            self._http.close()
