"""The decisions feed and the request page, in Chromium and httpx, against a real server.

The module's server holds one trace of agent:ops-bot (a file read with three children:
a refused delete, a payment that needed and got an approval, a small payment that ran
and reported its outcome) and a read by agent:other-bot outside any trace.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Page, expect

from clearance import Client
from clearance._internal.ledger.receipts import verify_receipt, verify_tlog_proof
from tests.browser.conftest import login, session, shoot
from tests.integration.server.conftest import open_trace
from tests.integration.server.support import Served

FEED = "/console/decisions"


@dataclass(frozen=True)
class Made:
    """The requests the module's server holds (see the module docstring)."""

    trace_id: str
    root: str
    denied: str
    approved: str
    paid: str
    other: str


def _authorize(client: httpx.Client, status: int, **intent: Any) -> dict[str, Any]:
    response = client.post("/v1/authorize", json=intent)
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture(scope="module")
def made(console: Served) -> Made:
    with (
        console.client("orchestrator") as orchestrator,
        console.client("agent") as agent,
        console.client("approver") as approver,
        console.client("other-agent") as other,
    ):
        trace = open_trace(orchestrator, "agent:ops-bot", spend_cap=5000)
        root = _authorize(
            agent, 200, action="read_file", args={"path": "invoices/march.txt"}, trace_id=trace
        )
        rid = root["request_id"]
        denied = _authorize(
            agent, 403, action="delete_file", args={"path": "x"}, trace_id=trace, parent_id=rid
        )
        pending = _authorize(
            agent,
            202,
            action="pay_invoice",
            args={"to": "acme-supplies", "amount": 900, "currency": "EUR"},
            trace_id=trace,
            parent_id=rid,
        )
        vote = approver.post(
            f"/v1/approvals/{pending['approval_id']}",
            json={"decision": "approve", "reason": "invoice 42 checked"},
        )
        assert vote.status_code == 200, vote.text
        paid = _authorize(
            agent,
            200,
            action="pay_invoice",
            resource="invoice:7",
            args={"to": "acme-supplies", "amount": 120, "currency": "EUR"},
            trace_id=trace,
            parent_id=rid,
        )
        report = agent.post(
            "/v1/executions",
            json={
                "status": "ok",
                "grant": paid["grant"],
                "intent": paid["intent"],
                "result_digest": "sha256:" + "ab" * 32,
                "duration_us": 1500,
                "executor": "billing-service",
            },
        )
        assert report.status_code == 201, report.text
        lone = _authorize(other, 200, action="read_file", args={"path": "notes.txt"})
    return Made(
        trace_id=trace,
        root=rid,
        denied=denied["request_id"],
        approved=pending["request_id"],
        paid=paid["request_id"],
        other=lone["request_id"],
    )


@pytest.fixture(scope="module")
def auditor(console: Served) -> Iterator[tuple[httpx.Client, str]]:
    client, csrf = session(console, "auditor")
    try:
        yield client, csrf
    finally:
        client.close()


def feed_ids(client: httpx.Client, **params: str) -> list[str]:
    """The request ids the feed's JSON lists for ``params``, newest first."""
    response = client.get("/console/api/decisions", params=params)
    assert response.status_code == 200, response.text
    return [row["request_id"] for row in response.json()["rows"]]


def page_ids(page: Page) -> list[str]:
    """The request ids of the feed's rows on screen, top to bottom."""
    return page.locator("#feed tbody tr td[data-label=Request]").all_inner_texts()


def log_size(served: Served) -> int:
    """How many entries the log holds now."""
    with served.client("auditor") as client:
        response = client.get("/v1/log/entries", params={"start": 0, "limit": 1})
    assert response.status_code == 200, response.text
    return int(response.json()["size"])


# --- the feed --------------------------------------------------------------------------


def test_a_decision_made_after_the_page_opened_appears_without_reload(
    page: Page, console: Served, made: Made
) -> None:
    login(page, console, "auditor", next_path=FEED)
    expect(page.locator("#feed tbody tr").first).to_be_visible()
    assert made.other in page_ids(page)
    page.evaluate("window.stillTheSamePage = true")
    with Client(console.url, console.keys["agent"]) as agent:
        fresh = agent.authorize({"action": "read_file", "args": {"path": "live.txt"}}).request_id
    first = page.locator("#feed tbody tr").first
    expect(first.locator("td[data-label=Request]")).to_have_text(fresh)
    expect(first.locator(".badge")).to_have_text("allow")
    expect(first.locator("td[data-label=Action]")).to_have_text("read_file")
    expect(first.locator("td[data-label=Request] a")).to_have_attribute(
        "href", f"/console/requests/{fresh}"
    )
    expect(page.locator("#feed-status")).to_contain_text("1 new decision")
    assert page.evaluate("window.stillTheSamePage") is True  # no reload happened
    live_html = first.evaluate("row => row.innerHTML.replace(/>\\s+</g, '><').trim()")
    page.reload()
    served = page.locator("#feed tbody tr").first
    expect(served.locator("td[data-label=Request]")).to_have_text(fresh)
    assert served.evaluate("row => row.innerHTML.replace(/>\\s+</g, '><').trim()") == live_html


def test_filters_narrow_the_feed(page: Page, console: Served, made: Made) -> None:
    login(page, console, "auditor", next_path=FEED)
    page.get_by_label("Effect").select_option("deny")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"effect=deny"))
    effects = page.locator("#feed tbody tr").evaluate_all("rows => rows.map(r => r.dataset.effect)")
    assert effects
    assert set(effects) == {"deny"}
    assert made.denied in page_ids(page)

    page.get_by_label("Effect").select_option("")
    page.get_by_label("Principal").fill("agent:other-bot")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#feed tbody tr")).to_have_count(1)
    assert page_ids(page) == [made.other]
    shoot(page, "decisions-filtered")


def test_every_filter_narrows_the_json_feed_too(
    auditor: tuple[httpx.Client, str], made: Made
) -> None:
    client, _ = auditor
    everything = feed_ids(client)
    assert {made.root, made.denied, made.approved, made.paid, made.other} <= set(everything)
    in_trace = feed_ids(client, trace_id=made.trace_id)
    assert in_trace == [made.paid, made.approved, made.denied, made.root]
    assert feed_ids(client, action="pay_invoice", principal="agent:ops-bot") == [
        made.paid,
        made.approved,
    ]
    assert feed_ids(client, effect="approval_required") == [made.approved]
    assert feed_ids(client, principal="agent:*", effect="deny") == [made.denied]
    assert feed_ids(client, since="2000-01-01", until="2000-01-02") == []
    assert feed_ids(client, since="1h")[: len(everything)] == everything


def test_a_bad_filter_is_named_and_reads_nothing(
    auditor: tuple[httpx.Client, str], page: Page, console: Served
) -> None:
    client, _ = auditor
    answer = client.get("/console/api/decisions", params={"since": "last tuesday"})
    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == "since"
    html = client.get(FEED, params={"effect": "maybe"})
    assert html.status_code == 422
    assert "<strong>effect</strong> was not understood" in html.text
    assert 'id="feed"' not in html.text
    login(page, console, "auditor", next_path=f"{FEED}?until=soon")
    expect(page.get_by_role("alert")).to_contain_text("until")
    expect(page.get_by_label("Until (UTC)")).to_have_value("soon")


def test_pages_follow_the_ledger_index(page: Page, console: Served, made: Made) -> None:
    target = f"{FEED}?trace_id={made.trace_id}&limit=3"
    login(page, console, "auditor", next_path=quote(target, safe="/"))
    expect(page.locator("#feed tbody tr")).to_have_count(3)
    assert page_ids(page) == [made.paid, made.approved, made.denied]
    page.get_by_role("link", name="Older").click()
    expect(page.locator("#feed tbody tr")).to_have_count(1)
    assert page_ids(page) == [made.root]
    assert page.get_by_role("link", name="Older").count() == 0
    assert "trace_id=" in page.url
    assert "limit=3" in page.url
    page.get_by_role("link", name="Newer").click()
    expect(page.locator("#feed tbody tr")).to_have_count(3)
    assert page_ids(page) == [made.paid, made.approved, made.denied]
    page.get_by_role("link", name="Newest (live)").click()
    expect(page.locator("#feed")).to_have_attribute("data-live", "1")


def test_walking_every_older_page_lists_the_whole_feed_once(
    auditor: tuple[httpx.Client, str], made: Made
) -> None:
    client, _ = auditor
    everything = feed_ids(client)
    seen: list[str] = []
    url: str | None = f"{FEED}?limit=2"
    while url is not None:
        html = client.get(url).text
        seen += re.findall(r'data-label="Request"><a href="/console/requests/([^"]+)"', html)
        older = re.search(r'href="([^"]+)" rel="next" id="older-link"', html)
        url = older.group(1).replace("&amp;", "&") if older else None
    assert seen == everything
    assert len(seen) > 2


# --- the request page ------------------------------------------------------------------


def test_the_request_page_shows_the_whole_record(page: Page, console: Served, made: Made) -> None:
    login(page, console, "auditor", next_path=f"/console/requests/{made.paid}")
    expect(page.get_by_role("heading", level=1)).to_contain_text(made.paid)
    expect(page.locator("#intent-args")).to_contain_text('"to": "acme-supplies"')
    expect(page.locator("#decision-rules")).to_contain_text("payments-known-payees")
    expect(page.locator("#decision-rules")).to_contain_text("Payments up to 500")
    expect(page.locator("#mandate-text")).to_have_text("Pay the invoices from acme-supplies")
    expect(page.locator("#trace-facts")).to_contain_text(made.trace_id)
    expect(page.locator("#grant-claims")).to_contain_text("jti")
    expect(page.locator("#execution")).to_contain_text("ok")
    expect(page.locator("#execution")).to_contain_text("agent:ops-bot")
    expect(page.locator("#ledger-indexes")).to_contain_text("Execution outcome")
    receipts = page.locator("#receipts a")
    expect(receipts).to_have_count(4)  # decision and execution, JSON and tlog-proof
    page.locator("#parent a").first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(made.root)
    expect(page.locator("#parent")).to_contain_text("none")
    children = page.locator("#children a")
    expect(children).to_have_count(3)
    for child in (made.denied, made.approved, made.paid):
        expect(page.locator("#children")).to_contain_text(child)
    page.locator("#children a", has_text=made.denied).click()
    expect(page.locator("#decision-rules")).to_contain_text("no-deletes")
    expect(page.locator("#execution")).to_contain_text("No outcome reported")
    expect(page.locator("#receipts a")).to_have_count(2)  # no outcome, no execution receipt


def test_the_request_page_shows_the_approval_and_its_votes(
    page: Page, console: Served, made: Made
) -> None:
    login(page, console, "auditor", next_path=f"/console/requests/{made.approved}")
    expect(page.locator("#approval")).to_contain_text("approved")
    expect(page.locator("#approval")).to_contain_text("payments-over-cap-need-approval")
    expect(page.locator("#votes")).to_contain_text("user:bob")
    expect(page.locator("#votes")).to_contain_text("invoice 42 checked")
    expect(page.locator("#ledger-indexes")).to_contain_text("Vote by user:bob")
    page.get_by_role("button", name="Replay this decision").click()
    expect(page.locator("#replay-status")).to_have_text("match")
    shoot(page, "request")


def test_replay_shows_match(page: Page, console: Served, made: Made) -> None:
    login(page, console, "auditor", next_path=f"/console/requests/{made.paid}")
    button = page.get_by_role("button", name="Replay this decision")
    button.focus()
    page.keyboard.press("Enter")  # keyboard usable
    expect(page.locator("#replay-status")).to_have_text("match")
    expect(page.locator("#replay-result")).to_contain_text("allow [payments-known-payees]")


def test_receipt_downloads_verify_against_the_log_key(
    page: Page, console: Served, made: Made, auditor: tuple[httpx.Client, str]
) -> None:
    vkey = httpx.get(f"{console.url}/v1/log/vkey").text.strip()
    login(page, console, "auditor", next_path=f"/console/requests/{made.paid}")
    with page.expect_download() as caught:
        page.get_by_role("link", name="Decision receipt (JSON)").click()
    download = caught.value
    assert download.suggested_filename == f"receipt-{made.paid}-decision.json"
    receipt = json.loads(download.path().read_text(encoding="utf-8"))
    verified = verify_receipt(receipt, vkey)
    assert verified.entry["request_id"] == made.paid
    assert verified.entry["type"] == "decision"

    client, _ = auditor
    for entry in ("decision", "execution"):
        response = client.get(
            f"/console/requests/{made.paid}/receipt",
            params={"entry": entry, "format": "tlog-proof"},
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-disposition"] == (
            f'attachment; filename="receipt-{made.paid}-{entry}.tlog-proof"'
        )
        proven = verify_tlog_proof(response.text, vkey)
        assert proven.entry["type"] == entry
        assert proven.entry["request_id"] == made.paid
    execution = client.get(
        f"/console/requests/{made.paid}/receipt", params={"entry": "execution", "format": "json"}
    )
    assert verify_receipt(execution.json(), vkey).entry["status"] == "ok"
    none = client.get(f"/console/requests/{made.denied}/receipt", params={"entry": "execution"})
    assert none.status_code == 404
    assert "no reported outcome" in none.text
    odd = client.get(f"/console/requests/{made.paid}/receipt", params={"format": "pdf"})
    assert odd.status_code == 400


def test_an_unknown_request_is_a_404_page(
    auditor: tuple[httpx.Client, str], page: Page, console: Served
) -> None:
    client, csrf = auditor
    for path in ("/console/requests/r0000000000000000deadbeef", "/console/requests/%2E%2E"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "No such request" in response.text
    replay = client.post(
        "/console/api/requests/r0000000000000000deadbeef/replay", headers={"X-CSRF-Token": csrf}
    )
    assert replay.status_code == 404
    assert replay.json()["error"]["code"] == "not_found"
    login(page, console, "auditor", next_path="/console/requests/rnothing")
    expect(page.get_by_role("heading", level=1)).to_have_text("No such request")


# --- refusals --------------------------------------------------------------------------


def test_replay_without_the_csrf_header_is_refused_and_changes_nothing(
    auditor: tuple[httpx.Client, str], console: Served, made: Made
) -> None:
    client, csrf = auditor
    before = log_size(console)
    url = f"/console/api/requests/{made.root}/replay"
    for headers in ({}, {"X-CSRF-Token": "not-the-token"}):
        refused = client.post(url, headers=headers)
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "forbidden"
    foreign = client.post(url, headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"})
    assert foreign.status_code == 403
    assert log_size(console) == before
    accepted = client.post(url, headers={"X-CSRF-Token": csrf})
    assert accepted.status_code == 200
    assert accepted.json()["status"] == "match"


def test_an_approver_key_gets_403_and_no_feed_link(page: Page, console: Served, made: Made) -> None:
    client, csrf = session(console, "approver")
    try:
        for path in (
            FEED,
            "/console/api/decisions",
            f"/console/requests/{made.root}",
            f"/console/requests/{made.root}/receipt",
        ):
            assert client.get(path).status_code == 403, path
        replay = client.post(
            f"/console/api/requests/{made.root}/replay", headers={"X-CSRF-Token": csrf}
        )
        assert replay.status_code == 403
    finally:
        client.close()
    login(page, console, "approver", next_path="/console/me")
    navigation = page.get_by_role("navigation", name="Console")
    expect(navigation.get_by_role("link", name="Approvals")).to_be_visible()
    expect(navigation.get_by_role("link", name="Decisions")).to_have_count(0)
    page.goto(f"{console.url}{FEED}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")


def test_without_a_session_pages_redirect_to_login_and_json_is_401(
    console: Served, made: Made
) -> None:
    with httpx.Client(base_url=console.url, follow_redirects=False) as anonymous:
        for path in (f"{FEED}?effect=deny", f"/console/requests/{made.root}"):
            response = anonymous.get(path)
            assert response.status_code == 303, path
            assert response.headers["location"] == f"/console/login?next={quote(path, safe='')}"
        assert anonymous.get("/console/api/decisions").status_code == 401
        assert anonymous.post(f"/console/api/requests/{made.root}/replay").status_code == 401
        receipt = anonymous.get(f"/console/requests/{made.root}/receipt")
        assert receipt.status_code == 303


# --- layout ----------------------------------------------------------------------------


def test_the_feed_and_the_request_page_fit_a_phone(page: Page, console: Served, made: Made) -> None:
    page.set_viewport_size({"width": 375, "height": 800})
    login(page, console, "auditor", next_path=FEED)
    for path in (FEED, f"/console/requests/{made.paid}"):
        page.goto(f"{console.url}{path}")
        expect(page.locator("main h1")).to_be_visible()
        overflow = page.evaluate("document.documentElement.scrollWidth")
        assert overflow <= 375, f"{path} is {overflow}px wide at a phone's 375px"
        if path == FEED:
            shoot(page, "decisions-phone")


def test_screenshot_of_the_feed_with_every_kind_of_decision(
    page: Page, console: Served, made: Made
) -> None:
    login(page, console, "auditor", next_path=FEED)
    for effect in ("allow", "deny", "approval_required"):
        expect(page.locator(f"#feed tbody tr[data-effect={effect}]").first).to_be_visible()
    shoot(page, "decisions")
