"""The approvals inbox: what an approver needs to decide, the vote, and the history.

Invariants:

* Everything shown is read from the gate and its ledger when the page (or its JSON) is
  asked for: the approvals (proven by the approval book), the decision entry that asked
  (proven, :func:`~clearance._internal.server.records.decision_of`) and the trace's
  mandate and earlier requests (:func:`~clearance._internal.server.records.trace_page`).
  Nothing is taken from the browser except the vote itself.
* A vote goes through the gate exactly as ``POST /v1/approvals/{id}`` does
  (:meth:`~clearance._internal.gate.core.Gate.approve` / ``deny`` with the session key's
  principal as the approver), so the gate's rules are the only rules: nobody votes on a
  request of their own principal, an approver counts once, the approver patterns hold,
  only a pending approval takes votes. A refusal is shown on the page with the gate's
  message and a 403/409/422 status; the gate changed nothing.
* Only a key that may act as ``approver`` (``admin`` included) votes: the forms are
  offered to nobody else, and the POST checks the scope, then the CSRF token, before it
  reads anything.
* Everything is bounded: at most :data:`PENDING_SCAN` pending approvals are read (the
  :data:`PENDING_SHOWN` expiring soonest are shown), a history page holds
  :data:`HISTORY_PAGE` approvals, a trace shows its last :data:`EARLIER_SHOWN` earlier
  requests.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Final
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from clearance._internal.approvals.model import STATUSES, Approval
from clearance._internal.console.web import (
    CSRF_FIELD,
    LoginRequired,
    Viewer,
    check_csrf,
    render,
    require,
    templates,
)
from clearance._internal.gate.core import Gate
from clearance._internal.policy.approval_rules import matches_any
from clearance._internal.server.models.common import ID
from clearance._internal.server.records import decision_of, trace_page
from clearance._internal.server.state import ServerState, server_state
from clearance.errors import Conflict, Error, InputError, NotFound, NotPermitted

router = APIRouter(include_in_schema=False)

READERS: Final = ("approver", "auditor")
"""Who may open the inbox."""
VOTERS: Final = ("approver",)
"""Who may vote (``admin`` implies it)."""
HISTORY_STATUSES: Final = tuple(s for s in STATUSES if s != "pending")
PENDING_SCAN: Final = 500
PENDING_SHOWN: Final = 25
HISTORY_PAGE: Final = 20
EARLIER_SHOWN: Final = 20
POLL_MS: Final = 3000
"""How often the inbox script asks for the list again."""
MAX_REASON: Final = 1000
"""Longest reason, as ``POST /v1/approvals/{id}`` accepts it."""
_HISTORY_CHUNK: Final = 200
_HISTORY_SCAN: Final = 2000
"""Most approvals one history page looks at while skipping pending ones."""
_ID: Final = re.compile(ID)
_TRACE_REQUESTS: Final = 100_000
_PARTS: Final = "approval_parts.html"
_REFUSED: Final[tuple[tuple[type[Error], int], ...]] = (
    (NotPermitted, 403),
    (NotFound, 404),
    (Conflict, 409),
    (InputError, 422),
)


# --- reading ---------------------------------------------------------------------------


def left_text(seconds: float) -> str:
    """``seconds`` until expiry as people read it ("4 min 05 s left"; "expired")."""
    if seconds <= 0:
        return "expired"
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s left"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s left"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60:02d} min left"
    return f"{whole // 86400} d {whole % 86400 // 3600} h left"


def _utc(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


def _pretty(value: object) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def pending_approvals(gate: Gate) -> tuple[list[Approval], int]:
    """The pending approvals expiring soonest first (at most :data:`PENDING_SHOWN`), and
    how many are pending (counted up to :data:`PENDING_SCAN`)."""
    found = gate.approvals("pending", limit=PENDING_SCAN)
    found.sort(key=lambda approval: (approval.expires_at, approval.approval_id))
    return found[:PENDING_SHOWN], len(found)


def history_page(
    gate: Gate, status: str | None, cursor: str | None
) -> tuple[list[Approval], str | None]:
    """One page of decided and expired approvals, newest first, and the next page's cursor.

    ``status`` keeps one of :data:`HISTORY_STATUSES`; without it pending approvals are
    skipped (a pending one past its expiry is listed as expired). InputError for an
    unknown cursor.
    """
    if status is not None:
        page = gate.approvals(status, limit=HISTORY_PAGE, after=cursor)
        return page, page[-1].approval_id if len(page) == HISTORY_PAGE else None
    found: list[Approval] = []
    after, scanned = cursor, 0
    while True:
        chunk = gate.approvals(None, limit=_HISTORY_CHUNK, after=after)
        for approval in chunk:
            after = approval.approval_id
            if approval.status != "pending":
                found.append(approval)
                if len(found) == HISTORY_PAGE:
                    return found, after
        scanned += len(chunk)
        if len(chunk) < _HISTORY_CHUNK:
            return found, None
        if scanned >= _HISTORY_SCAN:
            return found, after


def standing(seen: Viewer, approval: Approval) -> tuple[bool, str | None]:
    """Whether ``seen`` may vote on ``approval`` now, and if not, why (None: not a voter).

    The same rules the gate enforces (it enforces them again on the vote); this only
    decides what the page offers.
    """
    principal = seen.principal
    if principal is None or not seen.may(*VOTERS):
        return False, None
    if approval.status != "pending":
        return False, f"It is {approval.status}: it takes no more votes."
    if principal == approval.principal:
        return False, (
            f"You made this request (as {principal}): someone else must approve or deny it."
        )
    if not matches_any(approval.approvers, principal):
        who = ", ".join(approval.approvers) or "nobody (its rules name disjoint approvers)"
        return False, f"Only {who} may vote on this approval; you are {principal}."
    mine = next((vote for vote in approval.votes if vote.approver == principal), None)
    if mine is not None:
        return False, f"You voted to {mine.decision}; a vote counts once."
    return True, None


def _asked(decision: Mapping[str, Any], approval: Approval) -> list[dict[str, str]]:
    """The rules that asked for the approval, with their messages from the decision."""
    messages: dict[str, str] = {}
    for reason in decision.get("reasons") or []:
        if isinstance(reason, Mapping):
            messages.setdefault(str(reason.get("rule", "")), str(reason.get("message", "")))
    return [{"rule": rule, "message": messages.get(rule, "")} for rule in approval.rules]


def _trace(state: ServerState, approval: Approval, facts: Mapping[str, Any]) -> dict[str, Any]:
    """The trace's mandate, its requests before this one, and its facts at the decision."""
    totals = facts.get("totals")
    view: dict[str, Any] = {
        "trace_id": approval.trace_id,
        "mandate_text": "",
        "bounds": "",
        "opened_by": None,
        "earlier": [],
        "earlier_total": 0,
        "untrusted": facts.get("untrusted") is True,
        "totals": _pretty(totals) if isinstance(totals, Mapping) and totals else "",
    }
    if approval.trace_id is None:
        return view
    try:
        page = trace_page(state.gate.ledger, approval.trace_id, cursor=None, limit=_TRACE_REQUESTS)
    except NotFound:
        return view
    earlier = [r for r in page["requests"] if r["decision_index"] < approval.decision_index]
    mandate = page["mandate"]
    view.update(
        mandate_text=mandate["text"],
        bounds=_pretty(mandate["bounds"]) if mandate["bounds"] else "",
        opened_by=page["opened_by"],
        earlier=[
            {k: r[k] for k in ("request_id", "action", "effect", "outcome")}
            for r in earlier[-EARLIER_SHOWN:]
        ],
        earlier_total=len(earlier),
    )
    return view


def approval_view(state: ServerState, seen: Viewer, approval: Approval) -> dict[str, Any]:
    """Everything the page shows about ``approval`` for ``seen`` (JSON-ready).

    ``version`` changes whenever anything shown changes, except the countdown, so the
    inbox script replaces a card only when it must.
    """
    decision = decision_of(state.gate.ledger, approval.request_id).entry
    facts = decision.get("facts")
    intent = approval.intent
    may_vote, why_not = standing(seen, approval)
    votes = [
        {**vote.to_json(), "at_text": _utc(vote.at), "at_iso": _iso(vote.at)}
        for vote in approval.votes
    ]
    view: dict[str, Any] = {
        "approval_id": approval.approval_id,
        "request_id": approval.request_id,
        "principal": approval.principal,
        "action": approval.action,
        "status": approval.status,
        "intent": {
            "principal": intent.get("principal"),
            "action": intent.get("action"),
            "resource": intent.get("resource"),
            "purpose": intent.get("purpose"),
            "args": _pretty(intent.get("args") or {}),
        },
        "asked": _asked(decision, approval),
        "required": approval.required,
        "approvers": list(approval.approvers),
        "approved": len(approval.approved_by),
        "votes": votes,
        "expires_at": approval.expires_at,
        "expires_text": _utc(approval.expires_at),
        "expires_iso": _iso(approval.expires_at),
        "decision_index": approval.decision_index,
        "trace": _trace(state, approval, facts if isinstance(facts, Mapping) else {}),
        "may_vote": may_vote,
        "why_not": why_not,
    }
    canonical = json.dumps(view, sort_keys=True, separators=(",", ":"), default=str)
    view["version"] = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]
    return view


def history_view(approval: Approval) -> dict[str, Any]:
    """What a history row shows about a decided or expired ``approval`` (JSON-ready)."""
    votes = [{**vote.to_json(), "at_text": _utc(vote.at)} for vote in approval.votes]
    return {
        "approval_id": approval.approval_id,
        "request_id": approval.request_id,
        "principal": approval.principal,
        "action": approval.action,
        "status": approval.status,
        "required": approval.required,
        "approved": len(approval.approved_by),
        "votes": votes,
        "closed_text": _utc(votes[-1]["at"] if votes else approval.expires_at),
    }


def _parts(seen: Viewer, now: float) -> Any:
    """The card and history-row macros, bound to ``seen`` (one source for page and JSON)."""
    return templates.env.get_template(_PARTS).make_module(
        {"viewer": seen, "csrf_field": CSRF_FIELD, "now": now, "left_text": left_text}
    )


def _status_filter(raw: str | None) -> tuple[str | None, str | None]:
    """The history filter and, for a value that is none of the statuses, a message."""
    if not raw:
        return None, None
    if raw in HISTORY_STATUSES:
        return raw, None
    return None, f"Unknown status {raw[:40]!r}: showing every decided or expired approval."


def _inbox_href(status: str | None, cursor: str | None, *, base: str = "/console/approvals") -> str:
    params = {name: value for name, value in (("status", status), ("cursor", cursor)) if value}
    return base + (f"?{urlencode(params)}" if params else "")


def _cursor(raw: str | None) -> str | None:
    return raw if raw and _ID.fullmatch(raw) else None


def _history(
    gate: Gate, status: str | None, cursor: str | None
) -> tuple[list[Approval], str | None, str | None]:
    """:func:`history_page`, falling back to the first page for a stale cursor."""
    try:
        page, following = history_page(gate, status, cursor)
        return page, following, None
    except InputError:
        page, following = history_page(gate, status, None)
        return page, following, "That page of the history is gone; showing the newest one."


# --- pages -----------------------------------------------------------------------------


def _voted_notice(gate: Gate, seen: Viewer, approval_id: str | None) -> str | None:
    """What the viewer's vote on ``approval_id`` did (None if they cast none there)."""
    if not approval_id or not _ID.fullmatch(approval_id):
        return None
    try:
        approval = gate.approval(approval_id)
    except NotFound:
        return None
    mine = next((v for v in approval.votes if v.approver == seen.principal), None)
    if mine is None:
        return None
    now = f"it is now {approval.status}"
    if approval.status == "pending":
        now += f", {len(approval.approved_by)} of {approval.required} approvals"
    elif approval.status == "collected":
        now = "it is now approved, and its requester has collected the grant"
    return (
        f"Recorded your vote to {mine.decision} {approval.action} by {approval.principal} "
        f"(approval {approval.approval_id}): {now}."
    )


@router.get("/console/approvals")
def inbox(request: Request, seen: Annotated[Viewer, Depends(require(*READERS))]) -> Response:
    """Pending approvals with a vote form each (voters), then the decided and expired."""
    state = server_state(request)
    query = request.query_params
    status, problem = _status_filter(query.get("status"))
    cursor = _cursor(query.get("cursor"))
    pending, pending_total = pending_approvals(state.gate)
    history, following, stale = _history(state.gate, status, cursor)
    now = state.clock()
    return render(
        request,
        "approvals.html",
        seen,
        {
            "now": now,
            "left_text": left_text,
            "pending": [approval_view(state, seen, a) for a in pending],
            "pending_total": pending_total,
            "pending_more": pending_total == PENDING_SCAN,
            "history": [history_view(a) for a in history],
            "history_status": status,
            "history_statuses": HISTORY_STATUSES,
            "history_live": cursor is None,
            "newest_href": _inbox_href(status, None) if cursor else None,
            "older_href": _inbox_href(status, following) if following else None,
            "api_href": _inbox_href(status, None, base="/console/api/approvals"),
            "problem": problem or stale,
            "notice": _voted_notice(state.gate, seen, query.get("voted")),
            "voter": seen.may(*VOTERS),
            "poll_ms": POLL_MS,
        },
    )


def _detail(
    request: Request,
    seen: Viewer,
    approval_id: str,
    *,
    error: str | None = None,
    reason: str = "",
    status_code: int = 200,
) -> Response:
    state = server_state(request)
    approval: Approval | None = None
    if _ID.fullmatch(approval_id):
        try:
            approval = state.gate.approval(approval_id)
        except NotFound:
            approval = None
    if approval is None:
        error = error or f"There is no approval {approval_id[:80]!r}."
        status_code = 404 if status_code == 200 else status_code
    return render(
        request,
        "approval.html",
        seen,
        {
            "now": state.clock(),
            "left_text": left_text,
            "a": None if approval is None else approval_view(state, seen, approval),
            "approval_id": approval_id,
            "error": error,
            "reason": reason,
        },
        status_code=status_code,
    )


@router.get("/console/approvals/{approval_id}")
def approval_page(
    request: Request, approval_id: str, seen: Annotated[Viewer, Depends(require(*READERS))]
) -> Response:
    """One approval in any status, with its votes (and the form while it is pending)."""
    return _detail(request, seen, approval_id)


@router.post("/console/approvals/{approval_id}")
def vote(
    request: Request,
    approval_id: str,
    seen: Annotated[Viewer, Depends(require(*VOTERS))],
    csrf_token: Annotated[str | None, Form()] = None,
    decision: Annotated[str | None, Form()] = None,
    reason: Annotated[str | None, Form()] = None,
) -> Response:
    """Vote as the session key's principal, through the gate (see the module docstring).

    Recorded: 303 to the inbox, which says what the vote did. Refused: the approval's
    page with the gate's message and its status (403, 404, 409, 422); nothing changed.
    """
    check_csrf(request, seen, csrf_token)
    said = reason or ""
    if decision not in ("approve", "deny"):
        return _detail(
            request, seen, approval_id, reason=said, status_code=422,
            error="Choose Approve or Deny.",
        )  # fmt: skip
    if len(said) > MAX_REASON:
        return _detail(
            request, seen, approval_id, reason=said[:MAX_REASON], status_code=422,
            error=f"A reason is at most {MAX_REASON} characters.",
        )  # fmt: skip
    gate = server_state(request).gate
    principal = seen.principal
    if principal is None:  # require() lets in logged-in keys only; never vote as nobody
        raise LoginRequired
    try:
        if not _ID.fullmatch(approval_id):
            raise NotFound(f"no approval {approval_id[:80]!r}")
        if decision == "approve":
            gate.approve(approval_id, approver=principal, reason=said)
        else:
            gate.deny(approval_id, approver=principal, reason=said)
    except Error as exc:
        status_code = next((code for kind, code in _REFUSED if isinstance(exc, kind)), 503)
        return _detail(
            request, seen, approval_id, reason=said, status_code=status_code,
            error=f"Your vote was not recorded: {exc.diagnostics()}",
        )  # fmt: skip
    return RedirectResponse(f"/console/approvals?voted={approval_id}", status_code=303)


# --- JSON for the inbox script -----------------------------------------------------------


@router.get("/console/api/approvals")
def approvals_json(
    request: Request, seen: Annotated[Viewer, Depends(require(*READERS))]
) -> Response:
    """The pending approvals and the newest history page, each with its rendered card or
    row (the inbox script swaps them in), and the server's clock for the countdowns."""
    state = server_state(request)
    status, _ = _status_filter(request.query_params.get("status"))
    now = state.clock()
    parts = _parts(seen, now)
    pending, pending_total = pending_approvals(state.gate)
    history, following = history_page(state.gate, status, None)
    pending_views = []
    for approval in pending:
        view = approval_view(state, seen, approval)
        pending_views.append({**view, "card": str(parts.card(view, 3))})
    history_views = []
    for approval in history:
        view = history_view(approval)
        history_views.append({**view, "row": str(parts.history_row(view))})
    return JSONResponse(
        {
            "now": now,
            "pending": pending_views,
            "pending_total": pending_total,
            "pending_more": pending_total == PENDING_SCAN,
            "history": history_views,
            "history_next": following,
        }
    )
