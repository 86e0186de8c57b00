"""``POST /v1/executions``: the outcome of a granted call, or a tool service's refusal.

Invariants (docs/http-api.md "Executions", fail-closed rule 6): an outcome is recorded
only for a grant that verifies against the reported intent (signature by a logged key,
issuer, the gateway's audience, intent digest), once per grant (409 afterwards), and at
most ``server.report_window`` seconds after the grant expired. A refused grant is a
``rejected`` execution entry and an opaque 403 ``invalid_grant``. The entry's
``executor`` is the reporting key's principal. See
:mod:`clearance._internal.server.reports`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request

from clearance._internal.server.auth import Caller, caller
from clearance._internal.server.errors import ApiError, field_of
from clearance._internal.server.models.decisions import (
    ExecutionRecorded,
    ExecutionReport,
    OutcomeReport,
)
from clearance._internal.server.reports import Outcome
from clearance._internal.server.routing import StrictJSONRoute, errors
from clearance._internal.server.state import server_state
from clearance.errors import InputError

router = APIRouter(route_class=StrictJSONRoute, tags=["executions"])


@router.post(
    "/v1/executions",
    status_code=201,
    response_model=ExecutionRecorded,
    summary="Report the outcome of a grant, or a refusal",
    responses=errors(409),
)
def report(
    body: Annotated[ExecutionReport, Body()],
    request: Request,
    who: Annotated[Caller, Depends(caller("agent"))],
) -> dict[str, Any]:
    """Append the execution entry; returns its ledger index (and the granted request)."""
    desk = server_state(request).reports
    if isinstance(body, OutcomeReport):
        try:
            claims, index = desk.record_outcome(
                body.grant,
                body.intent.members(),
                Outcome(
                    status=body.status,
                    result_digest=body.result_digest,
                    duration_us=body.duration_us,
                    error_type=body.error_type,
                    executor_label=body.executor,
                ),
                reporter=who.principal,
            )
        except InputError as exc:  # the intent itself (sizes, depth, numbers)
            raise ApiError("invalid_input", str(exc), field=field_of(str(exc), "intent.")) from None
        return {"request_id": claims.rid, "ledger_index": index}
    index = desk.record_refusal(
        reason=body.reason,
        grant=body.grant,
        action=body.action,
        intent_digest=body.intent_digest,
        executor_label=body.executor,
        reporter=who.principal,
    )
    return {"request_id": None, "ledger_index": index}
