"""The lineage explorer, in Chromium and over HTTP, against a real server.

One module server holds two traces built through the runtime API exactly as agents
make them: a 1,000-request tree (an orchestrator opens the trace, the agent authorizes
every intent with its parent link, some are denied, some report outcomes, and one
``fetch_document``, a tool the example bundle marks ``untrusted_output``, taints the
rest), and a 12-request trace small enough to read in the README's screenshot.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from clearance._internal.console.pages.lineage import FIRST_WINDOW, RECENT, recent_traces
from clearance._internal.entries import key_entry, trace_entry
from clearance._internal.home import init_home
from clearance._internal.wiring import open_ledger
from tests.browser.conftest import login, shoot
from tests.integration.server.support import Served

SERVER_SETTINGS = {"server": {"rate_limit": {"per_second": 100000, "burst": 100000}}}
"""Building a 1,000-request trace must not meet the per-key rate limit."""

MANDATE_TEXT = "Pay the invoices from acme-supplies"
MANDATE: dict[str, Any] = {"text": MANDATE_TEXT, "bounds": {"spend_cap": 1000}}
DIGEST = "sha256:" + "0" * 64
BIG = 1000
ROOTS = 3
TAINT_AT = 50
"""The position in the tree (breadth first) of the big trace's one ``fetch_document``."""
WORKERS = 4
RENDER_BUDGET_S = 5.0


@dataclass
class Built:
    """A trace made through the API, and what the log must say about each request."""

    trace_id: str
    request_ids: list[str] = field(default_factory=list)
    parents: dict[str, str | None] = field(default_factory=dict)
    actions: dict[str, str] = field(default_factory=dict)
    effects: dict[str, str] = field(default_factory=dict)
    indexes: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)
    taint_source: str | None = None

    def tainted(self) -> set[str]:
        """Requests decided after the untrusted output's decision (``trace.untrusted``)."""
        if self.taint_source is None:
            return set()
        after = self.indexes[self.taint_source]
        return {rid for rid, index in self.indexes.items() if index > after}


def open_trace(orchestrator: httpx.Client) -> str:
    opened = orchestrator.post(
        "/v1/traces", json={"mandate": MANDATE, "principal": "agent:ops-bot"}
    )
    assert opened.status_code == 201, opened.text
    trace_id = opened.json()["trace_id"]
    assert isinstance(trace_id, str)
    return trace_id


def decide(
    agent: httpx.Client,
    built: Built,
    action: str,
    args: dict[str, Any],
    parent: str | None,
    outcome: str | None = None,
) -> str:
    """Authorize one intent of ``built`` under ``parent``; report ``outcome`` if allowed."""
    intent: dict[str, Any] = {"action": action, "args": args, "trace_id": built.trace_id}
    if parent is not None:
        intent["parent_id"] = parent
    answer = agent.post("/v1/authorize", json=intent)
    assert answer.status_code in (200, 202, 403), answer.text
    body = answer.json()
    rid = body["request_id"]
    built.request_ids.append(rid)
    built.parents[rid] = parent
    built.actions[rid] = action
    built.effects[rid] = body["effect"]
    built.indexes[rid] = body["ledger_index"]
    if action == "fetch_document" and body["effect"] == "allow" and built.taint_source is None:
        built.taint_source = rid
    if outcome is not None:
        assert body["effect"] == "allow", (action, args, body)
        report = {
            "status": outcome,
            "grant": body["grant"],
            "intent": body["intent"],
            "result_digest": DIGEST,
            "duration_us": 900,
            "executor": "file-service",
            "error_type": "OSError" if outcome == "error" else None,
        }
        reported = agent.post("/v1/executions", json=report)
        assert reported.status_code == 201, reported.text
        built.outcomes[rid] = outcome
    assert isinstance(rid, str)
    return rid


def build_big(served: Served) -> Built:
    """1,000 requests in a tree: three roots, three children each, made level by level
    (a level's requests :data:`WORKERS` at a time, over keep-alive connections). Every
    tenth is a denied ``delete_file``, one a ``fetch_document`` (untrusted output), the
    rest ``read_file``; every fifth reports ``ok``, and a few more ``error``."""
    with served.client("orchestrator") as orchestrator, served.client("agent") as agent:
        built = Built(open_trace(orchestrator))
        made = [""] * BIG

        def make(i: int) -> str:
            parent = None if i < ROOTS else made[(i - ROOTS) // 3]
            if i % 10 == 7:
                return decide(agent, built, "delete_file", {"path": f"tmp/{i}.txt"}, parent)
            action = "fetch_document" if i == TAINT_AT else "read_file"
            outcome = "ok" if i % 5 == 0 else "error" if i % 25 == 3 else None
            return decide(agent, built, action, {"path": f"docs/{i}.txt"}, parent, outcome)

        level = list(range(ROOTS))
        with ThreadPoolExecutor(WORKERS) as pool:
            while level:
                for i, rid in zip(level, pool.map(make, level), strict=True):
                    made[i] = rid
                level = [
                    c for i in level for c in range(ROOTS + 3 * i, min(ROOTS + 3 * i + 3, BIG))
                ]
    assert len(built.request_ids) == BIG
    return built


def build_small(served: Served) -> Built:
    """Twelve requests: an untrusted document read, a planted payee refused after it, a
    payment needing approval, a path traversal and a delete denied, an error outcome."""
    with served.client("orchestrator") as orchestrator, served.client("agent") as agent:
        built = Built(open_trace(orchestrator))
        inbox = decide(agent, built, "read_file", {"path": "inbox/README.txt"}, None, "ok")
        doc = decide(agent, built, "fetch_document", {"path": "invoices/inv-7.pdf"}, inbox, "ok")
        text = decide(agent, built, "read_file", {"path": "invoices/inv-7.txt"}, inbox, "ok")
        paid = decide(
            agent,
            built,
            "pay_invoice",
            {"to": "acme-supplies", "amount": 120, "currency": "EUR"},
            doc,
            "ok",
        )
        pay = {"amount": 90, "currency": "EUR", "to": "evil-corp"}
        decide(agent, built, "pay_invoice", pay, doc)
        notes = {"path": "notes/summary.txt", "content": "INV-7 paid"}
        summary = decide(agent, built, "write_file", notes, text, "error")
        decide(agent, built, "delete_file", {"path": "tmp/inv-7.pdf"}, text)
        big_payment = {"to": "acme-supplies", "amount": 700, "currency": "EUR"}
        decide(agent, built, "pay_invoice", big_payment, paid)
        decide(agent, built, "read_file", {"path": "../secrets.txt"}, summary)
        report = decide(agent, built, "read_file", {"path": "reports/q3.txt"}, None, "ok")
        draft = {"path": "reports/q3-summary.txt", "content": "draft"}
        written = decide(agent, built, "write_file", draft, report)
        decide(agent, built, "read_file", {"path": "reports/q4.txt"}, written, "ok")
    return built


@pytest.fixture(scope="module")
def big(console: Served) -> Built:
    started = time.perf_counter()
    built = build_big(console)
    print(f"\nbuilt a {BIG}-request trace over HTTP in {time.perf_counter() - started:.2f} s")
    return built


@pytest.fixture(scope="module")
def small(console: Served) -> Built:
    return build_small(console)


@contextmanager
def console_session(served: Served, key: str) -> Iterator[httpx.Client]:
    """An httpx client logged in to the console with the key named ``key``."""
    with httpx.Client(base_url=served.url, timeout=30.0) as client:
        form = client.get("/console/login")
        token = re.search(r'name="login_token" value="([^"]+)"', form.text)
        assert token is not None, form.text[:500]
        done = client.post(
            "/console/login",
            data={
                "api_key": served.keys[key],
                "login_token": token.group(1),
                "next": "/console/me",
            },
        )
        assert done.status_code == 303, done.text[:500]
        yield client


@pytest.fixture(scope="module")
def auditor(console: Served) -> Iterator[httpx.Client]:
    with console_session(console, "auditor") as client:
        yield client


# --- the graph's JSON -------------------------------------------------------------------


def test_the_graph_lists_every_request_with_decision_outcome_parent_and_taint(
    auditor: httpx.Client, big: Built
) -> None:
    started = time.perf_counter()
    answer = auditor.get(f"/console/api/traces/{big.trace_id}/graph")
    elapsed = time.perf_counter() - started
    print(f"\nGET the {BIG}-request graph: {elapsed * 1000:.0f} ms, {len(answer.content)} bytes")
    assert answer.status_code == 200, answer.text
    graph = answer.json()
    assert graph["trace_id"] == big.trace_id
    assert graph["mandate"] == MANDATE
    assert graph["principal"] == "agent:ops-bot"
    assert graph["opened_by"] == "app:orchestrator"
    assert (graph["total"], graph["truncated"]) == (BIG, False)
    nodes = graph["nodes"]
    assert [n["request_id"] for n in nodes] == sorted(big.request_ids, key=big.indexes.__getitem__)
    tainted = big.tainted()
    assert abs(len(tainted) - (BIG - TAINT_AT - 1)) <= WORKERS  # as decided, give or take
    for node in nodes:
        rid = node["request_id"]
        assert node["index"] == big.indexes[rid]
        assert node["parent_id"] == big.parents[rid]
        assert node["action"] == big.actions[rid]
        assert node["effect"] == big.effects[rid]
        assert node["outcome"] == big.outcomes.get(rid)
        assert node["tainted"] is (rid in tainted), rid
        assert node["taints"] is (rid == big.taint_source), rid
    denied = [n for n in nodes if n["effect"] == "deny"]
    assert len(denied) == BIG // 10
    assert {tuple(n["rules"]) for n in denied} == {("no-deletes",)}
    assert {tuple(n["rules"]) for n in nodes if n["effect"] == "allow"} == {("files-in-sandbox",)}
    assert elapsed < 2.0, f"reading a {BIG}-request trace took {elapsed:.2f} s"


def test_taint_and_rules_follow_the_gates_record_in_a_small_trace(
    auditor: httpx.Client, small: Built
) -> None:
    graph = auditor.get(f"/console/api/traces/{small.trace_id}/graph").json()
    by_action: dict[str, list[dict[str, Any]]] = {}
    for node in graph["nodes"]:
        by_action.setdefault(node["action"], []).append(node)
    fetched = by_action["fetch_document"][0]
    assert fetched["taints"]
    assert not fetched["tainted"]
    payments = by_action["pay_invoice"]
    assert [(p["effect"], p["tainted"]) for p in payments] == [
        ("allow", True),
        ("deny", True),
        ("approval_required", True),
    ]
    assert "no-ungrounded-payments-after-untrusted-input" in payments[1]["rules"]
    first_read = graph["nodes"][0]
    assert (first_read["tainted"], first_read["taints"]) == (False, False)


def test_a_call_made_with_no_trace_open_has_a_graph_of_its_own(
    console: Served, auditor: httpx.Client
) -> None:
    with console.client("agent") as agent:
        answer = agent.post("/v1/authorize", json={"action": "read_file", "args": {"path": "a"}})
    assert answer.status_code == 200, answer.text
    trace_id = answer.json()["intent"]["trace_id"]
    graph = auditor.get(f"/console/api/traces/{trace_id}/graph").json()
    assert (graph["principal"], graph["opened_by"]) == ("agent:ops-bot", None)
    assert [n["request_id"] for n in graph["nodes"]] == [answer.json()["request_id"]]
    assert graph["ledger_index"] == answer.json()["ledger_index"]
    page = auditor.get(f"/console/lineage/{trace_id}")
    assert page.status_code == 200
    assert "a call made with no trace open" in page.text


def test_an_unknown_or_malformed_trace_is_404(auditor: httpx.Client) -> None:
    for trace_id in ("t000000000000000000000000", "bad%20id", "x" * 200):
        page = auditor.get(f"/console/lineage/{trace_id}")
        assert page.status_code == 404, trace_id
        assert "The log has no trace" in page.text
        api = auditor.get(f"/console/api/traces/{trace_id}/graph")
        assert api.status_code == 404
        assert api.json()["error"]["code"] == "not_found"
    assert "&lt;script&gt;" in auditor.get("/console/lineage/%3Cscript%3E").text


# --- the picker --------------------------------------------------------------------------


def test_the_picker_lists_recent_traces_newest_first_with_their_size(
    auditor: httpx.Client, big: Built, small: Built
) -> None:
    page = auditor.get("/console/lineage")
    assert page.status_code == 200
    html = page.text
    assert html.index(small.trace_id) < html.index(big.trace_id)  # small was opened later
    rows = re.findall(r"<tr>(.*?)</tr>", html, flags=re.S)
    big_row = next(row for row in rows if big.trace_id in row)
    assert re.search(r'<td class="num">1000</td>', big_row), big_row
    assert "untrusted input" in big_row
    assert MANDATE_TEXT in big_row
    small_row = next(row for row in rows if small.trace_id in row)
    assert '<td class="num">12</td>' in small_row


def test_the_picker_form_opens_a_trace_and_refuses_a_malformed_id(
    auditor: httpx.Client, small: Built
) -> None:
    opened = auditor.get("/console/lineage", params={"trace_id": f" {small.trace_id} "})
    assert opened.status_code == 303
    assert opened.headers["location"] == f"/console/lineage/{small.trace_id}"
    refused = auditor.get("/console/lineage", params={"trace_id": "../etc"})
    assert refused.status_code == 422
    assert "A trace id is a letter or digit" in refused.text


def test_recent_traces_are_found_far_back_newest_first_and_paged_without_gaps(
    tmp_path: Path,
) -> None:
    """The picker's backward search over a log where traces are sparse and dense."""
    now = time.time()
    home = init_home(tmp_path / "home", now=now)
    opened: list[str] = []
    with open_ledger(home) as ledger:
        batch: list[dict[str, Any]] = []
        for position in range(3 * FIRST_WINDOW):
            dense = position > 3 * FIRST_WINDOW - 40
            if position % 500 == 7 or (dense and position % 3 == 0):
                trace_id = f"t{position:024x}"
                opened.append(trace_id)
                batch.append(trace_entry(now, trace_id, MANDATE, "app:orchestrator"))
            else:
                batch.append(key_entry(now, f"filler-{position}", {"kty": "OKP"}))
        ledger.append_many(batch)
        newest_first = list(reversed(opened))
        seen: list[str] = []
        before = ledger.size()
        while True:
            listed = recent_traces(ledger, before=before, limit=RECENT)
            seen.extend(item.head.trace_id for item in listed)
            assert all(item.requests == 0 and item.head.principal is None for item in listed)
            if len(listed) < RECENT:
                break
            before = listed[-1].head.ledger_index
        assert seen == newest_first
        assert len(opened) > RECENT


# --- who may look ------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["agent", "approver", "orchestrator"])
def test_keys_without_the_auditor_scope_are_refused(
    console: Served, small: Built, key: str
) -> None:
    with console_session(console, key) as client:
        for path in ("/console/lineage", f"/console/lineage/{small.trace_id}"):
            answer = client.get(path)
            assert answer.status_code == 403, path
            assert "auditor" in answer.text
        api = client.get(f"/console/api/traces/{small.trace_id}/graph")
        assert api.status_code == 403
        assert api.json()["error"]["code"] == "forbidden"
        assert "Lineage" not in client.get("/console/me").text.split("</nav>")[0]


def test_an_admin_may_look(console: Served, small: Built) -> None:
    with console_session(console, "admin") as client:
        assert client.get(f"/console/api/traces/{small.trace_id}/graph").status_code == 200


def test_anonymous_viewers_are_sent_to_log_in(console: Served, small: Built) -> None:
    with httpx.Client(base_url=console.url) as client:
        page = client.get(f"/console/lineage/{small.trace_id}")
        assert page.status_code == 303
        assert page.headers["location"] == (
            f"/console/login?next=%2Fconsole%2Flineage%2F{small.trace_id}"
        )
        api = client.get(f"/console/api/traces/{small.trace_id}/graph")
        assert api.status_code == 401


# --- in the browser ------------------------------------------------------------------------


def _console_errors(page: Page) -> list[str]:
    """Errors the page logs from now on (a CSP refusal is one), filled in as they come."""
    errors: list[str] = []
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    return errors


def _view_box(page: Page) -> list[float]:
    value = page.locator("#lineage-svg").get_attribute("viewBox")
    assert value is not None
    return [float(part) for part in value.split()]


def check_layout(page: Page, built: Built) -> None:
    """Layers by depth, one column each; no two requests in one place; within a layer,
    the parents' order, then ledger order."""
    placed: dict[str, tuple[float, float]] = {}
    for rid, transform in page.evaluate(
        "Array.from(document.querySelectorAll('#lineage-svg a.node'),"
        " a => [a.dataset.request, a.getAttribute('transform')])"
    ):
        found = re.fullmatch(r"translate\(([-0-9.e]+) ([-0-9.e]+)\)", transform)
        assert found is not None, transform
        placed[rid] = (float(found.group(1)), float(found.group(2)))
    assert len(set(placed.values())) == len(placed) == len(built.request_ids)
    roots = {placed[rid][0] for rid, parent in built.parents.items() if parent is None}
    assert len(roots) == 1
    steps = {placed[rid][0] - placed[parent][0] for rid, parent in built.parents.items() if parent}
    assert len(steps) == 1
    assert steps.pop() > 0
    layers: dict[float, list[str]] = {}
    for rid, (x, _) in placed.items():
        layers.setdefault(x, []).append(rid)

    def ordering(rid: str) -> tuple[float, int]:
        parent = built.parents[rid]
        return (placed[parent][1] if parent else 0.0, built.indexes[rid])

    for members in layers.values():
        by_height = sorted(members, key=lambda rid: placed[rid][1])
        assert by_height == sorted(members, key=ordering)


def test_a_1000_request_graph_draws_searches_zooms_pans_and_opens_a_request(
    page: Page, console: Served, big: Built
) -> None:
    login(page, console, "auditor")
    errors = _console_errors(page)
    started = time.perf_counter()
    page.goto(f"{console.url}/console/lineage/{big.trace_id}")
    graph = page.locator("#lineage-svg[data-state='ready']")
    expect(graph).to_be_attached(timeout=15_000)
    elapsed = time.perf_counter() - started
    drawn_ms = graph.get_attribute("data-render-ms")
    print(
        f"\nopened the {BIG}-request graph in {elapsed * 1000:.0f} ms (layout+draw {drawn_ms} ms)"
    )
    assert elapsed < RENDER_BUDGET_S, f"the graph took {elapsed:.1f} s to appear"
    expect(page.locator("#lineage-svg a.node")).to_have_count(BIG)
    expect(page.locator("#lineage-svg g.mandate")).to_have_count(1)
    expect(page.locator("#lineage-svg path.edge")).to_have_count(BIG)
    tainted = len(big.tainted())
    expect(page.locator("#lineage-svg a.node.tainted")).to_have_count(tainted)
    expect(page.locator("#lineage-svg path.edge.tainted")).to_have_count(tainted)
    expect(page.locator("#lineage-svg a.node.taints")).to_have_count(1)
    expect(page.locator("#lineage-summary")).to_contain_text("1,000")
    check_layout(page, big)

    page.get_by_label("Search by action").fill("delete")
    expect(page.locator("#lineage-count")).to_have_text("100 requests match")
    expect(page.locator("#lineage-svg a.node.match")).to_have_count(100)
    page.get_by_label("Search by action").fill("fetch_doc")
    expect(page.locator("#lineage-count")).to_have_text("1 request matches")
    page.get_by_label("Search by action").fill("delete")

    before = _view_box(page)
    page.get_by_role("button", name="Next match").click()
    current = page.locator("#lineage-svg a.node.current")
    expect(current).to_have_count(1)
    expect(page.locator("#lineage-count")).to_contain_text("Match 1 of 100: delete_file")
    centred = _view_box(page)
    assert centred != before

    page.get_by_role("button", name="Zoom in").click()
    zoomed = _view_box(page)
    assert zoomed[2] < centred[2]
    assert zoomed[3] < centred[3]
    page.get_by_role("button", name="Zoom out").click()
    page.get_by_role("button", name="Zoom out").click()
    assert _view_box(page)[2] > zoomed[2]

    page.locator("#lineage-svg").scroll_into_view_if_needed()
    box = page.locator("#lineage-svg").bounding_box()
    assert box is not None
    unwheeled = page.locator("#lineage-svg").get_attribute("viewBox")
    assert unwheeled is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -400)
    expect(page.locator("#lineage-svg")).not_to_have_attribute("viewBox", unwheeled)
    assert _view_box(page)[2] < [float(v) for v in unwheeled.split()][2]  # wheel up: closer

    panned_from = _view_box(page)
    page.mouse.move(box["x"] + 40, box["y"] + 40)
    page.mouse.down()
    page.mouse.move(box["x"] + 240, box["y"] + 140, steps=5)
    page.mouse.up()
    panned = _view_box(page)
    assert panned[0] < panned_from[0]
    assert panned[1] < panned_from[1]
    assert panned[2] == panned_from[2]

    page.locator("#lineage-svg").focus()
    page.keyboard.press("ArrowRight")
    assert _view_box(page)[0] > panned[0]
    page.keyboard.press("0")
    page.get_by_role("button", name="Next match").click()
    target = current.get_attribute("data-request")
    assert target is not None
    assert big.effects[target] == "deny"
    assert not errors, errors
    current.click()
    page.wait_for_url(f"**/console/requests/{target}")


def test_a_drag_that_ends_on_a_request_pans_and_does_not_open_it(
    page: Page, console: Served, small: Built
) -> None:
    login(page, console, "auditor", next_path=f"/console/lineage/{small.trace_id}")
    expect(page.locator("#lineage-svg[data-state='ready']")).to_be_attached()
    page.locator("#lineage-svg").scroll_into_view_if_needed()
    before = _view_box(page)
    box = page.locator("#lineage-svg a.node").first.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 60, y + 20, steps=6)  # the request moves with the pointer
    page.mouse.up()
    after = _view_box(page)
    assert after[0] < before[0]
    assert after[1] < before[1]
    page.wait_for_timeout(300)  # a click would have started navigating by now
    assert page.url.endswith(f"/console/lineage/{small.trace_id}")


def test_the_graph_is_usable_from_the_keyboard(page: Page, console: Served, small: Built) -> None:
    login(page, console, "auditor", next_path=f"/console/lineage/{small.trace_id}")
    expect(page.locator("#lineage-svg a.node")).to_have_count(12)
    page.locator("#lineage-svg").focus()
    page.keyboard.press("Tab")
    first = small.request_ids[0]
    expect(page.locator(f"#lineage-svg a.node[data-request='{first}']")).to_be_focused()
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/console/requests/{first}")


def test_a_trace_without_requests_shows_its_mandate_alone(page: Page, console: Served) -> None:
    with console.client("orchestrator") as orchestrator:
        trace_id = open_trace(orchestrator)
    login(page, console, "auditor", next_path=f"/console/lineage/{trace_id}")
    expect(page.locator("#lineage-status")).to_have_text(
        "No request was decided in this trace yet."
    )
    expect(page.locator("#lineage-svg g.mandate")).to_contain_text(MANDATE_TEXT[:20])
    expect(page.locator("#lineage-svg a.node")).to_have_count(0)


def test_a_small_trace_reads_well_and_fits_a_phone(
    page: Page, console: Served, small: Built
) -> None:
    errors = _console_errors(page)
    login(page, console, "auditor", next_path=f"/console/lineage/{small.trace_id}")
    expect(page.locator("#lineage-svg a.node")).to_have_count(12)
    expect(page.locator("#lineage-status")).to_contain_text("12 requests")
    expect(page.locator("#lineage-svg a.node.deny")).to_have_count(3)
    expect(page.locator("#lineage-svg a.node.approval_required")).to_have_count(1)
    expect(page.locator("#lineage-svg a.node.outcome-error")).to_have_count(1)
    expect(page.locator("#lineage-svg a.node.taints")).to_have_count(1)
    expect(page.locator("#lineage-svg a.node.tainted")).to_have_count(10)
    page.get_by_label("Search by action").fill("pay_invoice")
    expect(page.locator("#lineage-count")).to_have_text("3 requests match")
    shoot(page, "lineage")
    page.set_viewport_size({"width": 375, "height": 740})
    page.reload()
    expect(page.locator("#lineage-svg[data-state='ready']")).to_be_attached()
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than a phone"
    assert not errors, errors
