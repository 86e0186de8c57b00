"""The lineage explorer: a trace's requests as a graph under the mandate that opened it.

Three routes, all for the ``auditor`` scope (admin implies it):

* ``GET /console/lineage`` picks a trace: a form for its id and the newest traces
  opened by trusted code (their ``trace`` entries), each with its principal, mandate,
  time and number of requests.
* ``GET /console/lineage/{trace_id}`` is the explorer: the trace's mandate, and a page
  script (``static/lineage.js``) that draws the graph from the JSON below.
* ``GET /console/api/traces/{trace_id}/graph`` is that JSON: every request of the
  trace, in ledger order, with what the graph shows of it.

Invariants:

* Everything shown is read from the ledger, never from a caller. The mandate at the
  root is the trace's ``trace`` entry, proven to be in the log (RFC 9162 inclusion in
  the tree the store verified); a trace opened without one (a call made with no trace
  open) shows the mandate its first decision was made with. A request's count in the
  list is its newest decision's ``facts.count`` + 1, read with one indexed seek and
  proven, so the list never reads a trace's history.
* The graph reads the trace with one indexed query (``LedgerStore.trace``) and does
  not prove each node: it is a map of the trace, and every node links to its request
  page, which proves the decision it shows.
* Taint is the gate's own record (:mod:`clearance._internal.gate.facts`): a request
  is ``tainted`` when it was decided with ``trace.untrusted`` true (untrusted output
  had entered the trace before it), and ``taints`` when its decision was an ``allow``
  or ``approval_required`` for a tool the bundle marks ``untrusted_output`` (the
  request whose output made the trace untrusted). Both are per trace, in ledger order,
  exactly as the policy saw them.
* A trace id that is not a well-formed id, or names no trace, is a 404 (an HTML page
  that offers the picker again, or JSON under ``/console/api``); nothing is echoed
  unescaped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Final
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from clearance._internal.approvals.index import TypedLedger
from clearance._internal.console.web import Viewer, render, require
from clearance._internal.ledger.store import LedgerStore, StoredEntry
from clearance._internal.server.state import server_state

router = APIRouter(include_in_schema=False)

TRACE_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
"""A well-formed trace id (the API's ``ID`` pattern, matched whole)."""
RECENT: Final = 20
"""Traces listed per page of the picker."""
FIRST_WINDOW: Final = 4096
"""Ledger entries searched first, backwards from the end, for recent ``trace`` entries;
each further window is four times larger, so a page reads O(log n) windows."""
MAX_NODES: Final = 20_000
"""Requests a graph holds at most: the first ones in ledger order (``truncated`` says so).
A browser draws a thousand nodes in well under a second; twenty thousand still draw."""
DRAWN_EFFECTS: Final = frozenset({"allow", "deny", "approval_required"})
TAINTING_EFFECTS: Final = frozenset({"allow", "approval_required"})
"""Decisions whose tool's untrusted output makes the trace untrusted (facts.advance)."""


def _map(value: object) -> Mapping[str, Any]:
    """``value`` if it is a JSON object, else an empty one (entries are read defensively)."""
    return value if isinstance(value, Mapping) else {}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def well_formed(trace_id: str) -> bool:
    """Whether ``trace_id`` could name a trace (the API's id pattern)."""
    return TRACE_ID.fullmatch(trace_id) is not None


# --- reading the ledger ----------------------------------------------------------------


@dataclass(frozen=True)
class TraceHead:
    """What a trace was opened with: shown at the graph's root and in the picker."""

    trace_id: str
    principal: str | None
    opened_by: str | None
    opened_at: str | None
    mandate_text: str
    bounds: Mapping[str, Any]
    ledger_index: int
    """The ``trace`` entry's index, or the first decision's for a trace opened without one."""
    has_trace_entry: bool

    def mandate(self) -> dict[str, Any]:
        return {"text": self.mandate_text, "bounds": dict(self.bounds)}


def _head_from_trace_entry(stored: StoredEntry) -> TraceHead:
    entry = stored.entry
    mandate = _map(entry.get("mandate"))
    return TraceHead(
        trace_id=str(entry.get("trace_id")),
        principal=_text(entry.get("principal")),
        opened_by=_text(entry.get("opened_by")),
        opened_at=_text(entry.get("at")),
        mandate_text=str(mandate.get("text", "")),
        bounds=_map(mandate.get("bounds")),
        ledger_index=stored.index,
        has_trace_entry=True,
    )


def _head_from_decision(trace_id: str, stored: StoredEntry) -> TraceHead:
    entry = stored.entry
    mandate = _map(_map(entry.get("facts")).get("mandate"))
    return TraceHead(
        trace_id=trace_id,
        principal=_text(_map(entry.get("intent")).get("principal")),
        opened_by=None,
        opened_at=_text(entry.get("at")),
        mandate_text=str(mandate.get("text", "")),
        bounds=_map(mandate.get("bounds")),
        ledger_index=stored.index,
        has_trace_entry=False,
    )


def trace_head(ledger: LedgerStore, trace_id: str) -> TraceHead | None:
    """The head of ``trace_id`` (its proven ``trace`` entry), or None when the log has no
    such trace. A trace without a ``trace`` entry is read from its first decision."""
    opened = ledger.find("trace", trace_id)
    if opened:
        return _head_from_trace_entry(ledger.prove(opened[0]))
    first = next((s for s in ledger.trace(trace_id) if s.entry.get("type") == "decision"), None)
    return None if first is None else _head_from_decision(trace_id, ledger.prove(first))


def _outcomes(stored: Sequence[StoredEntry]) -> dict[str, str]:
    """request id -> ``ok``/``error``: the first real report (never a ``rejected`` entry,
    which names its request unverified)."""
    found: dict[str, str] = {}
    for s in stored:
        entry = s.entry
        status = entry.get("status")
        if entry.get("type") == "execution" and status in ("ok", "error"):
            found.setdefault(str(entry.get("request_id")), str(status))
    return found


def graph_node(stored: StoredEntry, outcome: str | None) -> dict[str, Any]:
    """One decision entry as a node of the graph (see the module's taint invariant)."""
    entry = stored.entry
    effect = str(entry.get("effect"))
    parent = entry.get("parent_id")
    reasons = entry.get("reasons")
    rules = [
        str(r["rule"])
        for r in (reasons if isinstance(reasons, list) else [])
        if isinstance(r, Mapping) and isinstance(r.get("rule"), str)
    ]
    return {
        "request_id": str(entry.get("request_id")),
        "index": stored.index,
        "action": str(_map(entry.get("intent")).get("action", "")),
        "effect": effect if effect in DRAWN_EFFECTS else "deny",
        "rules": rules,
        "outcome": outcome,
        "parent_id": parent if isinstance(parent, str) else None,
        "tainted": _map(entry.get("facts")).get("untrusted") is True,
        "taints": entry.get("untrusted_output") is True and effect in TAINTING_EFFECTS,
    }


def trace_graph(ledger: LedgerStore, trace_id: str) -> dict[str, Any] | None:
    """The graph JSON of ``trace_id`` (every request in ledger order, at most
    :data:`MAX_NODES`), or None when the log has no such trace.

    An effect the console does not know (none exists today) is drawn as a deny: a
    request the graph cannot place is never shown as allowed.
    """
    stored = ledger.trace(trace_id)
    opened = next((s for s in stored if s.entry.get("type") == "trace"), None)
    decisions = [s for s in stored if s.entry.get("type") == "decision"]
    if opened is not None:
        head = _head_from_trace_entry(ledger.prove(opened))
    elif decisions:
        head = _head_from_decision(trace_id, ledger.prove(decisions[0]))
    else:
        return None
    outcomes = _outcomes(stored)
    drawn = decisions[:MAX_NODES]
    nodes = [graph_node(s, outcomes.get(str(s.entry.get("request_id")))) for s in drawn]
    return {
        "trace_id": trace_id,
        "principal": head.principal,
        "opened_by": head.opened_by,
        "opened_at": head.opened_at,
        "mandate": head.mandate(),
        "ledger_index": head.ledger_index,
        "total": len(decisions),
        "truncated": len(decisions) > len(drawn),
        "nodes": nodes,
    }


@dataclass(frozen=True)
class RecentTrace:
    """One line of the picker: a trace opened by trusted code, and how far it went."""

    head: TraceHead
    requests: int
    """How many requests the trace decided (its newest decision's ``count`` + 1)."""
    tainted: bool
    """Whether untrusted output entered the trace by its newest decision."""


def _trace_entries_before(ledger: LedgerStore, start: int, stop: int) -> Iterator[StoredEntry]:
    """``trace`` entries with ``start <= index < stop``, in index order."""
    if isinstance(ledger, TypedLedger):
        for stored in ledger.of_type("trace", start):
            if stored.index >= stop:
                return
            yield stored
        return
    for stored in ledger.scan(start, stop):
        if stored.entry.get("type") == "trace":
            yield stored


def recent_trace_entries(ledger: LedgerStore, *, before: int, limit: int) -> list[StoredEntry]:
    """The newest ``limit`` ``trace`` entries below index ``before``, newest first.

    Searches windows backwards from ``before``, each four times the last, so a log
    where traces are frequent is read only near its end.
    """
    found: list[StoredEntry] = []
    stop, window = max(0, min(before, ledger.size())), FIRST_WINDOW
    while stop > 0 and len(found) < limit:
        start = max(0, stop - window)
        found.extend(reversed(list(_trace_entries_before(ledger, start, stop))))
        stop, window = start, window * 4
    return found[:limit]


def recent_traces(ledger: LedgerStore, *, before: int, limit: int) -> list[RecentTrace]:
    """The newest ``limit`` traces opened below ledger index ``before``, newest first."""
    listed = []
    for stored in recent_trace_entries(ledger, before=before, limit=limit):
        head = _head_from_trace_entry(ledger.prove(stored))
        newest = ledger.last_in_trace(head.trace_id, "decision")
        requests, tainted = 0, False
        if newest is not None:
            entry = newest.entry
            facts = _map(entry.get("facts"))
            count = facts.get("count")
            requests = (count if isinstance(count, int) else 0) + 1
            tainted = facts.get("untrusted") is True or (
                entry.get("untrusted_output") is True and entry.get("effect") in TAINTING_EFFECTS
            )
        listed.append(RecentTrace(head, requests, tainted))
    return listed


# --- routes ----------------------------------------------------------------------------

Auditor = Annotated[Viewer, Depends(require("auditor"))]


def _picker(
    request: Request,
    seen: Viewer,
    *,
    before: int | None,
    error: str | None = None,
    entered: str = "",
    status_code: int = 200,
) -> Response:
    ledger = server_state(request).gate.ledger
    size = ledger.size()
    upto = size if before is None else min(before, size)
    listed = recent_traces(ledger, before=upto, limit=RECENT)
    older = listed[-1].head.ledger_index if len(listed) == RECENT else None
    return render(
        request,
        "lineage_pick.html",
        seen,
        {
            "traces": listed,
            "older": older,
            "newest": before is None,
            "error": error,
            "entered": entered,
        },
        status_code=status_code,
    )


@router.get("/console/lineage")
def pick_trace(
    request: Request,
    seen: Auditor,
    trace_id: Annotated[str | None, Query(max_length=512)] = None,
    before: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    """The picker; with ``trace_id`` (the form), a redirect to that trace's explorer."""
    if trace_id is not None and trace_id.strip():
        wanted = trace_id.strip()
        if not well_formed(wanted):
            return _picker(
                request,
                seen,
                before=None,
                entered=wanted,
                error="A trace id is a letter or digit followed by up to 127 letters, "
                "digits or . _ : - (for example t0192a3b4c5d6e7f8a9b0c1d2).",
                status_code=422,
            )
        return RedirectResponse(f"/console/lineage/{quote(wanted, safe='')}", status_code=303)
    cursor = int(before) if before is not None and before.isdigit() else None
    return _picker(request, seen, before=cursor)


@router.get("/console/lineage/{trace_id}")
def explore_trace(request: Request, seen: Auditor, trace_id: str) -> Response:
    """The explorer of ``trace_id``; the picker with a 404 when the log has no such trace."""
    head = (
        trace_head(server_state(request).gate.ledger, trace_id) if well_formed(trace_id) else None
    )
    if head is None:
        return _picker(
            request,
            seen,
            before=None,
            entered=trace_id[:200],
            error=f"The log has no trace {trace_id[:200]!r}. Check the id, or pick one below.",
            status_code=404,
        )
    return render(request, "lineage.html", seen, {"head": head})


@router.get("/console/api/traces/{trace_id}/graph")
def trace_graph_json(request: Request, seen: Auditor, trace_id: str) -> Response:
    """The graph of ``trace_id`` for the explorer's script; 404 JSON for an unknown trace."""
    graph = (
        trace_graph(server_state(request).gate.ledger, trace_id) if well_formed(trace_id) else None
    )
    if graph is None:
        return JSONResponse(
            {"error": {"code": "not_found", "message": f"no trace {trace_id[:200]!r} in the log"}},
            status_code=404,
        )
    return JSONResponse(graph)
