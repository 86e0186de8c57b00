"""What every console page shares: who is looking, what they may do, CSRF, rendering.

Invariants:

* A page learns who is looking only through :func:`viewer` (optional login: public
  pages) or :func:`require` (login and one of the scopes). Both authenticate the
  session's API key again on every request, so a revoked key is refused at once.
* The scopes are the API's (docs/http-api.md): what a page shows and offers is decided
  by :meth:`Viewer.may`, and every state-changing console route checks the scope
  itself as well as the CSRF token (:func:`check_csrf`) — hiding a button is never the
  protection.
* A request without a valid session gets, on an HTML page, a redirect to the login page
  (303, remembering the page); under ``/console/api`` a JSON 401. A logged-in viewer
  without the scope gets 403 (an HTML page, or JSON under ``/console/api``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import HTMLResponse, Response

from clearance._internal.apikeys import ApiKey
from clearance._internal.console.sessions import Session, SessionBook
from clearance._internal.server.state import ServerState, server_state
from clearance.errors import Unauthenticated

COOKIE: Final = "clearance_console"
"""The session cookie: HttpOnly, SameSite=Strict, Path=/console, Secure over TLS."""
CSRF_HEADER: Final = "X-CSRF-Token"
"""Where console scripts put the session's CSRF token on a state-changing request."""
CSRF_FIELD: Final = "csrf_token"
"""The hidden form field holding the session's CSRF token."""
API_PREFIX: Final = "/console/api/"

HERE: Final = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")


@dataclass(frozen=True)
class NavItem:
    """One entry of the console's navigation."""

    label: str
    href: str
    scopes: tuple[str, ...]
    """The viewer needs one of these; empty: anyone, logged in or not."""


NAVIGATION: Final[tuple[NavItem, ...]] = (
    NavItem("Decisions", "/console/decisions", ("auditor",)),
    NavItem("Approvals", "/console/approvals", ("approver", "auditor")),
    NavItem("Policy lab", "/console/policy", ("auditor",)),
    NavItem("Lineage", "/console/lineage", ("auditor",)),
    NavItem("Proofs", "/console/proof", ()),
    NavItem("Health", "/console/health", ()),
    NavItem("Demo", "/console/demo", ("admin",)),
)


@dataclass(frozen=True)
class Viewer:
    """Who is looking at a page: a logged-in key, or nobody (public pages)."""

    key: ApiKey | None
    session: Session | None

    @property
    def logged_in(self) -> bool:
        return self.key is not None

    @property
    def principal(self) -> str | None:
        return self.key.principal if self.key is not None else None

    @property
    def csrf(self) -> str:
        """The session's CSRF token ('' when not logged in)."""
        return self.session.csrf if self.session is not None else ""

    def may(self, *scopes: str) -> bool:
        """Whether the viewer's key may act in one of ``scopes`` (admin may do all)."""
        return self.key is not None and any(self.key.allows(scope) for scope in scopes)

    def navigation(self, state: ServerState | None) -> list[NavItem]:
        """The pages this viewer may open, in menu order."""
        shown = []
        for item in NAVIGATION:
            if item.href == "/console/demo" and not demo_enabled(state):
                continue
            if item.href == "/console/health" and not self.logged_in and not public_health(state):
                continue
            if not item.scopes or self.may(*item.scopes):
                shown.append(item)
        return shown


class LoginRequired(Exception):
    """No valid session: log in (HTML) or 401 (JSON)."""


class ConsoleForbidden(Exception):
    """Logged in, but the key's scopes (or the CSRF token) do not allow this."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def sessions(request: Request) -> SessionBook:
    """The app's session book (made when the console was mounted)."""
    book = request.app.state.console_sessions
    assert isinstance(book, SessionBook)
    return book


def demo_enabled(state: ServerState | None) -> bool:
    """Whether this server offers the runtime demo page (``clearance demo`` serves one)."""
    return state is not None and bool(getattr(state, "console_demo", None))


def public_health(state: ServerState | None) -> bool:
    """Whether the health page is readable without logging in (``server.console``)."""
    return state is None or state.home.settings.server.console_public_health


def viewer(request: Request) -> Viewer:
    """Who is looking: the session's key when the cookie names a live session whose key
    still authenticates, else an anonymous viewer (a stale session is ended)."""
    state = server_state(request)
    book = sessions(request)
    session_id = request.cookies.get(COOKIE)
    session = book.find(session_id, state.clock())
    if session is None:
        return Viewer(None, None)
    try:
        key = state.keys.authenticate(session.token)
    except Unauthenticated:
        book.close(session.session_id)
        return Viewer(None, None)
    return Viewer(key, session)


def require(*scopes: str) -> Callable[[Request], Viewer]:
    """A dependency: a logged-in viewer whose key has one of ``scopes`` (none: any key)."""

    def dependency(request: Request) -> Viewer:
        seen = viewer(request)
        if not seen.logged_in:
            raise LoginRequired
        if scopes and not seen.may(*scopes):
            raise ConsoleForbidden(
                f"this page needs one of the scopes {', '.join(scopes)}; "
                f"your key has {', '.join(sorted(seen.key.scopes)) if seen.key else 'none'}"
            )
        return seen

    return dependency


def check_csrf(request: Request, seen: Viewer, presented: str | None = None) -> None:
    """Refuse a state-changing request whose CSRF token (form field ``presented`` or the
    ``X-CSRF-Token`` header) is not the session's, or that comes from another origin."""
    token = presented if presented is not None else request.headers.get(CSRF_HEADER)
    if seen.session is None or not seen.session.csrf_matches(token):
        raise ConsoleForbidden("the form is stale or did not come from this console; reload it")
    origin = request.headers.get("origin")
    if origin is not None and origin != _own_origin(request):
        raise ConsoleForbidden("a console form was posted from another site")


def _own_origin(request: Request) -> str:
    url = request.url
    default = {"http": 80, "https": 443}.get(url.scheme)
    port = f":{url.port}" if url.port is not None and url.port != default else ""
    return f"{url.scheme}://{url.hostname}{port}"


def render(
    request: Request,
    template: str,
    seen: Viewer,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
) -> HTMLResponse:
    """``template`` rendered for ``seen`` with the navigation, the CSRF token and
    ``context``."""
    state = getattr(request.app.state, "clearance", None)
    full = {
        "viewer": seen,
        "navigation": seen.navigation(state if isinstance(state, ServerState) else None),
        "current": request.url.path,
        "csrf_field": CSRF_FIELD,
        **(context or {}),
    }
    response = templates.TemplateResponse(request, template, full, status_code=status_code)
    assert isinstance(response, HTMLResponse)
    return response


def login_redirect(request: Request) -> Response:
    """303 to the login page, coming back to this page afterwards."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return Response(
        status_code=303, headers={"Location": f"/console/login?next={quote(target, safe='')}"}
    )


def safe_next(target: str | None) -> str:
    """``target`` when it is a console path on this site, else the console's start page."""
    if (
        target
        and target.startswith("/console")
        and not target.startswith("//")
        and "\\" not in target
        and all(ord(c) > 31 for c in target)
    ):
        return target
    return "/console"
