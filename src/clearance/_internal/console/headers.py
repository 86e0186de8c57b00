"""Security headers on every console response: a strict Content-Security-Policy and friends.

Invariant: every response under ``/console`` carries :data:`CSP` (scripts, styles,
images and connections from this origin only; no inline script or style; no frames;
forms post only here), ``X-Content-Type-Options: nosniff``, ``Referrer-Policy:
same-origin`` (not ``no-referrer``: with it Chromium posts forms with ``Origin: null``,
which the CSRF check refuses) and ``X-Frame-Options: DENY``; pages (not static files) are also
``Cache-Control: no-store``, so a logged-in page never lands in a shared cache.
"""

from __future__ import annotations

from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_COMMON: Final[tuple[tuple[bytes, bytes], ...]] = (
    (b"content-security-policy", CSP.encode("ascii")),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
)


class ConsoleHeaders:
    """ASGI middleware adding the console's security headers (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith("/console"):
            await self.app(scope, receive, send)
            return
        static = path.startswith("/console/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in _COMMON if h[0] not in present)
                if not static and b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
