"""Every error of the runtime API as ``{"error": {"code", "message", ...}}`` (docs/http-api.md).

Invariants:

* Every response with a status of 400 or above has that body, whoever raised it: our
  routes (:class:`ApiError` and the :class:`~clearance.errors.Error` family),
  FastAPI's own validation (422 naming the ``field``, or 400 for a body that is not a
  JSON object), Starlette's routing (404, 405) and anything unexpected (500
  ``internal``: logged on the ``clearance.server`` logger with its traceback, never
  sent to the client).
* ``code`` values are stable; :data:`CODES` lists them with their status.
* Grant failures are opaque: :class:`~clearance.errors.InvalidGrant` always answers
  ``grant rejected`` (docs/design.md §4: no error oracle); the reason is in the ledger.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any, Final, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from clearance._internal.intent import FIELDS as INTENT_FIELDS
from clearance._internal.server.responses import JSONOut
from clearance.errors import (
    BindingError,
    Conflict,
    Denied,
    Error,
    InputError,
    InvalidGrant,
    LedgerError,
    NotFound,
    NotPermitted,
    PolicyError,
    SigningKeyError,
    Unauthenticated,
)

log = logging.getLogger("clearance.server")

CODES: Final[Mapping[str, int]] = {
    "bad_request": 400,
    "unauthenticated": 401,
    "forbidden": 403,
    "denied": 403,
    "invalid_grant": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "conflict": 409,
    "payload_too_large": 413,
    "invalid_input": 422,
    "rate_limited": 429,
    "internal": 500,
    "unavailable": 503,
}
"""Every error ``code`` and the status it is sent with."""

_BY_STATUS: Final[Mapping[int, str]] = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    422: "invalid_input",
    429: "rate_limited",
    503: "unavailable",
}
UNAUTHENTICATED_MESSAGE: Final = "a valid API key is required: Authorization: Bearer <api key>"


class ApiError(Exception):
    """An error response: ``status``, a stable ``code``, a message and extra members."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        field: str | None = None,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        if code not in CODES:
            raise ValueError(f"unknown error code {code!r}")
        self.status = CODES[code]
        self.code = code
        self.message = message
        self.field = field
        self.extra = dict(extra or {})
        """Members beside ``error`` in the body (a denial's ``request_id``, ``reasons``...)."""
        self.headers = dict(headers or {})

    def response(self) -> Response:
        """The JSON response for this error."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return JSONOut(
            {"error": error, **self.extra}, status_code=self.status, headers=self.headers
        )


def error_response(code: str, message: str, **extra: Any) -> Response:
    """A JSON error response with ``code`` (and its status) and ``message``."""
    return ApiError(code, message, extra=extra).response()


def denied_error(exc: Denied) -> ApiError:
    """What a gate's :class:`~clearance.errors.Denied` means over HTTP.

    A policy denial is 403 ``denied`` with the logged decision beside the error. A
    denial for an environmental reason (the ledger or the signing key unavailable:
    fail-closed rules 4 and 5) is 503 ``unavailable``; an unexpected failure inside the
    gate (rule 9) is 500 ``internal``. None of them carries a grant.
    """
    decision = exc.decision
    reasons = _reasons(decision.get("reasons", ()))
    rules = {r["rule"] for r in reasons}
    extra: dict[str, Any] = {"effect": "deny", "reasons": reasons}
    if isinstance(decision.get("request_id"), str):
        extra["request_id"] = decision["request_id"]
    if isinstance(decision.get("index"), int):
        extra["ledger_index"] = decision["index"]
    if isinstance(decision.get("policy_digest"), str):
        extra["policy_digest"] = decision["policy_digest"]
    if rules & {"ledger-unavailable", "signing-key-unavailable"}:
        return ApiError("unavailable", str(exc), extra=extra)
    if "gate-error" in rules:
        log.error("the gate failed while deciding: %s", decision.get("detail"))
        return ApiError("internal", "the gate failed while deciding; nothing was granted")
    if "request_id" not in extra or "ledger_index" not in extra:
        return ApiError("internal", "the gate refused without logging a decision")
    return ApiError("denied", str(exc), extra=extra)


def _reasons(raw: object) -> list[dict[str, str]]:
    """Reasons as ``[{"rule", "message"}]`` (the gate's own reasons are bare strings)."""
    out: list[dict[str, str]] = []
    if isinstance(raw, Sequence) and not isinstance(raw, str):
        for item in raw:
            if isinstance(item, Mapping):
                out.append(
                    {"rule": str(item.get("rule", "")), "message": str(item.get("message", ""))}
                )
            else:
                out.append({"rule": str(item), "message": ""})
    return out


def from_error(exc: Error) -> ApiError:
    """The API error for one of clearance's own errors (see the module docstring)."""
    if isinstance(exc, Unauthenticated):
        return ApiError(
            "unauthenticated", UNAUTHENTICATED_MESSAGE, headers={"WWW-Authenticate": "Bearer"}
        )
    if isinstance(exc, NotPermitted):
        return ApiError("forbidden", str(exc))
    if isinstance(exc, NotFound):
        return ApiError("not_found", str(exc))
    if isinstance(exc, Conflict):
        return ApiError("conflict", str(exc))
    if isinstance(exc, InvalidGrant):
        return ApiError("invalid_grant", "grant rejected")
    if isinstance(exc, Denied):
        return denied_error(exc)
    if isinstance(exc, BindingError | InputError):
        return ApiError("invalid_input", str(exc), field=field_of(str(exc)))
    if isinstance(exc, LedgerError | SigningKeyError | PolicyError):
        log.warning("unavailable: %s", exc)
        return ApiError("unavailable", f"the gateway cannot serve this now: {exc.diagnostics()}")
    log.error("unexpected clearance error: %r", exc)
    return ApiError("internal", "internal error; the gateway logged it")


def field_of(message: str, prefix: str = "") -> str | None:
    """The field an :class:`~clearance.errors.InputError` message starts with, if it names one.

    The intent's messages start with the field (``"args.amount: ..."``, ``"action 'x'
    is invalid"``); ``prefix`` places it in the body (``"intent."``).
    """
    head = message.split(" ", 1)[0].rstrip(":")
    root = head.split(".", 1)[0].split("[", 1)[0]
    if root in INTENT_FIELDS:
        return prefix + head
    return None


UNION_TAGS: Final = frozenset({"ok", "error", "rejected"})
"""The tags of the discriminated request bodies (``POST /v1/executions``'s ``status``):
pydantic puts the tag in an error's location, which is not a field of the body."""


def _field_path(loc: Sequence[Any]) -> str:
    """A pydantic error location as a dot path in the body or parameters."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header"}:
        if parts[0] == "body" and len(parts) > 2 and parts[1] in UNION_TAGS:
            parts = parts[1:]
        parts = parts[1:]
    return ".".join(parts)


def validation_error(exc: RequestValidationError) -> ApiError:
    """400 for a body that is not a JSON object; otherwise 422 naming the first bad field."""
    errors = list(exc.errors())
    first = errors[0] if errors else {}
    loc = tuple(first.get("loc", ()))
    kind = str(first.get("type", ""))
    if kind == "json_invalid":
        detail = first.get("ctx", {}).get("error", "")
        return ApiError("bad_request", f"the body is not valid JSON: {detail}".rstrip(": "))
    if loc == ("body",) and kind in {"missing", "model_attributes_type", "dict_type", "model_type"}:
        return ApiError("bad_request", "the body must be a JSON object")
    field = _field_path(loc)
    if kind in {"union_tag_invalid", "union_tag_not_found"}:
        tag = str(first.get("ctx", {}).get("discriminator", "")).strip("'")
        field = ".".join(p for p in (field, tag) if p)
    message = str(first.get("msg", "invalid input"))
    return ApiError(
        "invalid_input", f"{field or 'body'}: {message}" if field else message, field=field or None
    )


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` in the contract's shape (see the module docstring)."""

    # Starlette calls each handler only for its own exception class (registered below).
    async def on_api_error(request: Request, exc: Exception) -> Response:
        return cast(ApiError, exc).response()

    async def on_error(request: Request, exc: Exception) -> Response:
        return from_error(cast(Error, exc)).response()

    async def on_validation(request: Request, exc: Exception) -> Response:
        return validation_error(cast(RequestValidationError, exc)).response()

    async def on_http(request: Request, exc: Exception) -> Response:
        exc = cast(StarletteHTTPException, exc)
        code = _BY_STATUS.get(exc.status_code)
        if code is None:
            code = "internal" if exc.status_code >= 500 else "bad_request"
        status = exc.status_code
        message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(status).phrase
        body = {"error": {"code": code, "message": message}}
        return JSONOut(body, status_code=status, headers=dict(exc.headers or {}))

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response("internal", "internal error; the gateway logged it")

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(Error, on_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
