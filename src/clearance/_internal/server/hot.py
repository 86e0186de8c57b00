"""A lean ASGI path for ``POST /v1/authorize``, the endpoint every agent call goes through.

FastAPI's per-request machinery (resolving the route's dependencies, validating and
re-validating) costs more CPU than the gate's own decision, ledger append and
signature together (README, "Benchmark"). This middleware answers the endpoint's
well-formed requests itself, with exactly the route's parts, in the route's order:

1. the body is read (the body limit around this middleware still applies) and parsed
   with the route's strict JSON parser, then validated with the route's own pydantic
   model (:class:`~clearance._internal.server.models.common.IntentIn`);
2. the key is checked by :func:`~clearance._internal.server.auth.identify`, as the
   route's dependency does (401, 429, 403);
3. :func:`~clearance._internal.server.routes.authorize.decide_for`, the route's body,
   decides on a worker thread; its errors are answered as the app's handlers answer them.

Invariants: the answers are the route's, byte for byte, because they are made by the
same functions. Anything this path does not handle on its own, a body that is not a
well-formed intent above all, goes to the FastAPI route with the body replayed
unchanged and nothing charged yet (validation comes before the key check, and FastAPI
checks the key first, so the order of the errors a client sees does not change).
Unexpected exceptions propagate to the app's outermost handler (500 ``internal``).
"""

from __future__ import annotations

import anyio.to_thread
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clearance._internal import strict_json
from clearance._internal.server.auth import identify
from clearance._internal.server.errors import ApiError, from_error
from clearance._internal.server.models.common import IntentIn
from clearance._internal.server.routes.authorize import decide_for
from clearance._internal.server.state import server_state
from clearance.errors import Error, Unauthenticated

PATH = "/v1/authorize"


class LeanAuthorize:
    """Pure ASGI middleware answering well-formed ``POST /v1/authorize`` requests."""

    def __init__(self, app: ASGIApp, route: object) -> None:
        """Wrap ``app``; ``route`` is the FastAPI route of the path (for metrics labels)."""
        self.app = app
        self._route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer the endpoint, or hand the request on untouched."""
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        body = await request.body()
        intent = _valid_intent(body, request.headers.get("content-type", ""))
        if intent is None:
            await self.app(scope, _replay(body, receive), send)
            return
        scope["route"] = self._route
        response = await _answer(request, intent)
        await response(scope, receive, send)


def _valid_intent(body: bytes, content_type: str) -> IntentIn | None:
    """The body as the route's model, or None when the route should judge it."""
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        return None
    try:
        return IntentIn.model_validate(strict_json.loads(body))
    except (ValueError, UnicodeDecodeError, RecursionError, ValidationError):
        return None  # ValidationError is a ValueError too; listed for the reader


async def _answer(request: Request, intent: IntentIn) -> Response:
    try:
        state = server_state(request)
        who = identify(state, _bearer(request.headers.get("authorization")), ("agent",))
        response: Response = await anyio.to_thread.run_sync(decide_for, state, intent, who)
    except ApiError as exc:
        return exc.response()
    except Error as exc:
        return from_error(exc).response()
    return response


def _bearer(header: str | None) -> str:
    """The token of ``Authorization: Bearer <token>``, parsed as FastAPI's HTTPBearer does."""
    scheme, token = get_authorization_scheme_param(header)
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("no bearer API key")
    return token


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands ``body`` to the app again, then the client's own messages."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
