"""What a client receives when a call is not forwarded: a tool result with ``isError``.

A denial is an answer the model can act on, not a protocol failure (the MCP
specification: errors a model can correct belong in the result). Each result says in
text why (rule ids and messages) and carries the same facts under ``_meta`` for
programs: ``clearance/decision`` (effect, reasons, request id, approval id).

The text never echoes an exception from inside the gate beyond its own message: what
failed precisely is in the audit log (docs/design.md §4, no error oracles).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import mcp.types as types

from clearance.errors import ApprovalRequired, Denied

DECISION_META: Final = "clearance/decision"
REQUEST_META: Final = "clearance/request_id"
MANDATE_META: Final = "clearance/mandate"
APPROVAL_META: Final = "clearance/approval_id"


def _reasons(decision: Mapping[str, Any]) -> list[dict[str, str]]:
    reasons = []
    for reason in decision.get("reasons", []):
        if isinstance(reason, Mapping):
            reasons.append(
                {"rule": str(reason.get("rule")), "message": str(reason.get("message") or "")}
            )
        else:
            reasons.append({"rule": str(reason), "message": ""})
    return reasons


def _error(text: str, meta: dict[str, Any]) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)],
        is_error=True,
        _meta={DECISION_META: meta},
    )


def denied(exc: Denied) -> types.CallToolResult:
    """The call was denied: each rule id and its message."""
    reasons = _reasons(exc.decision)
    listed = "; ".join(
        f"{r['rule']}: {r['message']}" if r["message"] else r["rule"] for r in reasons
    )
    request = exc.decision.get("request_id")
    text = (
        f"Denied by policy{f' (request {request})' if request else ''}: {listed or exc}. "
        "The call was not made."
    )
    meta = {"effect": "deny", "reasons": reasons, "request_id": request}
    return _error(text, meta)


def approval_pending(exc: ApprovalRequired, waited: float) -> types.CallToolResult:
    """The call needs a human approval that did not come within the wait."""
    reasons = _reasons(exc.decision)
    listed = "; ".join(
        f"{r['rule']}: {r['message']}" if r["message"] else r["rule"] for r in reasons
    )
    text = (
        f"Approval required ({listed or exc}): approval {exc.approval_id} is pending "
        f"after {waited:g} s. The call was not made. Once a human approves it, call the "
        f'tool again with the same arguments and _meta {{"{APPROVAL_META}": '
        f'"{exc.approval_id}"}}.'
    )
    meta = {
        "effect": "approval_required",
        "reasons": reasons,
        "request_id": exc.decision.get("request_id"),
        "approval_id": exc.approval_id,
    }
    return _error(text, meta)


def refused(reason: str, text: str) -> types.CallToolResult:
    """The proxy refused the call before deciding it, or could not complete it."""
    return _error(text, {"effect": "deny", "reasons": [{"rule": reason, "message": text}]})


def with_request(result: types.CallToolResult, request_id: str) -> types.CallToolResult:
    """The upstream's result, with the clearance request id under ``_meta``."""
    meta = dict(result.meta or {})
    meta[REQUEST_META] = request_id
    return result.model_copy(update={"meta": meta})
