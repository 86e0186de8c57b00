"""The runtime demo page: the scripted agent's steps, one button each, on the live gate.

Invariants:

* Only a server started with ``clearance serve --demo`` (``clearance demo`` starts its
  gateway so) over a home ``clearance demo`` created has the page: :func:`enable_demo`
  puts a :class:`~clearance._demo.live.LiveDemo` on the server state. Any other
  server answers 404 to the page and to its API, whoever asks.
* Admin only: the page and every step need a login whose key has the ``admin`` scope
  (403 otherwise), and a step, which writes to the ledger, also needs the session's
  CSRF token (``X-CSRF-Token``).
* A step runs through the server's own gate (the same ledger, approvals and metrics as
  the API), so its decisions appear in the feed, the inbox and the lineage graph.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import JSONResponse, Response

from clearance._demo.live import STEPS, LiveDemo, LiveResult
from clearance._demo.tools import MARKER
from clearance._internal.console.web import (
    Viewer,
    check_csrf,
    demo_enabled,
    render,
    require,
    viewer,
)
from clearance._internal.server.state import ServerState, server_state
from clearance.errors import InputError, NotFound

router = APIRouter(include_in_schema=False)

_require_admin = require("admin")


def enable_demo(state: ServerState) -> LiveDemo:
    """Give the server at ``state`` its runtime demo (``clearance serve --demo``).

    InputError for a home ``clearance demo`` did not create: the steps write to the
    demo's sandbox and payments table, which only a demo home has.
    """
    home = state.home
    if not (home.path / MARKER).is_file():
        raise InputError(
            f"--demo serves only a home that `clearance demo` created; {home.path} is not one"
        )
    ring = state.ring
    live = LiveDemo(
        state.gate,
        home.path / "demo",
        signing_kid=lambda: ring.active_kid if ring is not None else None,
        counted=lambda effect, action: state.metrics.decided(effect, action, None),
    )
    # ServerState has no field for it: the console reads it back with demo_enabled().
    setattr(state, "console_demo", live)  # noqa: B010
    return live


def _live(state: ServerState) -> LiveDemo | None:
    found = getattr(state, "console_demo", None)
    return found if demo_enabled(state) and isinstance(found, LiveDemo) else None


def demo_admin(request: Request) -> tuple[Viewer, LiveDemo]:
    """The demo of this server (404 without one), and its admin viewer (login, 403)."""
    live = _live(server_state(request))
    if live is None:
        raise NotFound("this server does not run the demo (`clearance demo` serves one)")
    return _require_admin(request), live


Admin = Annotated[tuple[Viewer, LiveDemo], Depends(demo_admin)]


def _result_json(result: LiveResult) -> dict[str, Any]:
    document = result.to_json()
    document["trace_url"] = f"/console/lineage/{result.trace_id}"
    for call in document["calls"]:
        rid = call["request_id"]
        call["request_url"] = f"/console/requests/{rid}" if call["decided"] and rid else None
    return document


@router.get("/console/demo")
def demo_page(request: Request) -> Response:
    """The steps with a button each, and "run all" (404 on a server without the demo)."""
    state = server_state(request)
    live = _live(state)
    if live is None:
        return render(request, "demo.html", viewer(request), {"live": None}, status_code=404)
    seen = _require_admin(request)
    trace_id = live.trace_id
    return render(request, "demo.html", seen, {"live": live, "steps": STEPS, "trace_id": trace_id})


@router.post("/console/api/demo/trace")
def new_trace(request: Request, admin: Admin) -> Response:
    """Open a new demo trace: the next steps run in it."""
    seen, live = admin
    check_csrf(request, seen)
    trace_id = live.new_trace(opened_by=seen.principal or "console")
    return JSONResponse({"trace_id": trace_id, "trace_url": f"/console/lineage/{trace_id}"})


@router.post("/console/api/demo/steps/{number}")
def run_step(request: Request, number: int, admin: Admin) -> Response:
    """Run step ``number`` through the live gate; its calls, effects and links."""
    seen, live = admin
    check_csrf(request, seen)
    if not 1 <= number <= len(STEPS):
        raise NotFound(f"there is no step {number}: steps are 1 to {len(STEPS)}")
    result = live.run(number, opened_by=seen.principal or "console")
    return JSONResponse(_result_json(result))
