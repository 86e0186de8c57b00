"""Bodies of approvals and policies."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from clearance._internal.server.models.common import (
    EXAMPLE_DIGEST,
    EXAMPLE_INTENT,
    IntentIn,
    JSONObject,
    Reason,
)

_APPROVAL_EXAMPLE: dict[str, Any] = {
    "approval_id": "a0195a1b2c3d4e5f6a7b8c9d0",
    "request_id": "r0195a1b2c3d4e5f6a7b8c9d0",
    "trace_id": "t0195a1b2c3d4e5f6a7b8c9d0",
    "principal": "agent:billing-bot",
    "action": "pay_invoice",
    "intent": EXAMPLE_INTENT,
    "intent_digest": EXAMPLE_DIGEST,
    "policy_digest": EXAMPLE_DIGEST,
    "rules": ["payments-over-cap-need-approval"],
    "status": "pending",
    "required": 1,
    "approvers": ["user:*"],
    "votes": [],
    "expires_at": 1795000900.0,
    "decision_index": 21,
    "collected_index": None,
    "grant": None,
}


class VoteView(BaseModel):
    """One approver's counted vote."""

    approver: str
    decision: Literal["approve", "deny"]
    reason: str
    at: float
    ledger_index: int


class ApprovalView(BaseModel):
    """An approval as its ledger entries say it is now."""

    model_config = ConfigDict(json_schema_extra={"examples": [_APPROVAL_EXAMPLE]})

    approval_id: str
    request_id: str
    trace_id: str | None
    principal: str
    action: str
    intent: JSONObject
    intent_digest: str
    policy_digest: str
    rules: list[str]
    status: Literal["pending", "approved", "denied", "expired", "collected"]
    required: int
    approvers: list[str]
    votes: list[VoteView]
    expires_at: float
    decision_index: int
    collected_index: int | None
    grant: JSONObject | None


class ApprovalList(BaseModel):
    """A page of approvals, newest first."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"approvals": [_APPROVAL_EXAMPLE], "next_cursor": None}]}
    )

    approvals: list[ApprovalView]
    next_cursor: str | None


class ApprovalVote(BaseModel):
    """An approver's decision, with the reason the ledger records."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"decision": "approve", "reason": "invoice checked"}]},
    )

    decision: Literal["approve", "deny"]
    reason: Annotated[str, Field(min_length=1, max_length=1000)]


PolicyFiles = dict[
    Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\.ya?ml$")],
    Annotated[str, Field(max_length=1 << 20)],
]
"""File name -> YAML text of a bundle (names are plain ``*.yaml``/``*.yml`` file names)."""


class Activation(BaseModel):
    """A bundle that became active (its ``policy`` ledger entry)."""

    digest: str
    ledger_index: int
    at: str


class PolicyView(BaseModel):
    """The active bundle and every activation the log records."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "digest": EXAMPLE_DIGEST,
                    "document": {"version": 1, "strict": True, "rules": []},
                    "activations": [
                        {
                            "digest": EXAMPLE_DIGEST,
                            "ledger_index": 0,
                            "at": "2026-11-18T10:00:00.000000Z",
                        }
                    ],
                }
            ]
        }
    )

    digest: str
    document: JSONObject
    activations: list[Activation]


class PolicyBundle(BaseModel):
    """A whole bundle to activate: every file, by name."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "files": {
                        "agent.yaml": "version: 1\nrules:\n  - id: reads\n    effect: allow\n"
                        "    actions: [read_file]\n"
                    }
                }
            ]
        },
    )

    files: Annotated[PolicyFiles, Field(min_length=1, max_length=64)]


class PolicyActivated(BaseModel):
    """The bundle now active and its ``policy`` entry."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"digest": EXAMPLE_DIGEST, "ledger_index": 42}]}
    )

    digest: str
    ledger_index: int


class EvaluateRequest(BaseModel):
    """A dry run: decide ``intent`` (optionally under a candidate bundle), write nothing."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "intent": {"action": "delete_file", "args": {"path": "notes.txt"}},
                    "files": None,
                }
            ]
        },
    )

    intent: IntentIn
    files: Annotated[PolicyFiles, Field(min_length=1, max_length=64)] | None = None


class EvaluateResult(BaseModel):
    """What the policy would decide now; nothing was logged or granted."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "effect": "deny",
                    "reasons": [{"rule": "no-deletes", "message": "Agents never delete files"}],
                    "facts": {"depth": 0, "count": 0},
                    "policy_digest": EXAMPLE_DIGEST,
                    "intent_digest": EXAMPLE_DIGEST,
                }
            ]
        }
    )

    effect: Literal["allow", "deny", "approval_required"]
    reasons: list[Reason]
    facts: JSONObject
    policy_digest: str
    intent_digest: str
