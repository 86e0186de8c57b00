"""The transparency-log read API: checkpoint, vkey, proofs (public) and entries (auditor).

Invariants: proofs are RFC 9162 §2.1.3-2.1.4 over the store's verified tree; a size
beyond the log, an index outside its tree, or a consistency proof from size 0 is 422
naming the parameter. Hashes are standard base64. Entries are the parsed leaves (their
RFC 8785 bytes are the leaves), at most 1000 per page.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import PlainTextResponse

from clearance._internal.server.auth import Caller, caller
from clearance._internal.server.errors import ApiError
from clearance._internal.server.models.log import ConsistencyProof, InclusionProof, LogEntries
from clearance._internal.server.routing import PUBLIC_ERRORS, StrictJSONRoute, errors
from clearance._internal.server.state import server_state
from clearance.errors import NotFound

router = APIRouter(route_class=StrictJSONRoute, tags=["log"])

MAX_INDEX = 2**53 - 1
Index = Annotated[int, Query(ge=0, le=MAX_INDEX)]
Size = Annotated[int, Query(ge=1, le=MAX_INDEX)]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _text_response(description: str) -> dict[int | str, dict[str, Any]]:
    return {
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": description,
        },
        404: {"description": "The log has no checkpoint yet."},
        **PUBLIC_ERRORS,
    }


@router.get(
    "/v1/log/checkpoint",
    response_class=PlainTextResponse,
    summary="The latest signed checkpoint (C2SP signed note)",
    responses=_text_response("The latest checkpoint, verbatim."),
)
def checkpoint(request: Request) -> PlainTextResponse:
    """The newest signed checkpoint of the log, as ``text/plain``."""
    latest = server_state(request).gate.ledger.latest_checkpoint()
    if latest is None:
        raise NotFound("the log has no signed checkpoint yet")
    return PlainTextResponse(latest.note)


@router.get(
    "/v1/log/vkey",
    response_class=PlainTextResponse,
    summary="The log's verifier key (C2SP vkey)",
    responses=_text_response("The verifier key."),
)
def vkey(request: Request) -> PlainTextResponse:
    """The C2SP vkey that checkpoints and receipts verify with."""
    return PlainTextResponse(server_state(request).gate.ledger.vkey + "\n")


@router.get(
    "/v1/log/proofs/inclusion",
    response_model=InclusionProof,
    summary="Inclusion proof of a leaf (RFC 9162 §2.1.3)",
    responses=PUBLIC_ERRORS,
)
def inclusion(request: Request, index: Index, size: Size) -> dict[str, Any]:
    """The proof that leaf ``index`` is in the tree of ``size`` leaves, and that root."""
    ledger = server_state(request).gate.ledger
    if size > ledger.size():
        raise ApiError("invalid_input", f"size: the log has {ledger.size()} entries", field="size")
    if index >= size:
        raise ApiError("invalid_input", "index: must be below size", field="index")
    return {
        "index": index,
        "size": size,
        "proof": [_b64(h) for h in ledger.inclusion_proof(index, size)],
        "root": _b64(ledger.root(size)),
    }


@router.get(
    "/v1/log/proofs/consistency",
    response_model=ConsistencyProof,
    summary="Consistency proof between two tree sizes (RFC 9162 §2.1.4)",
    responses=PUBLIC_ERRORS,
)
def consistency(request: Request, first: Size, second: Size) -> dict[str, Any]:
    """The proof that the tree of ``second`` leaves extends the tree of ``first``."""
    ledger = server_state(request).gate.ledger
    if second > ledger.size():
        raise ApiError(
            "invalid_input", f"second: the log has {ledger.size()} entries", field="second"
        )
    if first > second:
        raise ApiError("invalid_input", "first: must not exceed second", field="first")
    return {
        "first": first,
        "second": second,
        "proof": [_b64(h) for h in ledger.consistency_proof(first, second)],
        "first_root": _b64(ledger.root(first)),
        "second_root": _b64(ledger.root(second)),
    }


@router.get(
    "/v1/log/entries",
    response_model=LogEntries,
    summary="A page of log entries",
    responses=errors(),
)
def log_entries(
    request: Request,
    who: Annotated[Caller, Depends(caller("auditor"))],
    start: Index = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Entries ``start`` to ``start + limit - 1`` (fewer at the end of the log)."""
    ledger = server_state(request).gate.ledger
    size = ledger.size()
    found = [] if start >= size else list(ledger.scan(start, min(size, start + limit)))
    return {
        "entries": [{"index": s.index, "entry": dict(s.entry)} for s in found],
        "size": size,
    }
