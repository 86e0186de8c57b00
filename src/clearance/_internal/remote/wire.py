"""Replies from the gateway and what their errors mean to a caller (docs/http-api.md).

Invariants:

* Nothing here trusts a reply: a body that is not the documented JSON shape is
  mapped by its status alone, with a message that says so.
* Fail closed: for a call that would authorize something (``authorize``, a
  ``clearance`` body, collecting an approved grant), every failure that is not a
  decision — an unreachable gateway, a 5xx, a 429 that outlasted its retries, a
  reply the client cannot read — is :class:`~clearance.errors.Denied` with a reason
  naming it, so nothing runs. Other calls raise the error of the fault
  (:class:`~clearance.errors.LedgerError` for an unavailable gateway).
* A gateway's messages reach the caller as text only; no foreign exception
  (httpx, json) escapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

from clearance.errors import (
    Conflict,
    Denied,
    Error,
    InputError,
    InvalidGrant,
    LedgerError,
    NotFound,
    NotPermitted,
    Unauthenticated,
)

MAX_MESSAGE_CHARS: Final[int] = 500
"""Longest gateway message copied into an error."""


@dataclass(frozen=True)
class Reply:
    """One HTTP answer of the gateway: status, parsed JSON body (None if not JSON), headers."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """A 2xx answer."""
        return 200 <= self.status < 300

    def member(self, name: str) -> Any:
        """``body[name]`` when the body is an object, else None."""
        return self.body.get(name) if isinstance(self.body, dict) else None


class Unreachable(Exception):
    """Internal: the exchange failed below HTTP (connection refused, reset, timeout)."""


def gateway_url(url: object) -> str:
    """The gateway's base URL, validated and without a trailing slash (InputError otherwise)."""
    if not isinstance(url, str) or not url:
        raise InputError("the gateway url must be a non-empty string such as http://127.0.0.1:8470")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(f"the gateway url {url!r} must be an http:// or https:// URL with a host")
    if parts.query or parts.fragment:
        raise InputError(f"the gateway url {url!r} must not carry a query or fragment")
    return url.rstrip("/")


def _error_member(body: Any) -> tuple[str | None, str]:
    """The contract's ``error.code`` and ``error.message`` of ``body``, if it has them."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None, ""
    code = error.get("code")
    message = error.get("message")
    return (
        code if isinstance(code, str) else None,
        message[:MAX_MESSAGE_CHARS] if isinstance(message, str) else "",
    )


def decision_of(body: Any, effect: str) -> dict[str, Any]:
    """The ``decision`` mapping of a Denied/ApprovalRequired, as the in-process gate builds it.

    ``{"effect", "reasons": [{"rule", "message"}], "request_id", "index"}`` plus
    ``approval_id`` and ``expires_at`` when present. Reasons that are not objects with
    a string ``rule`` are dropped, never invented.
    """
    reasons: list[dict[str, str]] = []
    raw = body.get("reasons") if isinstance(body, dict) else None
    for reason in raw if isinstance(raw, list) else []:
        if isinstance(reason, dict) and isinstance(reason.get("rule"), str):
            message = reason.get("message")
            reasons.append(
                {"rule": reason["rule"], "message": message if isinstance(message, str) else ""}
            )
    decision: dict[str, Any] = {"effect": effect, "reasons": reasons}
    if isinstance(body, dict):
        for source, target in (
            ("request_id", "request_id"),
            ("ledger_index", "index"),
            ("policy_digest", "policy_digest"),
            ("approval_id", "approval_id"),
            ("expires_at", "expires_at"),
        ):
            if source in body:
                decision[target] = body[source]
    return decision


def refusal(rule: str, message: str) -> Denied:
    """A fail-closed denial made by the client itself (nothing was decided by a policy)."""
    return Denied(
        f"denied: {message}",
        decision={"effect": "deny", "reasons": [{"rule": rule, "message": message}]},
    )


def unreachable_error(exc: Unreachable, *, fail_closed: bool) -> Error:
    """What a failed exchange means: a denial for an authorizing call, else LedgerError."""
    message = f"the gateway is unreachable ({exc})"
    if fail_closed:
        return refusal("gateway-unreachable", message + "; nothing was authorized")
    return LedgerError(message)


def error_for(reply: Reply, *, fail_closed: bool) -> Error:
    """The :mod:`clearance.errors` exception for a non-2xx ``reply`` (see the module invariants)."""
    status = reply.status
    code, message = _error_member(reply.body)
    said = f": {message}" if message else ""
    if status == 403 and code == "denied":
        reasons = decision_of(reply.body, "deny")
        text = "; ".join(r["message"] or r["rule"] for r in reasons["reasons"])
        return Denied(f"denied: {text or message or 'by the gateway'}", decision=reasons)
    if status == 401:
        return Unauthenticated(
            f"the gateway refused the API key (unknown, expired or revoked){said}"
        )
    if status == 403 and code == "invalid_grant":
        return InvalidGrant(f"the gateway refused the grant{said}")
    if status == 403:
        return NotPermitted(f"the API key may not do this{said}")
    if status == 404:
        return NotFound(f"not found{said}")
    if status == 409:
        return Conflict(f"already done{said}")
    if status in (400, 413, 422):
        field_name = None
        error = reply.body.get("error") if isinstance(reply.body, dict) else None
        if isinstance(error, dict) and isinstance(error.get("field"), str):
            field_name = error["field"]
        where = f" (field {field_name})" if field_name else ""
        return InputError(f"the gateway refused the request{where}{said}")
    if status == 429:
        message = f"the gateway's rate limit for this API key was exceeded{said}"
        if fail_closed:
            return refusal("rate-limited", message + "; nothing was authorized")
        return Error(message)
    if fail_closed:
        return refusal(
            "gateway-unavailable",
            f"the gateway answered HTTP {status}{said}; nothing was authorized",
        )
    if status >= 500:
        return LedgerError(f"the gateway is unavailable (HTTP {status}){said}")
    return Error(f"unexpected answer from the gateway (HTTP {status}){said}")


def retry_after(reply: Reply) -> float | None:
    """Seconds from a ``Retry-After`` header given in seconds; None if absent or unreadable."""
    value = None
    for name, text in reply.headers.items():
        if name.lower() == "retry-after":
            value = text
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if 0 <= seconds < 86_400 else None
