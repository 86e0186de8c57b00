"""Reading the log back for the API: one request's whole record, one trace's requests.

Invariants:

* Everything here is read from the ledger; nothing is taken from a caller. The
  decision entry a record is built on is proven to be in the log (RFC 9162 inclusion
  in the tree the store verified), so a record never rests on bytes edited after open.
* An execution entry with status ``rejected`` names its request *unverified* (it
  records a grant the executor refused, possibly forged), so it is never shown as a
  request's outcome; only an ``ok``/``error`` report is.
* Trace pages are ordered by ledger index; the cursor is the decision index of the last
  request of the previous page, so pages never overlap or skip as the trace grows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from clearance._internal.ledger.store import LedgerStore, StoredEntry
from clearance.errors import InputError, NotFound


def _map(value: object) -> Mapping[str, Any]:
    """``value`` if it is a JSON object, else an empty one (entries are read defensively)."""
    return value if isinstance(value, Mapping) else {}


def _outcome(found: Sequence[StoredEntry]) -> StoredEntry | None:
    """The real outcome among a request's execution entries (never a ``rejected`` one)."""
    return next((s for s in found if s.entry.get("status") in ("ok", "error")), None)


def decision_of(ledger: LedgerStore, request_id: str) -> StoredEntry:
    """The decision entry of ``request_id``, proven; NotFound when the log has none."""
    found = ledger.find("decision", request_id)
    if not found:
        raise NotFound(f"no request {request_id!r} in the log")
    return ledger.prove(found[0])


def principal_of(decision: Mapping[str, Any]) -> str | None:
    """The principal a decision entry was made for."""
    intent = decision.get("intent")
    principal = intent.get("principal") if isinstance(intent, Mapping) else None
    return principal if isinstance(principal, str) else None


def request_record(
    ledger: LedgerStore,
    stored: StoredEntry,
    approval: Callable[[str], Mapping[str, Any] | None],
) -> dict[str, Any]:
    """The record of the request whose (proven) decision entry is ``stored``.

    ``approval(approval_id)`` returns the approval's JSON (None when unknown).
    """
    entry = stored.entry
    request_id = str(entry.get("request_id"))
    trace_id = entry.get("trace_id")
    children: list[str] = []
    if isinstance(trace_id, str):
        children = [
            str(s.entry.get("request_id"))
            for s in ledger.trace(trace_id)
            if s.entry.get("type") == "decision" and s.entry.get("parent_id") == request_id
        ]
    outcome = _outcome(ledger.find("execution", request_id))
    execution = None
    if outcome is not None:
        e = outcome.entry
        execution = {
            "status": e.get("status"),
            "result_digest": e.get("result_digest"),
            "duration_us": e.get("duration_us", 0),
            "executor": e.get("executor", ""),
            "error_type": e.get("error_type"),
            "ledger_index": outcome.index,
        }
    grant = entry.get("grant")
    approval_id = entry.get("approval_id")
    return {
        "request_id": request_id,
        "trace_id": trace_id,
        "parent_id": entry.get("parent_id"),
        "children": children,
        "principal": principal_of(entry) or "",
        "intent": dict(entry.get("intent") or {}),
        "intent_digest": entry.get("intent_digest"),
        "decision": {
            "effect": entry.get("effect"),
            "reasons": list(entry.get("reasons") or []),
            "policy_digest": entry.get("policy_digest"),
            "facts": dict(entry.get("facts") or {}),
            "ledger_index": stored.index,
            "at": entry.get("at"),
        },
        "grant": dict(grant) if isinstance(grant, Mapping) else None,
        "approval": approval(approval_id) if isinstance(approval_id, str) else None,
        "execution": execution,
    }


def trace_page(
    ledger: LedgerStore, trace_id: str, *, cursor: str | None, limit: int
) -> dict[str, Any]:
    """One page of ``trace_id``'s requests with its mandate; NotFound for an unknown trace.

    A trace opened by trusted code has a ``trace`` entry; a call made with no trace open
    ran in a trace of its own with the default mandate and has only decisions.
    """
    after = -1
    if cursor is not None:
        if not cursor.isdigit() or len(cursor) > 20:
            raise InputError("cursor must be the next_cursor of a previous page")
        after = int(cursor)
    stored = ledger.trace(trace_id)
    opened = next((s for s in stored if s.entry.get("type") == "trace"), None)
    decisions = [s for s in stored if s.entry.get("type") == "decision"]
    if opened is None and not decisions:
        raise NotFound(f"no trace {trace_id!r} in the log")
    outcomes: dict[str, StoredEntry] = {}
    for s in stored:
        if s.entry.get("type") == "execution" and s.entry.get("status") in ("ok", "error"):
            outcomes.setdefault(str(s.entry.get("request_id")), s)
    remaining = [d for d in decisions if d.index > after]
    page = remaining[:limit]
    requests = []
    for d in page:
        e = d.entry
        rid = str(e.get("request_id"))
        done = outcomes.get(rid)
        intent = _map(e.get("intent"))
        requests.append(
            {
                "request_id": rid,
                "parent_id": e.get("parent_id"),
                "action": str(intent.get("action", "")),
                "effect": str(e.get("effect")),
                "outcome": None if done is None else done.entry.get("status"),
                "decision_index": d.index,
                "execution_index": None if done is None else done.index,
            }
        )
    if opened is not None:
        head = opened.entry
        mandate = _map(head.get("mandate"))
        principal = head.get("principal")
        opened_by = head.get("opened_by")
        index = opened.index
    else:
        first = decisions[0].entry
        mandate = _map(_map(first.get("facts")).get("mandate"))
        principal, opened_by, index = principal_of(first), None, decisions[0].index
    return {
        "trace_id": trace_id,
        "principal": principal if isinstance(principal, str) else None,
        "opened_by": opened_by if isinstance(opened_by, str) else None,
        "mandate": {
            "text": str(mandate.get("text", "")),
            "bounds": dict(_map(mandate.get("bounds"))),
        },
        "ledger_index": index,
        "requests": requests,
        "next_cursor": str(page[-1].index) if len(remaining) > limit else None,
    }
