"""``POST /v1/authorize``: decide an intent for the key's principal (docs/http-api.md).

Invariants (fail-closed rules 10 and 11): the principal is the API key's; a body naming
another is 403 ``forbidden`` before anything is decided. A ``trace_id`` must name a trace
opened for that principal (403 otherwise), and a ``parent_id`` a decision of that trace
(422); the gate binds, decides and logs, and a grant leaves only after the decision
entry is durable.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from clearance._internal.server.auth import Caller, caller
from clearance._internal.server.decided import allowed_body, pending_body
from clearance._internal.server.errors import ApiError, denied_error
from clearance._internal.server.models.common import IntentIn
from clearance._internal.server.models.decisions import Allowed, PendingApproval
from clearance._internal.server.responses import JSONOut
from clearance._internal.server.routing import StrictJSONRoute, errors
from clearance._internal.server.state import ServerState, server_state
from clearance.errors import ApprovalRequired, BindingError, Denied

router = APIRouter(route_class=StrictJSONRoute, tags=["authorize"])


def intent_for(body: IntentIn, who: Caller, *, any_principal: bool = False) -> dict[str, Any]:
    """The intent's members with the key's principal (403 for a body naming another).

    ``any_principal`` lets a key that may read every record (a dry run by an auditor)
    name the principal it asks about.
    """
    members = body.members()
    named = members.get("principal")
    if named is not None and named != who.principal and not any_principal:
        raise ApiError(
            "forbidden",
            f"this API key acts for {who.principal!r}; the intent names {named!r} "
            "(leave principal out: the key's is used)",
            field="principal",
        )
    members.setdefault("principal", who.principal)
    return members


def binding_error(exc: BindingError, *, prefix: str = "") -> ApiError:
    """422 for an intent whose trace or parent does not bind, naming the field (after
    ``prefix``, where the intent sits in the body)."""
    text = str(exc)
    field = "parent_id" if "parent" in text else "trace_id" if "trace" in text else None
    return ApiError("invalid_input", text, field=None if field is None else prefix + field)


@router.post(
    "/v1/authorize",
    response_model=Allowed,
    summary="Decide an intent; on allow, the grant",
    responses={
        202: {"model": PendingApproval, "description": "A human approval is required first."},
        **errors(denied=True),
    },
)
def authorize(
    body: IntentIn,
    request: Request,
    who: Annotated[Caller, Depends(caller("agent"))],
) -> Response:
    """Decide ``body`` under the key's principal; log the decision; on ``allow`` return
    the grant bound to the normalized ``intent`` (verify against that, not the body)."""
    return decide_for(server_state(request), body, who)


def decide_for(state: ServerState, body: IntentIn, who: Caller) -> Response:
    """The work of ``POST /v1/authorize`` once the body is valid and the caller known.

    Shared by the route and the lean path (:mod:`clearance._internal.server.hot`), so
    both answer exactly alike. Blocking (the ledger append): run it off the event loop.
    """
    members = intent_for(body, who)
    handle = state.traces.handle(body.trace_id, who.principal) if body.trace_id else None
    started = time.perf_counter()
    try:
        authorization = state.gate.authorize(members, trace=handle, parent=body.parent_id)
    except ApprovalRequired as exc:
        _count(state, "approval_required", body.action, started)
        return JSONOut(pending_body(state.gate, exc, members), status_code=202)
    except Denied as exc:
        _count(state, "deny", body.action, started)
        raise denied_error(exc) from None
    except BindingError as exc:
        raise binding_error(exc) from None
    _count(state, "allow", body.action, started)
    return JSONOut(allowed_body(state.gate, authorization))


def _count(state: ServerState, effect: str, action: str, started: float) -> None:
    state.metrics.decided(effect, action, time.perf_counter() - started)
