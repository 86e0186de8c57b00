"""The approvals inbox, in Chromium, against a real server with agents waiting on it.

The module's server runs the example bundle plus three rules (installed with
``PUT /v1/policies``): payments over 2000 need two approvers among ``user:*``, a
payment of exactly 555 expires after a few seconds, and the example's payments over 500
need one approval. Agents use the remote SDK and wait for the human in a thread.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from clearance import Client
from clearance.errors import ApprovalRequired, Denied
from tests.browser.conftest import login, shoot
from tests.integration.server.support import Served, create_keys

MANDATE = "Pay the invoices from acme-supplies"
EXTRA_RULES = """
  - id: large-payments-need-two-approvers
    effect: approval_required
    actions: [pay_invoice]
    when: args.amount > 2000.0
    approvals: 2
    approvers: ["user:*"]
    message: Payments over 2000 need two people

  - id: odd-payments-expire-fast
    effect: approval_required
    actions: [pay_invoice]
    when: args.amount == 555.0
    approval_ttl: 3
    message: This payment must be approved within seconds
"""
EXTRA_KEYS: dict[str, tuple[tuple[str, ...], str]] = {
    "self-approver": (("approver",), "agent:ops-bot"),
    "bot-reviewer": (("approver",), "bot:reviewer"),
}


@pytest.fixture(scope="module", autouse=True)
def inbox_server(console: Served) -> Served:
    """The module's server with the quorum bundle and two more approver keys."""
    bundle = (console.home / "policies" / "agent.yaml").read_text(encoding="utf-8")
    with console.client("admin") as admin:
        put = admin.put("/v1/policies", json={"files": {"agent.yaml": bundle + EXTRA_RULES}})
    assert put.status_code == 200, put.text
    console.keys.update(create_keys(console.home, EXTRA_KEYS))  # as `clearance api-keys create`
    return console


# --- agents --------------------------------------------------------------------------


def open_trace(console: Served) -> str:
    """A trace for agent:ops-bot (spend cap 5000) in which it already read a file."""
    with Client(console.url, console.keys["orchestrator"]) as orchestrator:
        trace = orchestrator.open_trace(
            MANDATE, bounds={"spend_cap": 5000}, principal="agent:ops-bot"
        )
    with Client(console.url, console.keys["agent"]) as agent:
        handle = agent.resume_trace(trace.trace_id)
        read = {"action": "read_file", "args": {"path": "invoices/march.txt"}}
        with agent.clearance(read, trace=handle) as cleared:
            cleared.record_result({"lines": 12})
    return trace.trace_id


def payment(amount: float) -> dict[str, Any]:
    return {
        "action": "pay_invoice",
        "args": {"to": "acme-supplies", "amount": amount, "currency": "EUR"},
    }


@dataclass
class WaitingAgent:
    """An SDK call waiting for a human in a thread: what its body ran, what it raised."""

    trace_id: str
    approval_id: str = ""
    ran: list[str] = field(default_factory=list)
    raised: list[BaseException] = field(default_factory=list)
    thread: threading.Thread | None = None

    def finish(self) -> None:
        assert self.thread is not None
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the SDK call is still waiting"


def pending_approval(console: Served, trace_id: str) -> str:
    """The id of the pending approval of ``trace_id`` (waits for it to appear)."""
    deadline = time.monotonic() + 15
    with console.client("approver") as approver:
        while time.monotonic() < deadline:
            listed = approver.get("/v1/approvals", params={"status": "pending"}).json()
            for item in listed["approvals"]:
                if item["trace_id"] == trace_id:
                    return str(item["approval_id"])
            time.sleep(0.05)
    raise AssertionError(f"no pending approval in trace {trace_id}")


def waiting_payment(console: Served, amount: float) -> WaitingAgent:
    """An agent paying ``amount`` with ``clearance(..., wait=30 s)`` in a thread."""
    waiting = WaitingAgent(open_trace(console))

    def run() -> None:
        try:
            with Client(console.url, console.keys["agent"]) as agent:
                handle = agent.resume_trace(waiting.trace_id)
                with agent.clearance(
                    payment(amount), trace=handle, wait=timedelta(seconds=30)
                ) as cleared:
                    waiting.ran.append(cleared.request_id)
        except BaseException as exc:  # the test asserts on it
            waiting.raised.append(exc)

    waiting.thread = threading.Thread(target=run, daemon=True)
    waiting.thread.start()
    waiting.approval_id = pending_approval(console, waiting.trace_id)
    return waiting


def pending_now(console: Served, amount: float) -> str:
    """A new pending approval for a payment of ``amount`` (nobody waits for it)."""
    trace_id = open_trace(console)
    with console.client("agent") as agent:
        made = agent.post("/v1/authorize", json={**payment(amount), "trace_id": trace_id})
    assert made.status_code == 202, made.text
    return str(made.json()["approval_id"])


def status_of(console: Served, approval_id: str) -> dict[str, Any]:
    with console.client("auditor") as auditor:
        read = auditor.get(f"/v1/approvals/{approval_id}")
    assert read.status_code == 200, read.text
    body: dict[str, Any] = read.json()
    return body


# --- browser helpers -----------------------------------------------------------------


@pytest.fixture
def second_page(browser: Browser) -> Iterator[Page]:
    """Another browser (its own cookies), for a second person."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def forge_vote(page: Page, approval_id: str, fields: dict[str, str]) -> int:
    """Post a vote form the page did not offer (with the session's CSRF token unless
    ``fields`` says otherwise); returns the status of the page it lands on."""
    token = page.locator('meta[name="csrf-token"]').get_attribute("content") or ""
    with page.expect_navigation() as landed:
        page.evaluate(
            """([action, fields]) => {
                const form = document.createElement("form");
                form.method = "post";
                form.action = action;
                for (const [name, value] of Object.entries(fields)) {
                    const input = document.createElement("input");
                    input.type = "hidden"; input.name = name; input.value = value;
                    form.append(input);
                }
                document.body.append(form);
                form.submit();
            }""",
            [f"/console/approvals/{approval_id}", {"csrf_token": token, **fields}],
        )
    response = landed.value
    assert response is not None
    return response.status


def card(page: Page, approval_id: str) -> Any:
    return page.locator(f"#approval-{approval_id}")


# --- tests ---------------------------------------------------------------------------


def test_an_approver_approves_and_the_waiting_call_proceeds(page: Page, console: Served) -> None:
    waiting = waiting_payment(console, 900)
    login(page, console, "approver", next_path="/console/approvals")
    shown = card(page, waiting.approval_id)
    expect(shown).to_be_visible()
    expect(shown.get_by_role("heading", level=3)).to_have_text("pay_invoice for agent:ops-bot")
    countdown = shown.locator("time.countdown")
    expect(countdown).to_have_text(re.compile(r"^1[45] min \d\d s left$"))  # 15 min ttl
    first = countdown.inner_text()
    expect(countdown).not_to_have_text(first)  # it counts down live
    expect(shown.locator("section.intent")).to_contain_text("acme-supplies")
    expect(shown.locator("section.asked")).to_contain_text(
        "payments-over-cap-need-approval: Payments over 500 need a human approval"
    )
    expect(shown.locator(".quorum")).to_contain_text(
        "Needs 1 approval from anyone who may approve other than the requester"
    )
    expect(shown.locator(".mandate")).to_contain_text(MANDATE)
    earlier = shown.locator("table.earlier tbody tr")
    expect(earlier).to_have_count(1)
    expect(earlier).to_contain_text("read_file")
    expect(earlier.locator(".badge")).to_have_text(["allow", "ok"])
    expect(shown.locator(".progress-text")).to_have_text("0 of 1 approval")
    shoot(page, "approvals")

    shown.get_by_label("Reason").fill("invoice 2024-03 checked against the PO")
    shown.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status").first).to_contain_text("Recorded your vote to approve")
    waiting.finish()
    assert not waiting.raised, waiting.raised
    assert len(waiting.ran) == 1  # the body ran, once, after the vote
    approval = status_of(console, waiting.approval_id)
    assert approval["status"] == "collected"
    assert approval["votes"][0]["approver"] == "user:bob"
    assert approval["votes"][0]["reason"] == "invoice 2024-03 checked against the PO"
    page.reload()
    expect(card(page, waiting.approval_id)).to_have_count(0)
    row = page.locator(f'#history-rows tr[data-approval-id="{waiting.approval_id}"]')
    expect(row).to_contain_text("collected")
    expect(row).to_contain_text("user:bob: approve")


def test_a_denied_approval_makes_the_waiting_call_raise(page: Page, console: Served) -> None:
    waiting = waiting_payment(console, 950)
    login(page, console, "approver", next_path=f"/console/approvals/{waiting.approval_id}")
    shown = card(page, waiting.approval_id)
    expect(shown.get_by_role("heading", level=2)).to_have_text("pay_invoice for agent:ops-bot")
    shown.get_by_label("Reason").fill("not an invoice we expect")
    shown.get_by_role("button", name="Deny").click()
    expect(page.get_by_role("status").first).to_contain_text("it is now denied")
    waiting.finish()
    assert waiting.ran == []
    assert len(waiting.raised) == 1
    raised = waiting.raised[0]
    assert isinstance(raised, Denied), raised
    assert not isinstance(raised, ApprovalRequired), raised
    assert "not an invoice we expect" in str(raised)


def test_a_quorum_of_two_shows_progress_and_needs_both(
    page: Page, second_page: Page, console: Served
) -> None:
    waiting = waiting_payment(console, 2500)
    login(page, console, "approver", next_path="/console/approvals")
    shown = card(page, waiting.approval_id)
    expect(shown.locator(".quorum")).to_contain_text("Needs 2 approvals from user:*")
    expect(shown.locator("section.asked li")).to_have_count(2)
    expect(shown.locator(".progress-text")).to_have_text("0 of 2 approvals")
    shown.get_by_label("Reason").fill("first pair of eyes")
    shown.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status").first).to_contain_text("pending, 1 of 2 approvals")
    shown = card(page, waiting.approval_id)
    expect(shown.locator(".progress-text")).to_have_text("1 of 2 approvals")
    expect(shown.locator("progress")).to_have_attribute("value", "1")
    expect(shown.locator(".vote-list")).to_contain_text("user:bob")
    expect(shown.locator(".why-not")).to_have_text("You voted to approve; a vote counts once.")
    expect(shown.get_by_role("button", name="Approve")).to_have_count(0)
    assert waiting.thread is not None
    assert waiting.thread.is_alive()  # one vote is not enough

    login(second_page, console, "admin", next_path="/console/approvals")
    other = card(second_page, waiting.approval_id)
    expect(other.locator(".progress-text")).to_have_text("1 of 2 approvals")
    other.get_by_label("Reason").fill("second pair of eyes")
    other.get_by_role("button", name="Approve").click()
    expect(second_page.get_by_role("status").first).to_contain_text("it is now approved")
    waiting.finish()
    assert not waiting.raised, waiting.raised
    assert len(waiting.ran) == 1
    voters = [v["approver"] for v in status_of(console, waiting.approval_id)["votes"]]
    assert voters == ["user:bob", "user:alice"]
    # bob's page drops the card by itself (its form is no longer in use)
    expect(card(page, waiting.approval_id)).to_have_count(0)


@pytest.mark.parametrize(
    ("key", "amount", "shown_why", "refusal", "status"),
    [
        ("self-approver", 900, "You made this request", "nobody approves or denies", 403),
        ("bot-reviewer", 2500, "Only user:* may vote", "its approvers are user:*", 403),
    ],
)
def test_a_vote_the_gate_refuses_shows_its_message_and_changes_nothing(
    page: Page, console: Served, key: str, amount: float, shown_why: str, refusal: str, status: int
) -> None:
    approval_id = pending_now(console, amount)
    login(page, console, key, next_path="/console/approvals")
    shown = card(page, approval_id)
    expect(shown.locator(".why-not")).to_contain_text(shown_why)
    expect(shown.get_by_role("button", name="Approve")).to_have_count(0)
    landed = forge_vote(page, approval_id, {"decision": "approve", "reason": "let me"})
    assert landed == status
    expect(page.get_by_role("alert")).to_contain_text("Your vote was not recorded")
    expect(page.get_by_role("alert")).to_contain_text(refusal)
    expect(page.get_by_role("alert")).to_contain_text("Nothing changed")
    approval = status_of(console, approval_id)
    assert approval["status"] == "pending"
    assert approval["votes"] == []


def test_a_second_vote_or_a_bad_one_is_refused_with_a_message(page: Page, console: Served) -> None:
    approval_id = pending_now(console, 2600)
    with console.client("approver") as approver:
        first = approver.post(
            f"/v1/approvals/{approval_id}", json={"decision": "approve", "reason": "fine"}
        )
    assert first.status_code == 200, first.text
    login(page, console, "approver", next_path=f"/console/approvals/{approval_id}")
    assert forge_vote(page, approval_id, {"decision": "approve", "reason": "again"}) == 409
    expect(page.get_by_role("alert")).to_contain_text("already voted")
    assert forge_vote(page, approval_id, {"decision": "maybe", "reason": "hm"}) == 422
    expect(page.get_by_role("alert")).to_contain_text("Choose Approve or Deny")
    assert forge_vote(page, approval_id, {"decision": "deny", "reason": "  "}) == 422
    expect(page.get_by_role("alert")).to_contain_text("needs a reason")
    assert forge_vote(page, "a0000000000000000deadbeef", {"decision": "deny", "reason": "x"}) == 404
    expect(page.get_by_role("alert")).to_contain_text("no approval")
    approval = status_of(console, approval_id)
    assert approval["status"] == "pending"
    assert len(approval["votes"]) == 1


def test_an_auditor_reads_the_inbox_but_cannot_vote(page: Page, console: Served) -> None:
    approval_id = pending_now(console, 910)
    login(page, console, "auditor", next_path="/console/approvals")
    shown = card(page, approval_id)
    expect(shown.locator(".mandate")).to_contain_text(MANDATE)
    expect(page.locator(".read-only")).to_contain_text("Read-only")
    expect(page.locator("form.vote")).to_have_count(0)
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    expect(page.get_by_role("button", name="Deny")).to_have_count(0)
    assert forge_vote(page, approval_id, {"decision": "approve", "reason": "forged"}) == 403
    expect(page.get_by_role("alert")).to_contain_text("approver")
    assert status_of(console, approval_id)["votes"] == []


def test_a_vote_without_the_csrf_token_is_refused(page: Page, console: Served) -> None:
    approval_id = pending_now(console, 920)
    login(page, console, "approver", next_path="/console/approvals")
    expect(card(page, approval_id)).to_be_visible()
    url = f"{console.url}/console/approvals/{approval_id}"
    forms: tuple[dict[str, str | float | bool], ...] = (
        {"decision": "approve", "reason": "no token"},
        {"decision": "approve", "reason": "wrong token", "csrf_token": "x" * 43},
    )
    for form in forms:
        answer = page.request.post(url, form=form, max_redirects=0)
        assert answer.status == 403, answer.text()
        assert "did not come from this console" in answer.text()
    emptied = {"decision": "deny", "reason": "x", "csrf_token": ""}
    assert forge_vote(page, approval_id, emptied) == 403
    approval = status_of(console, approval_id)
    assert approval["status"] == "pending"
    assert approval["votes"] == []


def test_the_inbox_updates_without_reload_and_expires_live(page: Page, console: Served) -> None:
    login(page, console, "approver", next_path="/console/approvals")
    expiring = pending_now(console, 555)  # its rule gives it 3 s
    page.reload()
    late = card(page, expiring)
    expect(late.locator("time.countdown")).to_have_text(re.compile(r"^[1-3] s left$"))
    late.get_by_label("Reason").fill("looking into it")  # a card in use is never swapped out

    arriving = pending_now(console, 930)
    expect(card(page, arriving)).to_be_visible()  # polled in, no reload
    expect(page.locator("#live-status")).to_contain_text("New approval: pay_invoice")

    expect(late.locator("time.countdown")).to_have_text("expired")
    expect(late.get_by_role("button", name="Approve")).to_be_disabled()
    expect(late).to_contain_text("decided or expired meanwhile")
    expect(late.get_by_label("Reason")).to_have_value("looking into it")

    with console.client("admin") as admin:
        decided = admin.post(
            f"/v1/approvals/{arriving}", json={"decision": "deny", "reason": "elsewhere"}
        )
    assert decided.status_code == 200, decided.text
    expect(card(page, arriving)).to_have_count(0)
    history = page.locator("#history-rows")
    expect(history.locator(f'tr[data-approval-id="{arriving}"]')).to_contain_text("denied")
    expect(history.locator(f'tr[data-approval-id="{expiring}"]')).to_contain_text("expired")


def test_the_inbox_needs_a_login_and_a_reader_scope(page: Page, console: Served) -> None:
    anonymous = httpx.get(f"{console.url}/console/approvals", follow_redirects=False)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"].startswith("/console/login?next=")
    api = httpx.get(f"{console.url}/console/api/approvals")
    assert api.status_code == 401
    assert api.json()["error"]["code"] == "unauthenticated"
    vote = httpx.post(
        f"{console.url}/console/approvals/a0000000000000000deadbeef",
        data={"decision": "approve", "reason": "x"},
        follow_redirects=False,
    )
    assert vote.status_code == 303
    login(page, console, "agent", next_path="/console/me")
    answer = page.goto(f"{console.url}/console/approvals")
    assert answer is not None
    assert answer.status == 403
    assert page.request.get(f"{console.url}/console/api/approvals").status == 403


def test_the_inbox_reads_at_phone_width(page: Page, console: Served) -> None:
    approval_id = pending_now(console, 940)
    page.set_viewport_size({"width": 375, "height": 800})
    login(page, console, "approver", next_path="/console/approvals")
    expect(card(page, approval_id)).to_be_visible()
    overflow = page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= 375, f"the page is {overflow} px wide at 375 px"
    shown = card(page, approval_id)
    shown.get_by_label("Reason").focus()
    page.keyboard.type("checked on the phone")
    page.keyboard.press("Tab")
    expect(shown.get_by_role("button", name="Approve")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("status").first).to_contain_text("it is now approved")
