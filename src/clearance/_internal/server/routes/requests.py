"""``GET /v1/requests/{request_id}`` and ``GET /v1/receipts/{request_id}``.

Invariants: ``auditor`` (and ``admin``) keys read any request; an agent key reads the
requests of its own principal only, and anyone else's is 404 to it, exactly like one
that does not exist. A receipt is built from a signed checkpoint covering the entry and
verified before it is sent; an execution receipt is only ever for a real outcome
(``ok``/``error``), never for a ``rejected`` entry, whose request id is unverified.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.responses import PlainTextResponse, Response

from clearance._internal.ledger.receipts import build_receipt, to_tlog_proof
from clearance._internal.ledger.store import StoredEntry
from clearance._internal.server.auth import Caller, caller
from clearance._internal.server.errors import ApiError
from clearance._internal.server.models.common import ID
from clearance._internal.server.models.decisions import RequestRecord
from clearance._internal.server.models.log import Receipt
from clearance._internal.server.records import decision_of, principal_of, request_record
from clearance._internal.server.responses import JSONOut
from clearance._internal.server.routing import StrictJSONRoute, errors
from clearance._internal.server.state import ServerState, server_state
from clearance.errors import Error, NotFound

router = APIRouter(route_class=StrictJSONRoute, tags=["requests"])

RequestId = Annotated[str, Path(pattern=ID)]


def readable_decision(state: ServerState, who: Caller, request_id: str) -> StoredEntry:
    """The proven decision entry of ``request_id`` if ``who`` may read it; 404 otherwise."""
    if not who.may("auditor", "agent"):
        raise ApiError("forbidden", "reading requests needs the auditor or agent scope")
    stored = decision_of(state.gate.ledger, request_id)
    if not who.may("auditor") and principal_of(stored.entry) != who.principal:
        raise NotFound(f"no request {request_id!r} in the log")
    return stored


@router.get(
    "/v1/requests/{request_id}",
    response_model=RequestRecord,
    summary="Everything the log holds about one request",
    responses=errors(404),
)
def read_request(
    request: Request,
    who: Annotated[Caller, Depends(caller())],
    request_id: RequestId,
) -> dict[str, Any]:
    """Intent, decision, reasons, facts, grant facts, approval, outcome, lineage."""
    state = server_state(request)
    stored = readable_decision(state, who, request_id)

    def approval(approval_id: str) -> dict[str, Any] | None:
        try:
            return dict(state.gate.approval(approval_id).to_json())
        except Error:
            return None

    return request_record(state.gate.ledger, stored, approval)


@router.get(
    "/v1/receipts/{request_id}",
    response_model=Receipt,
    summary="The receipt of a request's decision or outcome",
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "The receipt (JSON), or with format=tlog-proof the C2SP "
            "tlog-proof@v1 text.",
        },
        **errors(404),
    },
)
def read_receipt(
    request: Request,
    who: Annotated[Caller, Depends(caller())],
    request_id: RequestId,
    entry: Annotated[Literal["decision", "execution"], Query()] = "decision",
    output: Annotated[Literal["json", "tlog-proof"], Query(alias="format")] = "json",
) -> Response:
    """A receipt that verifies offline with the log's vkey (``GET /v1/log/vkey``)."""
    state = server_state(request)
    decision = readable_decision(state, who, request_id)
    ledger = state.gate.ledger
    if entry == "decision":
        chosen = decision
    else:
        outcomes = [
            s
            for s in ledger.find("execution", request_id)
            if s.entry.get("status") in ("ok", "error")
        ]
        if not outcomes:
            raise NotFound(f"request {request_id!r} has no reported outcome")
        chosen = outcomes[0]
    checkpoint = ledger.checkpoint_covering(chosen.index)
    proof = ledger.inclusion_proof(chosen.index, checkpoint.size)
    receipt = build_receipt(chosen.entry, chosen.index, checkpoint, proof, ledger.vkey)
    if output == "tlog-proof":
        return PlainTextResponse(to_tlog_proof(receipt))
    return JSONOut(receipt)
