"""Bodies of authorizing, traces, outcome reports and request records."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from clearance._internal.server.models.common import (
    EXAMPLE_DIGEST,
    EXAMPLE_INTENT,
    STRICT,
    Action,
    Digest,
    IntentOut,
    JSONObject,
    NormalizedIntentIn,
    Principal,
    Reason,
)

_FACTS_EXAMPLE: dict[str, Any] = {
    "id": "t0195a1b2c3d4e5f6a7b8c9d0",
    "depth": 0,
    "count": 0,
    "actions": [],
    "untrusted": False,
    "totals": {},
    "mandate": {"text": "Pay invoice INV-7 from ACME", "bounds": {"spend_cap": 500}},
    "provenance_index": None,
}
_GRANT_EXAMPLE = "eyJhbGciOiJFZERTQSIsImtpZCI6Ii4uLiIsInR5cCI6IkpXVCJ9.eyJ...In0.c2ln"


class Mandate(BaseModel):
    """What the human asked for: the instruction text and structured bounds."""

    model_config = STRICT

    text: Annotated[str, Field(max_length=65536)] = ""
    bounds: JSONObject = Field(default_factory=dict)


class MandateOut(BaseModel):
    """A trace's recorded mandate."""

    text: str
    bounds: JSONObject


class _Decided(BaseModel):
    """What every logged decision that did not deny answers with."""

    request_id: str
    reasons: list[Reason]
    facts: JSONObject
    ledger_index: int
    policy_digest: str
    intent: IntentOut
    """The normalized intent a grant is (or will be) bound to: verify against this."""
    intent_digest: str


class Allowed(_Decided):
    """``allow``: the decision is logged and the grant is bound to ``intent_digest``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "request_id": "r0195a1b2c3d4e5f6a7b8c9d0",
                    "effect": "allow",
                    "reasons": [
                        {
                            "rule": "payments-known-payees",
                            "message": "Payments up to 500 to a known or mandated payee",
                        }
                    ],
                    "facts": _FACTS_EXAMPLE,
                    "ledger_index": 17,
                    "policy_digest": EXAMPLE_DIGEST,
                    "intent": EXAMPLE_INTENT,
                    "intent_digest": EXAMPLE_DIGEST,
                    "grant": _GRANT_EXAMPLE,
                    "expires_at": 1795000030,
                }
            ]
        }
    )

    effect: Literal["allow"]
    grant: str
    expires_at: int
    """The grant's ``exp`` (POSIX seconds)."""


class PendingApproval(_Decided):
    """``approval_required``: nothing is granted until the approval is decided."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "request_id": "r0195a1b2c3d4e5f6a7b8c9d0",
                    "effect": "approval_required",
                    "reasons": [
                        {
                            "rule": "payments-over-cap-need-approval",
                            "message": "Payments over 500 need a human approval",
                        }
                    ],
                    "facts": _FACTS_EXAMPLE,
                    "ledger_index": 21,
                    "policy_digest": EXAMPLE_DIGEST,
                    "intent": EXAMPLE_INTENT,
                    "intent_digest": EXAMPLE_DIGEST,
                    "approval_id": "a0195a1b2c3d4e5f6a7b8c9d0",
                    "expires_at": 1795000900,
                }
            ]
        }
    )

    effect: Literal["approval_required"]
    approval_id: str
    expires_at: float
    """When the pending approval expires (POSIX seconds); it then counts as denied."""


class OpenTrace(BaseModel):
    """Open a trace for ``principal`` (default: the key's own) with the human's mandate."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "mandate": {
                        "text": "Pay invoice INV-7 from ACME, at most 500 EUR",
                        "bounds": {"spend_cap": 500},
                    },
                    "principal": "agent:billing-bot",
                }
            ]
        },
    )

    mandate: Mandate = Field(default_factory=Mandate)
    principal: Principal | None = None


class TraceOpened(BaseModel):
    """The new trace: name its id in intents (only ``principal``'s are accepted)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "trace_id": "t0195a1b2c3d4e5f6a7b8c9d0",
                    "principal": "agent:billing-bot",
                    "ledger_index": 4,
                }
            ]
        }
    )

    trace_id: str
    principal: str
    ledger_index: int


class TraceRequest(BaseModel):
    """One request of a trace, with its parent link and outcome."""

    request_id: str
    parent_id: str | None
    action: str
    effect: str
    outcome: str | None
    """``ok`` or ``error`` once reported, else null."""
    decision_index: int
    execution_index: int | None


class TraceView(BaseModel):
    """A trace's mandate and requests (the lineage graph as data), one page at a time."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "trace_id": "t0195a1b2c3d4e5f6a7b8c9d0",
                    "principal": "agent:billing-bot",
                    "opened_by": "app:orchestrator",
                    "mandate": {"text": "Pay invoice INV-7", "bounds": {"spend_cap": 500}},
                    "ledger_index": 4,
                    "requests": [
                        {
                            "request_id": "r0195a1b2c3d4e5f6a7b8c9d0",
                            "parent_id": None,
                            "action": "pay_invoice",
                            "effect": "allow",
                            "outcome": "ok",
                            "decision_index": 17,
                            "execution_index": 18,
                        }
                    ],
                    "next_cursor": None,
                }
            ]
        }
    )

    trace_id: str
    principal: str | None
    opened_by: str | None
    mandate: MandateOut
    ledger_index: int
    requests: list[TraceRequest]
    next_cursor: str | None
    """Pass as ``cursor`` for the next page; null on the last page."""


class OutcomeReport(BaseModel):
    """The outcome of running a granted intent (``status`` ``ok`` or ``error``)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "status": "ok",
                    "grant": _GRANT_EXAMPLE,
                    "intent": EXAMPLE_INTENT,
                    "result_digest": EXAMPLE_DIGEST,
                    "duration_us": 1200,
                    "executor": "billing-service",
                    "error_type": None,
                }
            ]
        },
    )

    status: Literal["ok", "error"]
    grant: Annotated[str, Field(min_length=1, max_length=8192)]
    intent: NormalizedIntentIn
    result_digest: Digest | None = None
    duration_us: Annotated[int, Field(ge=0, le=10**12)] = 0
    executor: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    error_type: Annotated[str, Field(max_length=500)] | None = None


class RefusalReport(BaseModel):
    """A tool service refused a call (no grant, a bad, expired or replayed one): log it."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "status": "rejected",
                    "reason": "no grant presented",
                    "action": "pay_invoice",
                    "grant": None,
                    "intent_digest": EXAMPLE_DIGEST,
                    "executor": "billing-service",
                }
            ]
        },
    )

    status: Literal["rejected"]
    reason: Annotated[str, Field(min_length=1, max_length=500)]
    action: Action | None = None
    grant: Annotated[str, Field(max_length=8192)] | None = None
    intent_digest: Digest | None = None
    executor: Annotated[str, Field(min_length=1, max_length=200)] | None = None


ExecutionReport = Annotated[OutcomeReport | RefusalReport, Field(discriminator="status")]


class ExecutionRecorded(BaseModel):
    """The execution entry's ledger index (and its request, for an outcome)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"request_id": "r0195a1b2c3d4e5f6a7b8c9d0", "ledger_index": 18}]
        }
    )

    request_id: str | None
    """The granted request; null for a refusal report (its grant, if any, is unverified)."""
    ledger_index: int


class DecisionView(BaseModel):
    """The logged decision of a request."""

    effect: str
    reasons: list[Reason]
    policy_digest: str
    facts: JSONObject
    ledger_index: int
    at: str


class GrantView(BaseModel):
    """The logged facts of a request's grant (never the token)."""

    jti: str
    kid: str
    aud: str
    exp: int


class ExecutionView(BaseModel):
    """A request's reported outcome."""

    status: str
    result_digest: str | None
    duration_us: int
    executor: str
    error_type: str | None
    ledger_index: int


class RequestRecord(BaseModel):
    """Everything the log holds about one request."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "request_id": "r0195a1b2c3d4e5f6a7b8c9d0",
                    "trace_id": "t0195a1b2c3d4e5f6a7b8c9d0",
                    "parent_id": None,
                    "children": [],
                    "principal": "agent:billing-bot",
                    "intent": EXAMPLE_INTENT,
                    "intent_digest": EXAMPLE_DIGEST,
                    "decision": {
                        "effect": "allow",
                        "reasons": [{"rule": "payments-known-payees", "message": "..."}],
                        "policy_digest": EXAMPLE_DIGEST,
                        "facts": _FACTS_EXAMPLE,
                        "ledger_index": 17,
                        "at": "2026-11-18T10:00:00.000000Z",
                    },
                    "grant": {"jti": "...", "kid": "...", "aud": "local", "exp": 1795000030},
                    "approval": None,
                    "execution": {
                        "status": "ok",
                        "result_digest": EXAMPLE_DIGEST,
                        "duration_us": 1200,
                        "executor": "service:billing",
                        "error_type": None,
                        "ledger_index": 18,
                    },
                }
            ]
        }
    )

    request_id: str
    trace_id: str | None
    parent_id: str | None
    children: list[str]
    principal: str
    intent: JSONObject
    """As logged: sensitive arguments are salted digests."""
    intent_digest: str
    decision: DecisionView
    grant: GrantView | None
    approval: JSONObject | None
    """The approval (as ``GET /v1/approvals/{id}`` returns it), when one was required."""
    execution: ExecutionView | None
