"""The request page: one request's whole record, its receipts and a decision replay.

``GET /console/requests/{request_id}`` shows what ``GET /v1/requests/{id}`` answers
(:func:`clearance._internal.server.records.request_record`, the same code):
intent, decision with its rules and messages, trace facts and mandate, grant claims,
approval and votes, execution outcome, ledger indexes, parent and children.
``GET /console/requests/{id}/receipt?entry=decision|execution&format=json|tlog-proof``
downloads a receipt; ``POST /console/api/requests/{id}/replay`` re-evaluates the
decision (:meth:`clearance._internal.gate.core.Gate.replay`, as ``clearance replay``
does, with the home's provenance key).

Invariants:

* Every route needs the ``auditor`` scope; the replay also needs the session's CSRF
  token in the ``X-CSRF-Token`` header (it is a POST, though it appends nothing).
* The decision entry shown is proven in the log (:func:`decision_of`); a receipt is
  built from a signed checkpoint covering its entry and verified before it is sent
  (:func:`~clearance._internal.ledger.receipts.build_receipt`). An execution receipt
  is only ever for a real outcome (``ok``/``error``), never a ``rejected`` entry.
* An unknown request (or a malformed id) is a 404 page, never a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from clearance._internal.console.web import Viewer, check_csrf, render, require
from clearance._internal.intent import ID_PATTERN
from clearance._internal.ledger.receipts import build_receipt, to_tlog_proof
from clearance._internal.ledger.store import LedgerStore, StoredEntry
from clearance._internal.server.records import decision_of, request_record
from clearance._internal.server.responses import JSONOut
from clearance._internal.server.state import ServerState, server_state
from clearance.errors import Error, NotFound

router = APIRouter(include_in_schema=False)

RECEIPT_FORMATS: Final = {
    "json": ("application/json", "json"),
    "tlog-proof": ("text/plain", "tlog-proof"),
}
"""``format`` -> (media type, file extension) of a receipt download."""
ENTRY_KINDS: Final = ("decision", "execution")
MAX_CHILDREN: Final = 200
"""Children listed on the page (the lineage page shows a trace of any size)."""


def _utc(posix: object) -> str | None:
    """POSIX seconds as ``YYYY-MM-DD HH:MM:SSZ`` (None when not a number)."""
    if not isinstance(posix, int | float) or isinstance(posix, bool):
        return None
    try:
        return datetime.fromtimestamp(posix, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return None


def _pretty(value: object) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def _scalar(value: object) -> str:
    """A fact for a definition list: text as is, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(", ", ": "))


def _summary(ledger: LedgerStore, request_id: str) -> dict[str, Any]:
    """``{request_id, action, effect}`` of a related request (action and effect empty when
    the log has no decision for it)."""
    found = ledger.find("decision", request_id)
    entry: Mapping[str, Any] = found[0].entry if found else {}
    intent = entry.get("intent")
    action = intent.get("action") if isinstance(intent, Mapping) else None
    return {
        "request_id": request_id,
        "action": str(action or ""),
        "effect": str(entry.get("effect") or ""),
    }


def _problem(request: Request, seen: Viewer, title: str, message: str, status: int) -> Response:
    context = {"problem": {"title": title, "message": message}}
    return render(request, "request.html", seen, context, status_code=status)


def _not_found(request: Request, seen: Viewer, request_id: str) -> Response:
    return _problem(
        request, seen, "No such request", f"The log has no request {request_id[:140]!r}.", 404
    )


def _approval(state: ServerState, approval_id: str) -> dict[str, Any] | None:
    try:
        return dict(state.gate.approval(approval_id).to_json())
    except Error:
        return None


def _view(ledger: LedgerStore, stored: StoredEntry, record: Mapping[str, Any]) -> dict[str, Any]:
    """What the template shows beyond the record itself."""
    decision = record["decision"]
    facts = dict(decision.get("facts") or {})
    mandate = facts.pop("mandate", None)
    mandate = mandate if isinstance(mandate, Mapping) else {}
    intent = record["intent"]
    request_id = record["request_id"]
    approval = record.get("approval")
    execution = record.get("execution")
    grant = record.get("grant")
    indexes = [("Decision", decision["ledger_index"])]
    if approval:
        votes = approval.get("votes") or []
        indexes += [("Vote by " + str(v.get("approver")), v.get("ledger_index")) for v in votes]
        if approval.get("collected_index") is not None:
            indexes.append(("Grant collected", approval["collected_index"]))
    if execution:
        indexes.append(("Execution outcome", execution["ledger_index"]))
    base = f"/console/requests/{request_id}/receipt"
    receipts = [
        (f"{entry.capitalize()} receipt ({label})", f"{base}?entry={entry}&format={fmt}")
        for entry in ENTRY_KINDS
        if entry == "decision" or execution
        for fmt, label in (("json", "JSON"), ("tlog-proof", "tlog-proof"))
    ]
    votes = [
        {**vote, "when": _utc(vote.get("at")) or vote.get("at")}
        for vote in (approval.get("votes") or [] if approval else [])
    ]
    children = record.get("children") or []
    return {
        "args": _pretty(intent.get("args") or {}),
        "input": None if intent.get("input") is None else _pretty(intent["input"]),
        "facts": [(name, _scalar(value)) for name, value in sorted(facts.items()) if name != "id"],
        "votes": votes,
        "mandate_text": str(mandate.get("text", "")),
        "mandate_bounds": _pretty(mandate.get("bounds") or {}),
        "grant_expires": _utc(grant.get("exp")) if isinstance(grant, Mapping) else None,
        "approval_expires": _utc(approval.get("expires_at")) if approval else None,
        "indexes": indexes,
        "receipts": receipts,
        "parent": _summary(ledger, record["parent_id"]) if record.get("parent_id") else None,
        "children": [_summary(ledger, child) for child in children[:MAX_CHILDREN]],
        "more_children": max(0, len(children) - MAX_CHILDREN),
        "redacted": bool(stored.entry.get("redacted")),
        "untrusted_output": bool(stored.entry.get("untrusted_output")),
    }


@router.get("/console/requests/{request_id}")
def request_page(
    request: Request, request_id: str, seen: Annotated[Viewer, Depends(require("auditor"))]
) -> Response:
    """Everything the log holds about one request."""
    if ID_PATTERN.fullmatch(request_id) is None:
        return _not_found(request, seen, request_id)
    state = server_state(request)
    ledger = state.gate.ledger
    try:
        stored = decision_of(ledger, request_id)
    except NotFound:
        return _not_found(request, seen, request_id)
    record = request_record(ledger, stored, lambda approval_id: _approval(state, approval_id))
    context = {"record": record, "view": _view(ledger, stored, record)}
    return render(request, "request.html", seen, context)


def _receipt_entry(ledger: LedgerStore, request_id: str, entry: str) -> StoredEntry:
    """The proven decision entry, or the ``ok``/``error`` execution entry; NotFound."""
    decision = decision_of(ledger, request_id)
    if entry == "decision":
        return decision
    for stored in ledger.find("execution", request_id):
        if stored.entry.get("status") in ("ok", "error"):
            return stored
    raise NotFound(f"request {request_id!r} has no reported outcome, so no execution receipt")


@router.get("/console/requests/{request_id}/receipt")
def receipt_download(
    request: Request,
    request_id: str,
    seen: Annotated[Viewer, Depends(require("auditor"))],
    entry: Annotated[str, Query(max_length=32)] = "decision",
    output: Annotated[str, Query(alias="format", max_length=32)] = "json",
) -> Response:
    """The receipt of the request's decision or execution entry, as a file download."""
    if entry not in ENTRY_KINDS or output not in RECEIPT_FORMATS:
        message = "entry must be decision or execution, and format json or tlog-proof"
        return _problem(request, seen, "Not a receipt", message, 400)
    if ID_PATTERN.fullmatch(request_id) is None:
        return _not_found(request, seen, request_id)
    ledger = server_state(request).gate.ledger
    try:
        chosen = _receipt_entry(ledger, request_id, entry)
    except NotFound as exc:
        return _problem(request, seen, "No such receipt", str(exc), 404)
    try:
        checkpoint = ledger.checkpoint_covering(chosen.index)
        proof = ledger.inclusion_proof(chosen.index, checkpoint.size)
        receipt = build_receipt(chosen.entry, chosen.index, checkpoint, proof, ledger.vkey)
    except Error as exc:
        message = f"The receipt could not be built now: {exc.diagnostics()}"
        return _problem(request, seen, "Receipt unavailable", message, 503)
    media_type, extension = RECEIPT_FORMATS[output]
    body = to_tlog_proof(receipt) if output == "tlog-proof" else _pretty(receipt) + "\n"
    filename = f"receipt-{request_id.replace(':', '_')}-{entry}.{extension}"
    return Response(
        body.encode("utf-8"),
        media_type=f"{media_type}; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.post("/console/api/requests/{request_id}/replay")
def replay(
    request: Request, request_id: str, seen: Annotated[Viewer, Depends(require("auditor"))]
) -> Response:
    """Re-evaluate the logged decision under its logged bundle, facts and clock:
    ``{status: match|mismatch|unverifiable, logged, replayed, detail, index, request_id}``."""
    check_csrf(request, seen)
    gate = server_state(request).gate
    if ID_PATTERN.fullmatch(request_id) is None or not gate.ledger.find("decision", request_id):
        raise NotFound(f"no request {request_id[:140]!r} in the log")
    return JSONOut(gate.replay(request_id).to_json())
