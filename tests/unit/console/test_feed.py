"""The decision feed over a real SQLite ledger: filters, cursors, time bounds, budgets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clearance._internal.console import feed
from clearance._internal.console.feed import (
    FeedFilter,
    FilterError,
    arrivals,
    page_after,
    page_before,
    parse_cursor,
    parse_filter,
    parse_limit,
)
from clearance._internal.entries import approval_entry, decision_entry
from clearance._internal.ledger.checkpoint import NoteSigner
from clearance._internal.ledger.sqlite import SQLiteLedger
from clearance._internal.ledger.store import StoredEntry

ORIGIN = "feed.test.example/log"
T0 = 1_795_000_000.0
PRINCIPALS = ("agent:ops-bot", "agent:other-bot", "app:orchestrator")
ACTIONS = ("read_file", "pay_invoice", "delete_file")
EFFECTS = ("allow", "deny", "approval_required")


def decision(n: int, *, principal: str, action: str, effect: str, trace: str) -> dict[str, Any]:
    """A decision entry shaped as the gate writes it, decided at T0 + n seconds."""
    return decision_entry(
        T0 + n,
        request_id=f"r{n:06d}",
        intent={"principal": principal, "action": action, "args": {}, "trace_id": trace},
        intent_digest="sha256:" + "0" * 64,
        decision={
            "effect": effect,
            "reasons": [{"rule": f"rule-{effect}", "message": ""}],
            "policy_digest": "sha256:" + "1" * 64,
        },
        facts={},
        principal_attrs={},
        parent_index=None,
        untrusted_output=False,
        grant=None,
        approval_id=None,
        redacted=False,
    )


def noise(n: int) -> dict[str, Any]:
    """An approval entry: not a decision, so never in the feed."""
    return approval_entry(
        T0 + n,
        approval_id=f"a{n:06d}",
        request_id=f"r{n:06d}",
        trace_id=None,
        status="pending",
        decision_index=0,
        expires_at=T0 + 10_000,
    )


def build(path: Path, count: int) -> tuple[SQLiteLedger, list[dict[str, Any]]]:
    """A ledger of ``count`` entries; every third one is noise, the rest decisions that
    cycle through the principals, actions, effects and two traces."""
    entries = []
    for n in range(count):
        if n % 3 == 2:
            entries.append(noise(n))
            continue
        entries.append(
            decision(
                n,
                principal=PRINCIPALS[n % 3 if n % 7 else 2],
                action=ACTIONS[(n // 3) % 3],
                effect=EFFECTS[(n // 2) % 3],
                trace="t-even" if n % 2 == 0 else "t-odd",
            )
        )
    store = SQLiteLedger.open(
        path, signer=NoteSigner.generate(ORIGIN), origin=ORIGIN, durability="relaxed"
    )
    for first in range(0, count, 256):
        store.append_many(entries[first : first + 256])
    return store, entries


class CountingLedger:
    """The real ledger, counting how many entries ``scan`` hands out."""

    def __init__(self, inner: SQLiteLedger) -> None:
        self.inner = inner
        self.scanned = 0

    def scan(self, start: int = 0, stop: int | None = None) -> Iterator[StoredEntry]:
        for stored in self.inner.scan(start, stop):
            self.scanned += 1
            yield stored

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SQLiteLedger, list[Any]]]:
    store, entries = build(tmp_path_factory.mktemp("feed") / "ledger.db", 900)
    try:
        yield store, entries
    finally:
        store.close()


def expected(entries: list[dict[str, Any]], wanted: FeedFilter) -> list[str]:
    """Request ids ``wanted`` lets through, newest first (computed without the feed)."""
    return [e["request_id"] for e in reversed(entries) if wanted.matches(e)]


FILTERS = [
    FeedFilter(),
    FeedFilter(effect="deny"),
    FeedFilter(principal="agent:other-bot"),
    FeedFilter(principal="agent:*", action="pay_invoice"),
    FeedFilter(trace_id="t-odd", effect="allow"),
    FeedFilter(since=T0 + 100, until=T0 + 400),
]


@pytest.mark.parametrize("wanted", FILTERS)
@pytest.mark.parametrize("limit", [1, 7, 50])
def test_walking_older_pages_visits_every_match_once_newest_first(
    ledger: tuple[SQLiteLedger, list[Any]], wanted: FeedFilter, limit: int
) -> None:
    store, entries = ledger
    seen: list[str] = []
    page = page_before(store, wanted, limit)
    while True:
        assert len(page.rows) <= limit
        seen += [row.request_id for row in page.rows]
        if page.older is None:
            break
        page = page_before(store, wanted, limit, page.older)
    assert seen == expected(entries, wanted)
    assert seen, "every filter here matches something"


@pytest.mark.parametrize("wanted", FILTERS)
def test_walking_newer_pages_from_the_start_visits_every_match_once(
    ledger: tuple[SQLiteLedger, list[Any]], wanted: FeedFilter
) -> None:
    store, entries = ledger
    pages: list[list[str]] = []
    page = page_after(store, wanted, 11, -1)
    while True:
        pages.append([row.request_id for row in page.rows])
        if page.newer is None:
            break
        page = page_after(store, wanted, 11, page.newer)
    flat = [rid for chunk in reversed(pages) for rid in chunk]
    assert flat == expected(entries, wanted)


def test_newer_and_older_links_of_a_middle_page_lead_back(
    ledger: tuple[SQLiteLedger, list[Any]],
) -> None:
    store, _ = ledger
    first = page_before(store, FeedFilter(), 20)
    assert first.newer is None  # the newest page has nothing newer
    assert first.older is not None
    second = page_before(store, FeedFilter(), 20, first.older)
    assert second.newer is not None
    back = page_after(store, FeedFilter(), 20, second.newer)
    assert [r.request_id for r in back.rows] == [r.request_id for r in first.rows]


def test_a_rare_filter_stops_at_the_scan_budget_and_continues_below(
    ledger: tuple[SQLiteLedger, list[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, entries = ledger
    monkeypatch.setattr(feed, "SCAN_BUDGET", 100)
    counting = CountingLedger(store)
    oldest = entries[0]["request_id"]
    wanted = FeedFilter(principal=entries[0]["intent"]["principal"], action="read_file")
    page = page_before(counting, wanted, 500)
    assert counting.scanned <= 100
    assert not page.complete
    assert page.older == len(entries) - 100
    found: list[str] = [r.request_id for r in page.rows]
    cursor: int | None = page.older
    while cursor is not None:
        page = page_before(counting, wanted, 500, cursor)
        found += [r.request_id for r in page.rows]
        cursor = page.older
    assert found == expected(entries, wanted)
    assert found[-1] == oldest


def test_a_time_window_is_found_by_bisection_not_by_scanning(
    ledger: tuple[SQLiteLedger, list[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, entries = ledger
    monkeypatch.setattr(feed, "TIME_SLACK", 5.0)
    counting = CountingLedger(store)
    wanted = FeedFilter(since=T0 + 300, until=T0 + 320)
    page = page_before(counting, wanted, 50)
    assert [r.request_id for r in page.rows] == expected(entries, wanted)
    assert page.complete
    assert page.older is None
    assert counting.scanned <= 31  # 21 seconds of entries and the slack, not 900


def test_arrivals_are_what_came_after_the_cursor(tmp_path: Path) -> None:
    store, _entries = build(tmp_path / "ledger.db", 30)
    try:
        cursor = arrivals(store, FeedFilter(), 29).cursor
        assert cursor == 29
        assert arrivals(store, FeedFilter(), cursor).rows == ()
        store.append_many(
            [
                decision(30, principal="agent:ops-bot", action="x", effect="deny", trace="t"),
                noise(31),
                decision(32, principal="agent:ops-bot", action="x", effect="allow", trace="t"),
            ]
        )
        got = arrivals(store, FeedFilter(), cursor)
        assert [r.request_id for r in got.rows] == ["r000032", "r000030"]
        assert got.cursor == 32
        assert not got.gap
        only_deny = arrivals(store, FeedFilter(effect="deny", trace_id="t"), cursor)
        assert [r.request_id for r in only_deny.rows] == ["r000030"]
        capped = arrivals(store, FeedFilter(), -1, limit=5)
        assert len(capped.rows) == 5
        assert capped.gap
    finally:
        store.close()


def test_a_poll_after_a_long_pause_scans_only_the_budget(
    ledger: tuple[SQLiteLedger, list[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _ = ledger
    monkeypatch.setattr(feed, "SCAN_BUDGET", 60)
    counting = CountingLedger(store)
    got = arrivals(counting, FeedFilter(effect="deny"), 0)
    assert counting.scanned <= 60
    assert got.gap
    assert got.cursor == store.size() - 1


def test_rows_carry_what_the_feed_shows(ledger: tuple[SQLiteLedger, list[Any]]) -> None:
    store, entries = ledger
    row = page_before(store, FeedFilter(), 1).rows[0]
    last = next(e for e in reversed(entries) if e["type"] == "decision")
    assert row.to_json() == {
        "index": len(entries) - 2,
        "request_id": last["request_id"],
        "at": last["at"],
        "principal": last["intent"]["principal"],
        "action": last["intent"]["action"],
        "resource": None,
        "effect": last["effect"],
        "rules": [f"rule-{last['effect']}"],
        "trace_id": last["trace_id"],
        "parent_id": None,
    }


def test_filters_parse_from_a_query_string() -> None:
    now = T0 + 7200
    parsed = parse_filter(
        {
            "principal": " agent:* ",
            "action": "pay_invoice",
            "effect": "approval_required",
            "trace_id": "t01",
            "since": "2h",
            "until": "2026-11-19T08:00",
        },
        now,
    )
    assert parsed == FeedFilter(
        principal="agent:*",
        action="pay_invoice",
        effect="approval_required",
        trace_id="t01",
        since=T0,
        until=1_795_075_200.0,  # 2026-11-19T08:00:00Z
    )
    assert parse_filter({"effect": "", "since": ""}, now) == FeedFilter()
    assert parse_filter({"since": "2026-11-19"}, now).since == 1_795_046_400.0


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"effect": "maybe"}, "effect"),
        ({"principal": "no spaces"}, "principal"),
        ({"action": "1bad"}, "action"),
        ({"trace_id": "../etc"}, "trace_id"),
        ({"since": "yesterday"}, "since"),
        ({"until": "0001-01-01"}, "until"),
        ({"since": "1h", "until": "2h"}, "until"),
    ],
)
def test_a_bad_filter_names_its_field(raw: dict[str, str], field: str) -> None:
    with pytest.raises(FilterError) as caught:
        parse_filter(raw, T0)
    assert caught.value.field == field


def test_cursors_and_limits_are_checked() -> None:
    assert parse_cursor("after", "-1") == -1
    assert parse_cursor("before", "12") == 12
    assert parse_cursor("before", "") is None
    for field, text in (("before", "-1"), ("after", "1e3"), ("after", "x"), ("before", "1" * 16)):
        with pytest.raises(FilterError):
            parse_cursor(field, text)
    assert parse_limit(None) == feed.DEFAULT_PAGE
    assert parse_limit("200") == 200
    for text in ("0", "201", "ten", "-5"):
        with pytest.raises(FilterError):
            parse_limit(text)
