"""Who decides the proxy's calls: the in-process gate of a home, or ``clearance serve``.

Both run a call the same way: decide the intent (ledger first), run the body only after
an ``allow`` (or an approval), record the body's JSON result as the execution outcome
(its RFC 8785 digest; for a tool the bundle marks ``untrusted_output`` or
``sensitive_output``, the fingerprints of its values), and raise :class:`Denied` /
:class:`ApprovalRequired` otherwise. Everything here is blocking: the proxy calls it
from a worker thread.

Invariants:

* The body never runs unless the gate (or the gateway, whose grant the client verifies
  locally) allowed exactly the intent it is about to run.
* A call retried with an approval id runs only the approved intent: the retry's
  arguments must be the approved ones (the in-process grant is verified against the
  retry's intent digest; the remote client's approved intent is compared), else it is
  refused before anything is forwarded.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from clearance._internal.gate.core import Gate
from clearance._internal.gate.traces import Trace
from clearance._internal.intent import Intent
from clearance._internal.remote.client import Client
from clearance.errors import NotPermitted
from clearance.integrations.mcp._listing import never_allowed

Body = Callable[[], dict[str, Any]]
"""Forwards the call upstream and returns its result as JSON (runs only after a grant)."""

EXECUTOR = "clearance-mcp-proxy"


class Authority(Protocol):
    """The decision point behind the proxy."""

    def open_trace(self, mandate: str, bounds: Mapping[str, Any] | None, principal: str) -> Trace:
        """Open a session's trace with its mandate, for ``principal``'s intents only."""
        ...

    def hidden(self, principal: str, action: str) -> bool:
        """True when no call of ``action`` by ``principal`` can be allowed (not listed)."""
        ...

    def declares_untrusted(self, action: str) -> bool | None:
        """Does the active bundle mark ``action`` ``untrusted_output``? None: cannot tell."""
        ...

    def run(
        self, intent: Mapping[str, Any], trace: Trace, wait: float, body: Body
    ) -> tuple[str, dict[str, Any]]:
        """Decide, run ``body`` when allowed, record its result; (request id, result)."""
        ...

    def run_approved(
        self, approval_id: str, intent: Mapping[str, Any], wait: float, body: Body
    ) -> tuple[str, dict[str, Any]]:
        """Run the approved call ``approval_id`` (its one grant), when it is ``intent``."""
        ...

    def close(self) -> None:
        """Release the gate or the client."""
        ...


class InProcessAuthority:
    """The gate of a clearance home, opened in this process as a multi-principal service.

    The proxy authenticated its callers itself (stdio: the configured principal; HTTP:
    a bearer token), so the gate accepts any principal, and each session's trace is
    opened for its caller's principal only.
    """

    def __init__(self, home: str | os.PathLike[str] | None) -> None:
        """Open the home's gate (refuses to start on a bundle that does not load)."""
        from clearance._internal.wiring import open_gate

        self.gate: Gate = open_gate(home, multi_principal=True, executor=EXECUTOR)

    def open_trace(self, mandate: str, bounds: Mapping[str, Any] | None, principal: str) -> Trace:
        """See :meth:`Authority.open_trace`."""
        return self.gate.open_trace(
            mandate, bounds=bounds, opened_by="clearance mcp proxy", principal=principal
        )

    def hidden(self, principal: str, action: str) -> bool:
        """See :meth:`Authority.hidden` and :mod:`clearance.integrations.mcp._listing`."""
        return never_allowed(self.gate.engine.document(), principal, action)

    def declares_untrusted(self, action: str) -> bool | None:
        """See :meth:`Authority.declares_untrusted`."""
        tool = self.gate.engine.tool(action)
        return tool is not None and tool.untrusted_output

    def run(
        self, intent: Mapping[str, Any], trace: Trace, wait: float, body: Body
    ) -> tuple[str, dict[str, Any]]:
        """See :meth:`Authority.run`."""
        with self.gate.clearance(intent, trace=trace, wait=wait or None) as cleared:
            result = body()
            cleared.record_result(result)
        return cleared.request_id, result

    def run_approved(
        self, approval_id: str, intent: Mapping[str, Any], wait: float, body: Body
    ) -> tuple[str, dict[str, Any]]:
        """See :meth:`Authority.run_approved`: the grant is verified against ``intent``."""
        principal = str(intent["principal"])
        if wait:
            self.gate.wait_for_approval(approval_id, wait)
        authorization = self.gate.collect(approval_id, principal=principal)
        approved = authorization.intent.to_json()
        # The retry's own fields, with the trace and parent the gate bound the approved
        # intent to: the grant's intent digest then holds only if they are the same call.
        retried = Intent.from_json(
            {**approved, **{k: intent.get(k) for k in ("action", "resource", "purpose", "args")}}
        )
        result = self.gate.execute(authorization.grant, retried, body)
        return authorization.request_id, result

    def close(self) -> None:
        """Close the gate (its ledger signs a last checkpoint)."""
        self.gate.close()


class RemoteAuthority:
    """``clearance serve`` through :class:`clearance.Client` (the key's principal only).

    The key needs the ``orchestrator`` scope (it opens the sessions' traces; the scope
    implies ``agent``): with ``agent`` alone every call is refused before it is decided,
    as ``trace-unavailable``. The key's principal must be the caller's (the stdio
    ``principal``, each HTTP client's): the gateway refuses an intent of any other
    principal. Listing hides only what the gateway's dry run says is ``unknown-action``
    (a strict bundle that does not list the action): the proxy cannot read the
    gateway's rules, so anything else is listed and decided at call time.
    """

    def __init__(self, url: str, api_key: str) -> None:
        """A client of the gateway at ``url``."""
        self.client = Client(url, api_key, executor=EXECUTOR)

    def open_trace(self, mandate: str, bounds: Mapping[str, Any] | None, principal: str) -> Trace:
        """See :meth:`Authority.open_trace`."""
        return self.client.open_trace(mandate, bounds=bounds, principal=principal)

    def hidden(self, principal: str, action: str) -> bool:
        """See the class docstring."""
        try:
            decision, _ = self.client.evaluate({"principal": principal, "action": action})
        except Exception:  # an unreachable gateway cannot prove "never": list it
            return False
        return decision.effect == "deny" and decision.rule_ids == ["unknown-action"]

    def declares_untrusted(self, action: str) -> bool | None:
        """The gateway's bundle is not readable from here."""
        return None

    def run(
        self, intent: Mapping[str, Any], trace: Trace, wait: float, body: Body
    ) -> tuple[str, dict[str, Any]]:
        """See :meth:`Authority.run`."""
        with self.client.clearance(intent, trace=trace, wait=wait or None) as cleared:
            result = body()
            cleared.record_result(result)
        return cleared.request_id, result

    def run_approved(
        self, approval_id: str, intent: Mapping[str, Any], wait: float, body: Body
    ) -> tuple[str, dict[str, Any]]:
        """See :meth:`Authority.run_approved`: the approved intent is compared first."""
        with self.client.resume(approval_id, wait=wait or None) as cleared:
            approved = cleared.authorization.intent
            if (approved.action, approved.resource, approved.purpose, dict(approved.args)) != (
                intent.get("action"),
                intent.get("resource"),
                intent.get("purpose"),
                intent.get("args"),
            ):
                raise NotPermitted(f"approval {approval_id} is for another call")
            result = body()
            cleared.record_result(result)
        return cleared.request_id, result

    def close(self) -> None:
        """Close the client (it flushes spooled outcomes first)."""
        self.client.close()
