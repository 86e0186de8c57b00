"""Reading approval records and pacing the wait for a human decision (docs/http-api.md).

Invariants:

* Waiting is a long poll (``GET /v1/approvals/{id}?wait=<s>``, at most
  :data:`~clearance._internal.remote.settings.MAX_LONG_POLL` seconds each), repeated
  until the approval is decided or the caller's deadline passes; a gateway that
  answers at once is polled no more often than ``min_poll_interval`` (never a busy
  loop).
* Only ``approved`` leads to collecting a grant, which is then checked like any
  other (:mod:`.grant_check`). ``denied`` and ``expired`` are
  :class:`~clearance.errors.Denied`; ``collected`` (someone already took the one
  grant) is :class:`~clearance.errors.Conflict`; a deadline that passes while
  pending is :class:`~clearance.errors.ApprovalRequired` again, carrying the id for
  a later ``resume``. An unreadable record is a denial (fail closed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from clearance._internal.remote.settings import MAX_LONG_POLL
from clearance._internal.remote.wire import decision_of, refusal
from clearance.errors import ApprovalRequired, Conflict, Denied, Error

STATUSES: Final = frozenset({"pending", "approved", "denied", "expired", "collected"})


@dataclass(frozen=True)
class ApprovalState:
    """The parts of an approval record the client acts on."""

    approval_id: str
    status: str
    intent: dict[str, Any] | None
    record: dict[str, Any]


def wait_seconds(wait: timedelta | float | None) -> float | None:
    """``wait`` as seconds (a timedelta or a number); ValueError unless positive and finite."""
    if wait is None:
        return None
    seconds = wait.total_seconds() if isinstance(wait, timedelta) else wait
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise TypeError(f"wait must be a timedelta or seconds, got {type(wait).__name__}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"wait must be a positive duration, got {wait!r}")
    return float(seconds)


def poll_seconds(remaining: float) -> int:
    """The ``wait`` query value of the next long poll for ``remaining`` seconds left."""
    return max(1, min(MAX_LONG_POLL, math.ceil(remaining)))


def read_approval(body: Any, approval_id: str) -> ApprovalState:
    """An approval record, or a fail-closed Denied when it is not one."""
    status = body.get("status") if isinstance(body, dict) else None
    if status not in STATUSES or not isinstance(body, dict):
        raise refusal(
            "approval-unreadable", f"the gateway's record of approval {approval_id} is unreadable"
        )
    intent = body.get("intent")
    return ApprovalState(
        approval_id, str(status), intent if isinstance(intent, dict) else None, body
    )


def pending(approval_id: str, body: Any, why: str) -> ApprovalRequired:
    """The ApprovalRequired of a pending approval, with the id to resume later."""
    decision = decision_of(body, "approval_required")
    decision["approval_id"] = approval_id
    return ApprovalRequired(why, approval_id=approval_id, decision=decision)


def decided_error(state: ApprovalState) -> Error:
    """What an approval that will never yield a grant to this caller means."""
    if state.status == "collected":
        return Conflict(f"the grant of approval {state.approval_id} was already collected")
    votes = state.record.get("votes")
    said = [
        f"{v.get('approver')}: {v.get('reason')}"
        for v in (votes if isinstance(votes, list) else [])
        if isinstance(v, dict) and v.get("decision") == "deny"
    ]
    message = f"approval {state.approval_id} was {state.status}" + (
        f" ({'; '.join(said)})" if said else ""
    )
    return Denied(
        f"denied: {message}",
        decision={
            "effect": "deny",
            "reasons": [{"rule": f"approval-{state.status}", "message": message}],
            "approval_id": state.approval_id,
            "request_id": state.record.get("request_id"),
        },
    )
