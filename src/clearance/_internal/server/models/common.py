"""Bodies shared by several areas: errors, reasons and intents."""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from clearance._internal.intent import FIELDS

ACTION: Final = r"^[A-Za-z][A-Za-z0-9_.:-]{0,127}$"
PRINCIPAL: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:@/+-]{0,255}$"
ID: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
DIGEST: Final = r"^sha256:[0-9a-f]{64}$"
"""The patterns of :mod:`clearance._internal.intent` (matched whole)."""

Action = Annotated[str, Field(pattern=ACTION, examples=["pay_invoice"])]
Principal = Annotated[str, Field(pattern=PRINCIPAL, examples=["agent:billing-bot"])]
Id = Annotated[str, Field(pattern=ID)]
Digest = Annotated[str, Field(pattern=DIGEST)]
JSONObject = dict[str, Any]

INTENT_FIELDS: Final = FIELDS
"""The members of a normalized intent (docs/design.md §5), in their order."""

STRICT: Final = ConfigDict(extra="forbid", strict=True)
"""Request bodies: unknown members and wrong JSON types are refused (422 naming the field)."""

EXAMPLE_DIGEST: Final = "sha256:" + "ab" * 32
EXAMPLE_INTENT: Final[dict[str, Any]] = {
    "principal": "agent:billing-bot",
    "action": "pay_invoice",
    "resource": "invoice:INV-7",
    "args": {"to": "acme-supplies", "amount": 120, "currency": "EUR"},
    "purpose": "Pay invoice INV-7",
    "trace_id": "t0195a1b2c3d4e5f6a7b8c9d0",
    "parent_id": None,
    "input": None,
}


class ErrorDetail(BaseModel):
    """The ``error`` member of every error response."""

    code: Literal[
        "bad_request",
        "unauthenticated",
        "forbidden",
        "denied",
        "invalid_grant",
        "not_found",
        "method_not_allowed",
        "conflict",
        "payload_too_large",
        "invalid_input",
        "rate_limited",
        "internal",
        "unavailable",
    ]
    message: str
    field: str | None = Field(
        default=None, description="For invalid_input: the first bad field, as a dot path."
    )


class ErrorBody(BaseModel):
    """Every error: ``{"error": {"code", "message"}}`` (docs/http-api.md)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"error": {"code": "forbidden", "message": "this key lacks the scope"}}]
        }
    )

    error: ErrorDetail


class Reason(BaseModel):
    """A rule (or a gate reason) that decided, with its message."""

    rule: str
    message: str


class DeniedBody(BaseModel):
    """A denial: the error, and the decision that was logged."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": {"code": "denied", "message": "denied: Agents never delete files"},
                    "request_id": "r0195a1b2c3d4e5f6a7b8c9d0",
                    "effect": "deny",
                    "reasons": [{"rule": "no-deletes", "message": "Agents never delete files"}],
                    "ledger_index": 18,
                    "policy_digest": EXAMPLE_DIGEST,
                }
            ]
        }
    )

    error: ErrorDetail
    request_id: str | None = None
    effect: Literal["deny"] | None = None
    reasons: list[Reason] = Field(default_factory=list)
    ledger_index: int | None = None
    policy_digest: str | None = None


class IntentIn(BaseModel):
    """An intent as a caller sends it. ``principal`` may be omitted (the key's is used)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "action": "pay_invoice",
                    "args": {"to": "acme-supplies", "amount": 120, "currency": "EUR"},
                    "trace_id": "t0195a1b2c3d4e5f6a7b8c9d0",
                }
            ]
        },
    )

    action: Action
    principal: Principal | None = None
    resource: Annotated[str, Field(max_length=1024)] | None = None
    args: JSONObject | None = None
    purpose: Annotated[str, Field(max_length=2048)] | None = None
    trace_id: Id | None = None
    parent_id: Id | None = None
    input: JSONObject | None = None

    def members(self) -> dict[str, Any]:
        """The members that were sent and are not null (values exactly as parsed)."""
        return {
            name: getattr(self, name) for name in INTENT_FIELDS if getattr(self, name) is not None
        }


class IntentOut(BaseModel):
    """A normalized intent: all eight members (docs/design.md §5), absent ones null."""

    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE_INTENT]})

    principal: str
    action: str
    resource: str | None
    args: JSONObject
    purpose: str | None
    trace_id: str | None
    parent_id: str | None
    input: JSONObject | None


class NormalizedIntentIn(BaseModel):
    """A normalized intent sent back (``/v1/executions``): exactly what ``/v1/authorize``
    returned as ``intent``."""

    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra={"examples": [EXAMPLE_INTENT]}
    )

    principal: Principal
    action: Action
    resource: Annotated[str, Field(max_length=1024)] | None = None
    args: JSONObject | None = None
    purpose: Annotated[str, Field(max_length=2048)] | None = None
    trace_id: Id | None = None
    parent_id: Id | None = None
    input: JSONObject | None = None

    def members(self) -> dict[str, Any]:
        """The intent's eight members (values exactly as parsed)."""
        return {name: getattr(self, name) for name in INTENT_FIELDS}
