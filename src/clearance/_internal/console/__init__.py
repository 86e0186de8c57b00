"""The governance console: server-rendered pages at ``/console`` on ``clearance serve``.

:func:`mount` adds it to the runtime API's app: the pages (one router per module of
:mod:`.pages`), the static scripts and styles (hand-written, no third-party front-end
code, no build step, no external request), the security headers
(:mod:`.headers`) and the session book (:mod:`.sessions`). Pages read the server's
state directly (the same gate, ledger and key store as the API) and follow the API's
scopes (:mod:`.web`).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, Response
from starlette.staticfiles import StaticFiles

from clearance._internal.console.headers import ConsoleHeaders
from clearance._internal.console.pages import (
    approvals,
    auth,
    decisions,
    demo,
    health,
    lineage,
    policy,
    proof,
    requests,
)
from clearance._internal.console.sessions import SessionBook
from clearance._internal.console.web import (
    API_PREFIX,
    HERE,
    ConsoleForbidden,
    LoginRequired,
    Viewer,
    login_redirect,
    render,
    viewer,
)
from clearance._internal.server.settings import ServerSettings

PAGES = (auth, approvals, lineage, demo, health, decisions, requests, proof, policy)
"""Every page module, in no particular order."""


def mount(app: FastAPI, settings: ServerSettings) -> None:
    """Serve the console from ``app`` (call before the app starts)."""
    app.state.console_sessions = SessionBook(
        idle=settings.console_session_idle, longest=settings.console_session_max
    )
    for module in PAGES:
        # The console is not part of the API contract: its routes stay out of the
        # OpenAPI document (and out of its fuzzing), whatever a page module declares.
        app.include_router(module.router, include_in_schema=False)
    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")

    async def on_login_required(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith(API_PREFIX):
            return JSONResponse(
                {"error": {"code": "unauthenticated", "message": "log in to the console"}},
                status_code=401,
            )
        return login_redirect(request)

    async def on_forbidden(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ConsoleForbidden)
        if request.url.path.startswith(API_PREFIX):
            return JSONResponse(
                {"error": {"code": "forbidden", "message": exc.message}}, status_code=403
            )
        try:
            seen = viewer(request)
        except Exception:  # the state is gone (stopping): a bare page is enough
            seen = Viewer(None, None)
        return render(request, "forbidden.html", seen, {"message": exc.message}, status_code=403)

    app.add_exception_handler(LoginRequired, on_login_required)
    app.add_exception_handler(ConsoleForbidden, on_forbidden)
    app.add_middleware(ConsoleHeaders)
