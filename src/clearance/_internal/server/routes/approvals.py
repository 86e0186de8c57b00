"""Human approvals over HTTP: list, read (with a long poll), vote, collect the grant.

Invariants (docs/design.md §9; the rules are the gate's, this module only maps them):

* The approver of a vote is the key's principal; approving a request of one's own
  principal, or one the rule does not let this principal approve, is 403; a second vote
  or a vote on a decided approval is 409.
* The grant of an approved request goes only to its requester's principal, once
  (409 afterwards); pending is 202, denied or expired 403 ``denied``.
* An agent key reads only approvals of its own principal (others are 404 to it).
* A long poll waits at most 60 s, in a thread of its own pool, so waiting callers never
  take the threads that decide.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import anyio
import anyio.to_thread
from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.responses import Response

from clearance._internal.server.auth import Caller, caller
from clearance._internal.server.decided import allowed_body
from clearance._internal.server.errors import ApiError, denied_error
from clearance._internal.server.models.admin import ApprovalList, ApprovalView, ApprovalVote
from clearance._internal.server.models.common import ID
from clearance._internal.server.models.decisions import Allowed, PendingApproval
from clearance._internal.server.responses import JSONOut
from clearance._internal.server.routing import StrictJSONRoute, errors
from clearance._internal.server.state import ServerState, server_state
from clearance.errors import ApprovalRequired, Denied, NotFound

router = APIRouter(route_class=StrictJSONRoute, tags=["approvals"])

MAX_WAIT: Final[float] = 60.0
LONG_POLLS: Final[int] = 64
"""Long polls waiting at once; more wait for a free slot (each holds one thread)."""

ApprovalId = Annotated[str, Path(pattern=ID)]


def _limiter(request: Request) -> anyio.CapacityLimiter:
    """The app's pool for long polls (made on the app's event loop, on first use)."""
    limiter = getattr(request.app.state, "long_polls", None)
    if not isinstance(limiter, anyio.CapacityLimiter):
        limiter = request.app.state.long_polls = anyio.CapacityLimiter(LONG_POLLS)
    return limiter


def _readable(state: ServerState, who: Caller, approval_id: str) -> Any:
    """The approval if ``who`` may read it (approver, auditor, or its requester); else 404."""
    approval = state.gate.approval(approval_id)
    if not who.may("approver", "auditor") and approval.principal != who.principal:
        raise NotFound(f"no approval {approval_id!r}")
    return approval


@router.get(
    "/v1/approvals",
    response_model=ApprovalList,
    summary="Approvals, newest first, optionally by status",
    responses=errors(),
)
def list_approvals(
    request: Request,
    who: Annotated[Caller, Depends(caller("approver", "auditor"))],
    status: Annotated[
        Literal["pending", "approved", "denied", "expired", "collected"] | None, Query()
    ] = None,
    cursor: Annotated[str | None, Query(pattern=ID)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """A page of approvals, newest first; pass ``next_cursor`` as ``cursor`` for the next
    one (a full last page is followed by an empty one)."""
    gate = server_state(request).gate
    page = gate.approvals(status, limit=limit, after=cursor)
    return {
        "approvals": [a.to_json() for a in page],
        "next_cursor": page[-1].approval_id if len(page) == limit else None,
    }


@router.get(
    "/v1/approvals/{approval_id}",
    response_model=ApprovalView,
    summary="One approval; with wait, a long poll until it is decided",
    responses=errors(404),
)
async def read_approval(
    request: Request,
    who: Annotated[Caller, Depends(caller())],
    approval_id: ApprovalId,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT)] = 0,
) -> dict[str, Any]:
    """The approval now, or as soon as it is no longer ``pending`` (at most ``wait`` s)."""
    state = server_state(request)
    approval = await anyio.to_thread.run_sync(_readable, state, who, approval_id)
    if wait > 0 and approval.status == "pending":
        approval = await anyio.to_thread.run_sync(
            state.gate.wait_for_approval, approval_id, wait, limiter=_limiter(request)
        )
    return dict(approval.to_json())


@router.post(
    "/v1/approvals/{approval_id}",
    response_model=ApprovalView,
    summary="Approve or deny, as the key's principal",
    responses=errors(404, 409),
)
def vote(
    body: ApprovalVote,
    request: Request,
    who: Annotated[Caller, Depends(caller("approver"))],
    approval_id: ApprovalId,
) -> dict[str, Any]:
    """Record the vote (a ledger entry linked to the decision); returns the approval."""
    gate = server_state(request).gate
    if body.decision == "approve":
        approval = gate.approve(approval_id, approver=who.principal, reason=body.reason)
    else:
        approval = gate.deny(approval_id, approver=who.principal, reason=body.reason)
    return dict(approval.to_json())


@router.post(
    "/v1/approvals/{approval_id}/grant",
    response_model=Allowed,
    summary="Collect the grant of an approved request (once)",
    responses={
        202: {"model": PendingApproval, "description": "Still pending."},
        **errors(404, 409, denied=True),
    },
)
def collect(
    request: Request,
    who: Annotated[Caller, Depends(caller("agent"))],
    approval_id: ApprovalId,
) -> Response:
    """The grant for exactly the approved intent, to its requester, exactly once."""
    state = server_state(request)
    gate = state.gate
    try:
        authorization = gate.collect(approval_id, principal=who.principal)
    except ApprovalRequired:
        return JSONOut(_pending(state, approval_id), status_code=202)
    except Denied as exc:
        raise denied_error(exc) from None
    return JSONOut(allowed_body(gate, authorization))


def _pending(state: ServerState, approval_id: str) -> dict[str, Any]:
    """The 202 body for a still-pending approval, from its logged decision."""
    approval = state.gate.approval(approval_id)
    entry = state.gate.ledger.get(approval.decision_index).entry
    intent = entry.get("intent")
    if not isinstance(intent, dict):
        raise ApiError("internal", "the approval's decision entry has no intent")
    return {
        "request_id": approval.request_id,
        "effect": "approval_required",
        "reasons": list(entry.get("reasons") or []),
        "facts": dict(entry.get("facts") or {}),
        "ledger_index": approval.decision_index,
        "policy_digest": str(entry.get("policy_digest", "")),
        "intent": intent,
        "intent_digest": approval.intent_digest,
        "approval_id": approval.approval_id,
        "expires_at": approval.expires_at,
    }
