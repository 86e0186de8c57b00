"""The decisions feed: ``GET /console/decisions`` and the JSON its script polls.

Invariants:

* Both need the ``auditor`` scope (admin implies it): an approver or agent key gets 403,
  no session gets the login page (HTML) or 401 (JSON).
* The page works without JavaScript: the filters are a GET form, the pages are links
  (``before``/``after`` ledger-index cursors, :mod:`clearance._internal.console.feed`).
  Only the newest page (no cursor) is live: its script polls
  ``GET /console/api/decisions?after=<index>&<the same filters>`` and prepends what
  arrived.
* A filter that does not parse is answered with the form, the reason and no rows
  (HTML 422), or a JSON 422 ``invalid_input`` naming the ``field``; nothing is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from clearance._internal.console.feed import (
    FILTER_FIELDS,
    MAX_PAGE,
    SCAN_BUDGET,
    Arrivals,
    FeedPage,
    FilterError,
    arrivals,
    page_after,
    page_before,
    parse_cursor,
    parse_filter,
    parse_limit,
)
from clearance._internal.console.web import Viewer, render, require
from clearance._internal.policy.engine import EFFECTS
from clearance._internal.server.responses import JSONOut
from clearance._internal.server.state import server_state

router = APIRouter(include_in_schema=False)

FEED_PATH = "/console/decisions"


def _params(request: Request) -> dict[str, str]:
    """The query's parameters (the first value of each), at most 512 characters each."""
    return {name: value[:512] for name, value in request.query_params.items()}


def _link(query: Mapping[str, str], **cursor: int) -> str:
    return FEED_PATH + "?" + urlencode({**query, **{k: str(v) for k, v in cursor.items()}})


def _invalid(exc: FilterError) -> Response:
    body = {"error": {"code": "invalid_input", "message": str(exc), "field": exc.field}}
    return JSONOut(body, status_code=422)


@router.get(FEED_PATH)
def feed_page(request: Request, seen: Annotated[Viewer, Depends(require("auditor"))]) -> Response:
    """Decisions newest first, filtered and paginated; the newest page updates live."""
    state = server_state(request)
    raw = _params(request)
    form = {name: raw.get(name, "").strip() for name in FILTER_FIELDS}
    query = {name: value for name, value in form.items() if value}
    context: dict[str, object] = {"form": form, "effects": EFFECTS, "filtered": bool(query)}
    try:
        feed = parse_filter(raw, state.clock())
        before = parse_cursor("before", raw.get("before"))
        after = parse_cursor("after", raw.get("after"))
        limit = parse_limit(raw.get("limit"))
        if before is not None and after is not None:
            raise FilterError("after", "give either before or after, not both")
    except FilterError as exc:
        context["error"] = exc
        return render(request, "decisions.html", seen, context, status_code=422)
    if "limit" in raw and raw["limit"].strip():
        query["limit"] = str(limit)
    ledger = state.gate.ledger
    page: FeedPage = (
        page_after(ledger, feed, limit, after)
        if after is not None
        else page_before(ledger, feed, limit, before)
    )
    live = before is None and after is None
    context.update(
        page=page,
        live=live,
        poll_query=urlencode({k: v for k, v in query.items() if k != "limit"}),
        older_url=None if page.older is None else _link(query, before=page.older),
        newer_url=None if page.newer is None else _link(query, after=page.newer),
        newest_url=_link(query) if query else FEED_PATH,
        scan_budget=SCAN_BUDGET,
    )
    return render(request, "decisions.html", seen, context)


@router.get("/console/api/decisions")
def feed_json(request: Request, seen: Annotated[Viewer, Depends(require("auditor"))]) -> Response:
    """Decisions above ``after`` (newest first, at most 200) and the cursor to poll next;
    without ``after``, the newest page. Same filters as the page."""
    state = server_state(request)
    raw = _params(request)
    try:
        feed = parse_filter(raw, state.clock())
        after = parse_cursor("after", raw.get("after"))
    except FilterError as exc:
        return _invalid(exc)
    ledger = state.gate.ledger
    if after is not None:
        return JSONOut(arrivals(ledger, feed, after).to_json())
    page = page_before(ledger, feed, MAX_PAGE)
    return JSONOut(Arrivals(page.rows, page.size - 1, page.older is not None).to_json())
