"""What every route shares: strict JSON bodies and the documented error responses.

:class:`StrictJSONRoute` parses request bodies with :mod:`clearance._internal.strict_json`
instead of ``json.loads``: a body that repeats a member name, or carries ``NaN`` or
``Infinity``, means different things to different parsers, so it is refused (400
``bad_request``) rather than read "last member wins" (RFC 8259 §4).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any, Final

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from clearance._internal import strict_json
from clearance._internal.server.models.common import DeniedBody, ErrorBody


class StrictJSONRequest(Request):
    """A request whose :meth:`json` refuses duplicate members and non-JSON constants."""

    async def json(self) -> Any:
        """The body parsed strictly; ``json.JSONDecodeError`` (400) for anything else."""
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = strict_json.loads(body)
            except json.JSONDecodeError:
                raise
            except (ValueError, UnicodeDecodeError, RecursionError) as exc:
                text = body.decode("utf-8", "replace")
                raise json.JSONDecodeError(str(exc), text, 0) from None
        return self._json


class StrictJSONRoute(APIRoute):
    """An :class:`~fastapi.routing.APIRoute` whose handler sees a :class:`StrictJSONRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The default handler, given the strict request."""
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


PUBLIC_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    422: _error("A query parameter is invalid (`field` names it)."),
    500: _error("An unexpected error; the gateway logged it."),
    503: _error("The ledger, the policy or the signing key is unavailable."),
}
"""Errors any public route may answer."""

PROTECTED_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    400: _error("The body is not a JSON object."),
    401: _error("No API key, or an unknown, expired or revoked one."),
    403: _error("The API key lacks the scope, or names another principal."),
    413: _error("The body is larger than `server.max_body`."),
    422: _error("The input is invalid (`field` names the first bad field)."),
    429: _error("Too many requests with this API key (see `Retry-After`)."),
    500: _error("An unexpected error; the gateway logged it."),
    503: _error("The ledger, the policy or the signing key is unavailable."),
}
"""Errors any route behind an API key may answer."""


def errors(*extra: int, denied: bool = False) -> dict[int | str, dict[str, Any]]:
    """:data:`PROTECTED_ERRORS` plus ``extra`` statuses (404, 409); with ``denied``, 403
    documents the denial body."""
    out = dict(PROTECTED_ERRORS)
    descriptions = {404: "No such record.", 409: "Already done; it happens only once."}
    for status in extra:
        out[status] = _error(descriptions.get(status, "See docs/http-api.md."))
    if denied:
        out[403] = {
            "model": DeniedBody,
            "description": "Denied by policy (`denied`, with the logged decision), or the key "
            "lacks the scope or names another principal (`forbidden`).",
        }
    return out
