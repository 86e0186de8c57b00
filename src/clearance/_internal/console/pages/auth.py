"""Logging in and out of the console with an API key.

Invariants:

* The login form is protected against login CSRF with a double-submit token: a random
  value in a short-lived ``clearance_login`` cookie (HttpOnly, SameSite=Strict) that the
  form must echo.
* A key that does not authenticate (malformed, unknown, wrong, expired or revoked) gets
  one message, whatever the reason (no oracle), and a 401 page; nothing is remembered.
* A successful login starts a new session (a fresh id: no session fixation) and sets
  the cookie HttpOnly, SameSite=Strict, Path=/console, and Secure when the request came
  over TLS. Logout needs the session's CSRF token, ends the session on the server and
  clears the cookie.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from starlette.responses import RedirectResponse, Response

from clearance._internal.console.web import (
    COOKIE,
    Viewer,
    check_csrf,
    render,
    require,
    safe_next,
    sessions,
    viewer,
)
from clearance._internal.server.state import server_state
from clearance.errors import Unauthenticated

router = APIRouter(include_in_schema=False)

LOGIN_COOKIE = "clearance_login"
_LOGIN_FORM_TTL = 1800


def _start_page(seen: Viewer) -> str:
    """The first page of the navigation this viewer may open."""
    for candidate, scopes in (
        ("/console/decisions", ("auditor",)),
        ("/console/approvals", ("approver",)),
    ):
        if seen.may(*scopes):
            return candidate
    return "/console/health"


@router.get("/console")
def index(request: Request) -> Response:
    seen = viewer(request)
    if not seen.logged_in:
        return RedirectResponse("/console/login", status_code=303)
    return RedirectResponse(_start_page(seen), status_code=303)


def _login_page(request: Request, *, error: str | None, status_code: int = 200) -> Response:
    token = secrets.token_urlsafe(32)
    response = render(
        request,
        "login.html",
        Viewer(None, None),
        {"login_token": token, "next": safe_next(request.query_params.get("next")), "error": error},
        status_code=status_code,
    )
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=_LOGIN_FORM_TTL,
        path="/console",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.get("/console/login")
def login_form(request: Request) -> Response:
    seen = viewer(request)
    if seen.logged_in:
        return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    return _login_page(request, error=None)


@router.post("/console/login")
def login(
    request: Request,
    api_key: Annotated[str, Form(max_length=512)],
    login_token: Annotated[str, Form(max_length=128)],
    next: Annotated[str, Form(max_length=2048)] = "/console",
) -> Response:
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(
        login_token.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    ):
        return _login_page(
            request, error="The login form expired; please try again.", status_code=403
        )
    state = server_state(request)
    try:
        state.keys.authenticate(api_key.strip())
    except Unauthenticated:
        return _login_page(
            request,
            error="That API key is not valid (unknown, wrong, expired or revoked).",
            status_code=401,
        )
    book = sessions(request)
    book.close(request.cookies.get(COOKIE))
    session = book.open(api_key.strip(), state.clock())
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(
        COOKIE,
        session.session_id,
        path="/console",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/console")
    return response


@router.post("/console/logout")
def logout(
    request: Request,
    seen: Annotated[Viewer, Depends(require())],
    csrf_token: Annotated[str, Form(max_length=128)],
) -> Response:
    check_csrf(request, seen, csrf_token)
    sessions(request).close(request.cookies.get(COOKIE))
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(COOKIE, path="/console")
    return response


@router.get("/console/me")
def account(request: Request, seen: Annotated[Viewer, Depends(require())]) -> Response:
    """Who is logged in, with which scopes, until when, and which pages that opens."""
    state = server_state(request)
    settings = state.home.settings.server
    session = seen.session
    assert session is not None
    ends = min(
        session.seen_at + settings.console_session_idle,
        session.started_at + settings.console_session_max,
    )
    return render(request, "me.html", seen, {"session_ends": ends, "key": seen.key})
