"""``POST /v1/traces`` (open with a mandate) and ``GET /v1/traces/{trace_id}`` (lineage).

Invariants: only ``orchestrator`` and ``admin`` keys open traces; the mandate is trusted
input, so an ``agent`` key can never widen its own. A trace is opened for one principal
(the body's, default the key's) and accepts intents from that principal only. Reading a
trace needs ``auditor``, or an agent key of the trace's principal; anyone else's trace
is 404 to an agent key, like one that does not exist.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from clearance._internal.server.auth import Caller, caller
from clearance._internal.server.errors import ApiError
from clearance._internal.server.models.common import ID
from clearance._internal.server.models.decisions import OpenTrace, TraceOpened, TraceView
from clearance._internal.server.records import trace_page
from clearance._internal.server.routing import StrictJSONRoute, errors
from clearance._internal.server.state import server_state
from clearance.errors import InputError, NotFound

router = APIRouter(route_class=StrictJSONRoute, tags=["traces"])


@router.post(
    "/v1/traces",
    status_code=201,
    response_model=TraceOpened,
    summary="Open a trace with the human's mandate",
    responses=errors(),
)
def open_trace(
    body: OpenTrace,
    request: Request,
    who: Annotated[Caller, Depends(caller("orchestrator"))],
) -> dict[str, Any]:
    """Append the trace's ``trace`` entry; intents of ``principal`` may then name it."""
    state = server_state(request)
    principal = body.principal or who.principal
    try:
        handle = state.gate.open_trace(
            body.mandate.text,
            bounds=body.mandate.bounds,
            opened_by=who.principal,
            principal=principal,
        )
    except InputError as exc:
        raise ApiError("invalid_input", str(exc), field="mandate") from None
    state.traces.remember(handle, principal)
    index = state.gate.ledger.find("trace", handle.trace_id)[0].index
    return {"trace_id": handle.trace_id, "principal": principal, "ledger_index": index}


@router.get(
    "/v1/traces/{trace_id}",
    response_model=TraceView,
    summary="A trace's mandate and requests, with parent links",
    responses=errors(404),
)
def read_trace(
    request: Request,
    who: Annotated[Caller, Depends(caller())],
    trace_id: Annotated[str, Path(pattern=ID)],
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,20}$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """One page of the trace's requests in ledger order (``next_cursor`` for the next)."""
    if not who.may("auditor", "agent"):
        raise ApiError("forbidden", "reading a trace needs the auditor or agent scope")
    state = server_state(request)
    page = trace_page(state.gate.ledger, trace_id, cursor=cursor, limit=limit)
    if not who.may("auditor") and page["principal"] != who.principal:
        raise NotFound(f"no trace {trace_id!r} in the log")
    return page
