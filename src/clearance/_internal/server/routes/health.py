"""``/healthz``, ``/readyz``, ``/metrics`` and ``/.well-known/jwks.json`` (all public)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from clearance._internal.server.errors import ApiError
from clearance._internal.server.models.log import Health, Jwks, Readiness
from clearance._internal.server.readiness import readiness
from clearance._internal.server.responses import JSONOut
from clearance._internal.server.routing import PUBLIC_ERRORS, StrictJSONRoute
from clearance._internal.server.state import ServerState, server_state
from clearance.errors import Error

router = APIRouter(route_class=StrictJSONRoute, tags=["health"])


@router.get("/healthz", response_model=Health, summary="The process serves")
async def healthz() -> dict[str, Any]:
    """Always ``ok`` while the process answers."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Whether the gateway can decide now",
    responses={503: {"model": Readiness, "description": "Something a decision needs is not."}},
)
def readyz(request: Request) -> Response:
    """200 when the ledger, the policy and the signing key are usable; 503 naming what is not."""
    state = getattr(request.app.state, "clearance", None)
    if not isinstance(state, ServerState):
        checks = {"server": "starting or stopping"}
    else:
        checks = readiness(state.gate, state.home)
    ready = all(value == "ok" for value in checks.values())
    body = {"status": "ready" if ready else "unavailable", "checks": checks}
    return JSONOut(body, status_code=200 if ready else 503)


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics",
    responses={
        200: {
            "content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}},
            "description": "The Prometheus text exposition format.",
        },
        **PUBLIC_ERRORS,
    },
)
def metrics(request: Request) -> Response:
    """Decisions, latencies, ledger size, checkpoint age, spool depth, pending approvals."""
    return Response(server_state(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/.well-known/jwks.json",
    response_model=Jwks,
    summary="The keys grants verify with (RFC 7517)",
    responses=PUBLIC_ERRORS,
)
def jwks(request: Request) -> dict[str, Any]:
    """The active grant key and retired keys that signed grants still within their life."""
    state = server_state(request)
    ring = state.ring
    if ring is None:
        raise ApiError("unavailable", "the grant key ring is unavailable; no grant verifies")
    now = state.clock()
    ledger = state.gate.ledger
    try:
        state.grant_keys.refresh(now)
    except Error as exc:
        raise ApiError("unavailable", f"the grant key ring is unavailable: {exc}") from None
    document = ring.jwks(now, keep_retired=lambda kid: bool(ledger.find("key", kid)))
    return dict(document)
