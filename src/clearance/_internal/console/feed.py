"""The decision feed: decision entries read back from the ledger, newest first, filtered.

Invariants:

* Reads go through the :class:`~clearance._internal.ledger.store.LedgerStore` protocol
  only: :meth:`~LedgerStore.scan` over index ranges (the primary key), ``trace`` for a
  trace filter (its own index) and ``get`` for the time bounds. No request scans more
  than :data:`SCAN_BUDGET` entries (plus O(log n) single reads to place the time
  bounds), however large the log. A filter that matches rarely may therefore not fill a
  page from one request: the page is then marked incomplete and its ``older`` cursor
  continues the search below the lowest index examined.
* Cursors are ledger indexes, so pages never overlap or skip while the log grows:
  ``before=N`` reads entries with index < N newest first; ``after=N`` reads the oldest
  entries with index > N (shown newest first); :func:`arrivals` (what a live page
  polls) reads entries with index > N and answers the log's size as the next cursor.
* The time filter is exact on every row returned. Narrowing the index range to the time
  window (:func:`_bounds`) relies on an entry's ``at`` rising with its index up to
  :data:`TIME_SLACK` (concurrent commits interleave by milliseconds).
* Rows are the stored bytes, not proven: the request page proves the decision entry it
  shows (:func:`clearance._internal.server.records.decision_of`). Fields are read
  defensively; a malformed entry shows its raw values, never raises here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Final

from clearance._internal.entries import timestamp
from clearance._internal.intent import ACTION_PATTERN, ID_PATTERN, PRINCIPAL_PATTERN
from clearance._internal.ledger.store import LedgerStore, StoredEntry
from clearance._internal.policy.engine import EFFECTS, Effect
from clearance._internal.server.records import principal_of
from clearance.errors import InputError

SCAN_WINDOW: Final = 512
"""The most entries read by one ``scan`` while walking the log."""
SCAN_BUDGET: Final = 20_000
"""At most this many entries are scanned for one page or one poll."""
TIME_SLACK: Final = 60.0
"""Seconds by which an entry's ``at`` may run behind an older entry's (see above)."""
MAX_PAGE: Final = 200
"""The largest page (and the most rows one poll returns)."""
DEFAULT_PAGE: Final = 50

FILTER_FIELDS: Final = ("principal", "action", "effect", "trace_id", "since", "until")
"""The query parameters of a filter, in the form's order."""

_RELATIVE = re.compile(r"(\d{1,6})\s*(s|m|min|h|d)")
_UNITS: Final = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


class FilterError(InputError):
    """A filter or cursor parameter that does not parse; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


@dataclass(frozen=True)
class FeedFilter:
    """Which decision entries to show. Every field set must match (None: any).

    ``principal`` and ``action`` match exactly, or as a prefix when they end in ``*``;
    ``since``/``until`` are POSIX seconds, both inclusive.
    """

    principal: str | None = None
    action: str | None = None
    effect: Effect | None = None
    trace_id: str | None = None
    since: float | None = None
    until: float | None = None

    def matches(self, entry: Mapping[str, Any]) -> bool:
        """Whether ``entry`` is a decision entry this filter lets through."""
        if entry.get("type") != "decision":
            return False
        if self.effect is not None and entry.get("effect") != self.effect:
            return False
        if self.trace_id is not None and entry.get("trace_id") != self.trace_id:
            return False
        if self.principal is not None and not _like(principal_of(entry), self.principal):
            return False
        if self.action is not None and not _like(_intent(entry).get("action"), self.action):
            return False
        at = entry.get("at")
        if self._since is not None and not (isinstance(at, str) and at >= self._since):
            return False
        return self._until is None or (isinstance(at, str) and at <= self._until)

    @cached_property
    def _since(self) -> str | None:
        # Entries' ``at`` are timestamp() text: fixed width, so text order is time order.
        return None if self.since is None else timestamp(self.since)

    @cached_property
    def _until(self) -> str | None:
        return None if self.until is None else timestamp(self.until)

    @property
    def active(self) -> bool:
        """Whether any field is set."""
        return any(getattr(self, name) is not None for name in FILTER_FIELDS)


def _like(value: object, pattern: str) -> bool:
    if not isinstance(value, str):
        return False
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return value == pattern


def _intent(entry: Mapping[str, Any]) -> Mapping[str, Any]:
    intent = entry.get("intent")
    return intent if isinstance(intent, Mapping) else {}


def parse_time(field: str, text: str, now: float) -> float:
    """POSIX seconds for a time filter: RFC 3339 (no zone: UTC), a date (UTC midnight),
    or an age such as ``15m``, ``2h``, ``7d`` (that long before ``now``)."""
    text = text.strip()
    relative = _RELATIVE.fullmatch(text)
    if relative is not None:
        return now - int(relative.group(1)) * _UNITS[relative.group(2)]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise FilterError(
            field, "use a UTC time like 2026-03-01T09:30Z, a date, or an age like 15m, 2h, 7d"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if not 1970 <= moment.year <= 9998:
        raise FilterError(field, "the year must be between 1970 and 9998")
    return moment.timestamp()


def _pattern(field: str, text: str, rule: re.Pattern[str]) -> str:
    """``text`` if it is a valid value of ``field`` (or such a prefix followed by ``*``)."""
    body = text[:-1] if text.endswith("*") else text
    if body and rule.fullmatch(body) is None:
        raise FilterError(field, f"{text[:80]!r} is not a valid {field.replace('_', ' ')}")
    return text


def parse_filter(raw: Mapping[str, str], now: float) -> FeedFilter:
    """The filter a query string asks for; FilterError naming the first bad field.

    Empty parameters mean "any", as a GET form sends them.
    """
    values = {name: raw.get(name, "").strip() for name in FILTER_FIELDS}
    effect = values["effect"] or None
    if effect is not None and effect not in EFFECTS:
        raise FilterError("effect", f"must be one of {', '.join(EFFECTS)}")
    trace_id = values["trace_id"] or None
    if trace_id is not None and ID_PATTERN.fullmatch(trace_id) is None:
        raise FilterError("trace_id", f"{trace_id[:80]!r} is not a trace id")
    since = parse_time("since", values["since"], now) if values["since"] else None
    until = parse_time("until", values["until"], now) if values["until"] else None
    if since is not None and until is not None and since > until:
        raise FilterError("until", "must not be before since")
    principal = values["principal"] or None
    action = values["action"] or None
    return FeedFilter(
        principal=_pattern("principal", principal, PRINCIPAL_PATTERN) if principal else None,
        action=_pattern("action", action, ACTION_PATTERN) if action else None,
        effect=effect,
        trace_id=trace_id,
        since=since,
        until=until,
    )


def parse_cursor(field: str, text: str | None) -> int | None:
    """A ``before``/``after`` cursor: a ledger index (``after`` may be -1), or None."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    if re.fullmatch(r"-1|\d{1,15}", text) is None or (field == "before" and text == "-1"):
        raise FilterError(field, "must be a ledger index from a link of this page")
    return int(text)


def parse_limit(text: str | None) -> int:
    """The page size: 1 to :data:`MAX_PAGE` (default :data:`DEFAULT_PAGE`)."""
    if text is None or not text.strip():
        return DEFAULT_PAGE
    if not text.strip().isdigit() or not 1 <= int(text.strip()) <= MAX_PAGE:
        raise FilterError("limit", f"must be a whole number from 1 to {MAX_PAGE}")
    return int(text.strip())


@dataclass(frozen=True)
class FeedRow:
    """One decision as the feed shows it."""

    index: int
    request_id: str
    at: str
    principal: str
    action: str
    resource: str | None
    effect: str
    rules: tuple[str, ...]
    trace_id: str | None
    parent_id: str | None

    @classmethod
    def of(cls, stored: StoredEntry) -> FeedRow:
        """The row of a decision entry (fields read defensively)."""
        entry = stored.entry
        intent = _intent(entry)
        reasons = entry.get("reasons")
        rules = tuple(
            str(r.get("rule")) if isinstance(r, Mapping) else str(r)
            for r in (reasons if isinstance(reasons, list) else [])
        )
        resource = intent.get("resource")
        trace_id = entry.get("trace_id")
        parent_id = entry.get("parent_id")
        return cls(
            index=stored.index,
            request_id=str(entry.get("request_id", "")),
            at=str(entry.get("at", "")),
            principal=principal_of(entry) or "",
            action=str(intent.get("action", "")),
            resource=resource if isinstance(resource, str) else None,
            effect=str(entry.get("effect", "")),
            rules=rules,
            trace_id=trace_id if isinstance(trace_id, str) else None,
            parent_id=parent_id if isinstance(parent_id, str) else None,
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON the live feed's script renders."""
        return {
            "index": self.index,
            "request_id": self.request_id,
            "at": self.at,
            "principal": self.principal,
            "action": self.action,
            "resource": self.resource,
            "effect": self.effect,
            "rules": list(self.rules),
            "trace_id": self.trace_id,
            "parent_id": self.parent_id,
        }


@dataclass(frozen=True)
class FeedPage:
    """One page of the feed, newest first."""

    rows: tuple[FeedRow, ...]
    older: int | None
    """``before`` cursor of the next older page; None when nothing older can match."""
    newer: int | None
    """``after`` cursor of the next newer page; None when this page reaches the newest."""
    complete: bool
    """False when the scan budget ran out before the page filled (search on: ``older``
    or ``newer``)."""
    searched: tuple[int, int]
    """The index range ``[low, high)`` whose entries were examined."""
    size: int
    """The log's size when read: a live page polls with ``after=size - 1``."""


@dataclass(frozen=True)
class Arrivals:
    """What a live page's poll gets: new rows, newest first, and where to poll next."""

    rows: tuple[FeedRow, ...]
    cursor: int
    """Poll again with ``after=cursor``."""
    gap: bool
    """More matched than returned (or more arrived than one poll scans): reload to see all."""

    def to_json(self) -> dict[str, Any]:
        """The poll's JSON answer."""
        return {"rows": [r.to_json() for r in self.rows], "cursor": self.cursor, "gap": self.gap}


def _first_at_or_after(ledger: LedgerStore, moment: str, low: int, high: int) -> int:
    """The first index in ``[low, high)`` whose ``at`` is not before ``moment`` (``high``
    when none), by bisection: O(log n) reads, exact when ``at`` rises with the index."""
    while low < high:
        middle = (low + high) // 2
        at = ledger.get(middle).entry.get("at")
        if isinstance(at, str) and at < moment:
            low = middle + 1
        else:
            high = middle
    return low


def _bounds(ledger: LedgerStore, feed: FeedFilter, size: int) -> tuple[int, int]:
    """The index range ``[low, high)`` that can hold entries of the filter's time window."""
    low, high = 0, size
    if feed.since is not None:
        low = _first_at_or_after(ledger, timestamp(feed.since - TIME_SLACK), 0, size)
    if feed.until is not None:
        high = _first_at_or_after(ledger, timestamp(feed.until + TIME_SLACK), low, size)
    return low, high


def _first_step(want: int) -> int:
    """The first window of a walk: about what an unfiltered page needs (entries are
    mostly decisions), doubling from there up to :data:`SCAN_WINDOW`."""
    return max(16, min(2 * want, SCAN_WINDOW))


def _backward(
    ledger: LedgerStore, feed: FeedFilter, low: int, high: int, want: int
) -> tuple[list[StoredEntry], int]:
    """Up to ``want`` matching entries of ``[low, high)``, newest first, and the lowest
    index examined (the search may stop early: budget, or enough found)."""
    found: list[StoredEntry] = []
    budget = SCAN_BUDGET
    top = high
    step = _first_step(want)
    while top > low and budget > 0:
        bottom = max(low, top - min(step, budget))
        window = list(ledger.scan(bottom, top))
        budget -= top - bottom
        step = min(step * 2, SCAN_WINDOW)
        for stored in reversed(window):
            if feed.matches(stored.entry):
                found.append(stored)
                if len(found) == want:
                    return found, stored.index
        top = bottom
    return found, top


def _forward(
    ledger: LedgerStore, feed: FeedFilter, low: int, high: int, want: int
) -> tuple[list[StoredEntry], int]:
    """Up to ``want`` matching entries of ``[low, high)``, oldest first, and one past the
    highest index examined."""
    found: list[StoredEntry] = []
    budget = SCAN_BUDGET
    bottom = low
    step = _first_step(want)
    while bottom < high and budget > 0:
        top = min(high, bottom + min(step, budget))
        budget -= top - bottom
        step = min(step * 2, SCAN_WINDOW)
        for stored in ledger.scan(bottom, top):
            if feed.matches(stored.entry):
                found.append(stored)
                if len(found) == want:
                    return found, stored.index + 1
        bottom = top
    return found, bottom


def _in_trace(ledger: LedgerStore, feed: FeedFilter, trace_id: str) -> Iterator[StoredEntry]:
    """The trace's matching decision entries, oldest first (the trace index bounds it)."""
    return (s for s in ledger.trace(trace_id) if feed.matches(s.entry))


def page_before(
    ledger: LedgerStore, feed: FeedFilter, limit: int, before: int | None = None
) -> FeedPage:
    """The newest ``limit`` matching decisions below index ``before`` (default: all)."""
    size = ledger.size()
    high = size if before is None else min(before, size)
    newer = None if before is None or before >= size else max(high - 1, -1)
    if feed.trace_id is not None:
        matching = [s for s in _in_trace(ledger, feed, feed.trace_id) if s.index < high]
        matching.reverse()
        found, reached, low = matching[: limit + 1], 0, 0
    else:
        low, ceiling = _bounds(ledger, feed, size)
        found, reached = _backward(ledger, feed, low, min(high, ceiling), limit + 1)
    rows = tuple(FeedRow.of(s) for s in found[:limit])
    if newer is not None and rows:
        newer = rows[0].index
    if len(found) > limit:
        return FeedPage(rows, rows[-1].index, newer, True, (reached, high), size)
    exhausted = reached <= low
    return FeedPage(rows, None if exhausted else reached, newer, exhausted, (reached, high), size)


def page_after(ledger: LedgerStore, feed: FeedFilter, limit: int, after: int) -> FeedPage:
    """The oldest ``limit`` matching decisions above index ``after``, shown newest first."""
    size = ledger.size()
    low = max(after + 1, 0)
    floor = 0
    if feed.trace_id is not None:
        matching = _in_trace(ledger, feed, feed.trace_id)
        found = [s for s in matching if low <= s.index < size][: limit + 1]
        reached = high = size
    else:
        floor, high = _bounds(ledger, feed, size)
        found, reached = _forward(ledger, feed, max(low, floor), high, limit + 1)
    kept = found[:limit]
    rows = tuple(FeedRow.of(s) for s in reversed(kept))
    first = kept[0].index if kept else low
    older = first if first > floor else None
    if len(found) > limit:
        return FeedPage(rows, older, kept[-1].index, True, (low, reached), size)
    exhausted = reached >= high
    newer = None if exhausted else reached - 1
    return FeedPage(rows, older, newer, exhausted, (low, reached), size)


def arrivals(ledger: LedgerStore, feed: FeedFilter, after: int, limit: int = MAX_PAGE) -> Arrivals:
    """Matching decisions above index ``after``, newest first, at most ``limit``.

    Scans at most :data:`SCAN_BUDGET` of the newest entries; ``gap`` says when more
    arrived or matched than this answer holds.
    """
    size = ledger.size()
    start = max(after + 1, 0)
    if feed.trace_id is not None:
        matching = [s for s in _in_trace(ledger, feed, feed.trace_id) if start <= s.index < size]
        matching.reverse()
        found, gap = matching[: limit + 1], False
    else:
        floor = max(start, size - SCAN_BUDGET)
        found, _ = _backward(ledger, feed, floor, size, limit + 1)
        gap = floor > start
    if len(found) > limit:
        found, gap = found[:limit], True
    return Arrivals(tuple(FeedRow.of(s) for s in found), size - 1, gap)
