"""The policy lab in Chromium against a real server: history, dry runs, impact, activation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import login, session, shoot
from tests.integration.server.support import Served

NO_WRITES = (
    "\n  - id: no-writes\n    effect: deny\n    actions: [write_file]\n"
    "    message: Writes are frozen during the audit\n"
)
"""A rule appended to the example bundle's rule list: the stricter candidate."""


@dataclass(frozen=True)
class Made:
    """The decisions this module logged, by what the example bundle decided."""

    reads: tuple[str, ...]
    writes: tuple[str, ...]
    deletes: tuple[str, ...]

    @property
    def count(self) -> int:
        return len(self.reads) + len(self.writes) + len(self.deletes)


@pytest.fixture(scope="module")
def made(console: Served) -> Made:
    """Two allowed reads, two allowed writes and a denied delete; no other test authorizes."""
    ids: dict[str, list[str]] = {"read_file": [], "write_file": [], "delete_file": []}
    with console.client("agent") as agent:
        for action, args, status in (
            ("read_file", {"path": "notes/a.txt"}, 200),
            ("write_file", {"path": "notes/b.txt", "content": "draft"}, 200),
            ("read_file", {"path": "notes/c.txt"}, 200),
            ("delete_file", {"path": "notes/a.txt"}, 403),
            ("write_file", {"path": "notes/d.txt", "content": "final"}, 200),
        ):
            response = agent.post("/v1/authorize", json={"action": action, "args": args})
            assert response.status_code == status, response.text
            ids[action].append(response.json()["request_id"])
    return Made(tuple(ids["read_file"]), tuple(ids["write_file"]), tuple(ids["delete_file"]))


@pytest.fixture(scope="module")
def auditor(console: Served) -> Iterator[tuple[httpx.Client, str]]:
    client, csrf = session(console, "auditor")
    try:
        yield client, csrf
    finally:
        client.close()


@pytest.fixture(scope="module")
def admin(console: Served) -> Iterator[tuple[httpx.Client, str]]:
    client, csrf = session(console, "admin")
    try:
        yield client, csrf
    finally:
        client.close()


def policies(served: Served) -> dict[str, Any]:
    """``GET /v1/policies``: the active digest, document and activations."""
    with served.client("auditor") as client:
        response = client.get("/v1/policies")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def active_files(served: Served) -> dict[str, str]:
    """The home's policy files (the example bundle, or what an admin activated)."""
    return {p.name: p.read_text() for p in sorted((served.home / "policies").glob("*.yaml"))}


def log_size(served: Served) -> int:
    with served.client("auditor") as client:
        response = client.get("/v1/log/entries", params={"start": 0, "limit": 1})
    assert response.status_code == 200, response.text
    return int(response.json()["size"])


def api_dry_run(served: Served, intent: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/policies/evaluate`` with the auditor's key."""
    with served.client("auditor") as client:
        response = client.post("/v1/policies/evaluate", json={"intent": intent})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def open_lab(page: Page, served: Served, key: str) -> None:
    login(page, served, key, next_path="/console/policy")
    expect(page.get_by_role("heading", name="Policy lab", exact=True)).to_be_visible()


def candidate(page: Page) -> Any:
    return page.locator("textarea.candidate-file").first


# --- viewing ----------------------------------------------------------------------------


def test_the_page_shows_the_active_digest_and_the_history(
    page: Page, console: Served, made: Made
) -> None:
    open_lab(page, console, "auditor")
    known = policies(console)
    expect(page.locator("#active-digest")).to_have_text(known["digest"])
    rows = page.locator("#history tbody tr")
    expect(rows).to_have_count(len(known["activations"]))
    newest = known["activations"][-1]
    expect(rows.first).to_contain_text(newest["digest"])
    expect(rows.first).to_contain_text(str(newest["ledger_index"]))
    # The editor starts as the active bundle's files, read from the home.
    for name, text in active_files(console).items():
        assert page.locator(f'textarea[data-file="{name}"]').input_value() == text
    rows.first.get_by_role("link").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(str(newest["ledger_index"]))
    expect(page.locator("#entry-digest")).to_have_text(newest["digest"])
    expect(page.locator("main")).to_contain_text("proven in the log")


def test_an_auditor_is_not_offered_activation_and_a_forged_post_is_refused(
    page: Page, console: Served, auditor: tuple[httpx.Client, str]
) -> None:
    open_lab(page, console, "auditor")
    expect(page.locator("#no-activation")).to_be_visible()
    expect(page.get_by_role("button", name="Activate…")).to_have_count(0)
    expect(page.get_by_role("button", name="Validate")).to_have_count(0)
    client, csrf = auditor
    before = policies(console)["digest"]
    files = {"agent.yaml": "version: 1\nrules: []\n"}
    for path in ("/console/api/policy/activate", "/console/api/policy/validate"):
        forged = client.post(path, json={"files": files}, headers={"X-CSRF-Token": csrf})
        assert forged.status_code == 403, forged.text
        assert forged.json()["error"]["code"] == "forbidden"
    assert policies(console)["digest"] == before


# --- dry runs ---------------------------------------------------------------------------


def dry_run(page: Page, intent: dict[str, Any], *, trace: str = "") -> None:
    page.get_by_label("Intent (JSON)").fill(json.dumps(intent, indent=2))
    page.get_by_label("Within trace").fill(trace)
    page.get_by_role("button", name="Evaluate (dry run)").click()


def shown_rules(page: Page) -> list[str]:
    return page.locator("#dry-rules tbody tr td:first-child").all_inner_texts()


def test_a_dry_run_answers_as_the_api_does(page: Page, console: Served) -> None:
    size = log_size(console)
    open_lab(page, console, "auditor")
    allowed = {"principal": "agent:ops-bot", "action": "read_file", "args": {"path": "a.txt"}}
    denied = {"principal": "agent:ops-bot", "action": "delete_file", "args": {"path": "a.txt"}}
    for intent, effect, rule in (
        (allowed, "allow", "files-in-sandbox"),
        (denied, "deny", "no-deletes"),
    ):
        dry_run(page, intent)
        expect(page.locator("#dry-effect")).to_have_text(effect)
        expect(page.locator("#dry-rules")).to_contain_text(rule)
        api = api_dry_run(console, intent)
        assert api["effect"] == effect
        assert shown_rules(page) == [r["rule"] for r in api["reasons"]]
        facts = json.loads(page.locator("#dry-facts").inner_text())
        assert facts["depth"] == api["facts"]["depth"] == 0
    assert log_size(console) == size  # a dry run writes nothing


def test_a_dry_run_within_a_trace_sees_its_mandate(page: Page, console: Served) -> None:
    with console.client("orchestrator") as orchestrator:
        opened = orchestrator.post(
            "/v1/traces",
            json={
                "mandate": {"text": "Pay acme-supplies", "bounds": {"spend_cap": 1000}},
                "principal": "agent:ops-bot",
            },
        )
    assert opened.status_code == 201, opened.text
    trace = opened.json()["trace_id"]
    payment = {
        "principal": "agent:ops-bot",
        "action": "pay_invoice",
        "args": {"to": "acme-supplies", "amount": 120, "currency": "EUR"},
    }
    open_lab(page, console, "auditor")
    dry_run(page, payment)  # no trace: no mandate, no spend cap
    expect(page.locator("#dry-effect")).to_have_text("deny")
    expect(page.locator("#dry-rules")).to_contain_text("payments-need-a-spend-cap")
    dry_run(page, payment, trace=trace)
    expect(page.locator("#dry-effect")).to_have_text("allow")
    expect(page.locator("#dry-facts")).to_contain_text("Pay acme-supplies")
    api = api_dry_run(console, {**payment, "trace_id": trace})
    assert api["effect"] == "allow"
    assert shown_rules(page) == [r["rule"] for r in api["reasons"]]
    shoot(page, "policy-lab")


def test_a_dry_run_under_the_candidate_uses_the_edited_bundle(page: Page, console: Served) -> None:
    open_lab(page, console, "auditor")
    editor = candidate(page)
    editor.fill(editor.input_value() + NO_WRITES)
    expect(page.get_by_text("(edited)")).to_be_visible()
    write = {
        "principal": "agent:ops-bot",
        "action": "write_file",
        "args": {"path": "x", "content": ""},
    }
    dry_run(page, write)
    expect(page.locator("#dry-effect")).to_have_text("allow")
    page.get_by_label("the candidate bundle").check()
    page.get_by_role("button", name="Evaluate (dry run)").click()
    expect(page.locator("#dry-effect")).to_have_text("deny")
    expect(page.locator("#dry-rules")).to_contain_text("Writes are frozen during the audit")
    page.get_by_role("button", name="Reset to the active bundle").click()
    expect(page.get_by_text("(edited)")).to_be_hidden()


def test_a_logged_decision_prefills_the_dry_run(page: Page, console: Served, made: Made) -> None:
    denied = made.deletes[0]
    login(page, console, "auditor", next_path=f"/console/policy?request_id={denied}")
    expect(page.locator("#prefill-note")).to_contain_text(denied)
    intent = json.loads(page.get_by_label("Intent (JSON)").input_value())
    assert intent["action"] == "delete_file"
    assert intent["principal"] == "agent:ops-bot"
    page.get_by_role("button", name="Evaluate (dry run)").click()
    expect(page.locator("#dry-effect")).to_have_text("deny")
    expect(page.locator("#dry-rules")).to_contain_text("no-deletes")


def test_bad_intent_json_is_named_not_a_crash(page: Page, console: Served) -> None:
    open_lab(page, console, "auditor")
    page.get_by_label("Intent (JSON)").fill('{"action": "read_file",')
    page.get_by_role("button", name="Evaluate (dry run)").click()
    expect(page.locator("#dry-result").get_by_role("alert")).to_contain_text(
        "the intent is not valid JSON"
    )


# --- impact analysis --------------------------------------------------------------------


def test_impact_of_a_stricter_bundle_lists_exactly_the_decisions_it_would_deny(
    page: Page, console: Served, made: Made
) -> None:
    size = log_size(console)
    digest = policies(console)["digest"]
    open_lab(page, console, "auditor")
    editor = candidate(page)
    editor.fill(editor.input_value() + NO_WRITES)
    page.get_by_label("Newest decisions to examine").fill("50")
    page.get_by_role("button", name="Run impact analysis").click()
    expect(page.locator("#impact-changed")).to_have_text(str(len(made.writes)))
    expect(page.locator("#impact-examined")).to_have_text(str(made.count))
    expect(page.locator("#impact-unchanged")).to_have_text(str(made.count - len(made.writes)))
    expect(page.locator("#impact-unverifiable")).to_have_text("0")
    rows = page.locator("#impact-changes tbody tr")
    expect(rows).to_have_count(len(made.writes))
    listed = rows.locator("td:first-child a").all_inner_texts()
    assert sorted(listed) == sorted(made.writes)
    for request_id in made.writes:
        link = page.get_by_role("link", name=request_id)
        assert link.get_attribute("href") == f"/console/requests/{request_id}"
    for row in rows.all():
        expect(row).to_contain_text("allow → deny")
    assert table(page, "#by-transition") == {"allow → deny": str(len(made.writes))}
    assert table(page, "#by-action") == {"write_file": str(len(made.writes))}
    assert table(page, "#by-candidate-rule") == {"no-writes": str(len(made.writes))}
    assert table(page, "#by-logged-rule") == {"files-in-sandbox": str(len(made.writes))}
    shoot(page, "impact")
    assert log_size(console) == size  # the analysis appended nothing
    assert policies(console)["digest"] == digest


def table(page: Page, selector: str) -> dict[str, str]:
    cells = page.locator(f"{selector} tbody tr")
    return {
        row.locator("td").nth(0).inner_text(): row.locator("td").nth(1).inner_text()
        for row in cells.all()
    }


def test_impact_input_errors_are_clear(auditor: tuple[httpx.Client, str], made: Made) -> None:
    client, csrf = auditor
    headers = {"X-CSRF-Token": csrf}
    good = {"agent.yaml": "version: 1\nrules: []\n"}
    for body, words in (
        ({"files": good, "last": 0}, "last"),
        ({"files": good, "last": 10**6}, "last"),
        ({"files": good, "last": "ten"}, "last"),
        ({"files": {"../x.yaml": "version: 1\n"}}, "files"),
        ({"files": {"a.yaml": "version: 1\nrules: [{id: x, effect: maybe}]\n"}}, "effect"),
        ({"files": {"a.yaml": "version: [\n"}}, "a.yaml"),
    ):
        response = client.post("/console/api/policy/impact", json=body, headers=headers)
        assert response.status_code == 422, response.text
        assert words in response.json()["error"]["message"] + str(response.json()["error"])
    everything = client.post("/console/api/policy/impact", json={"files": good}, headers=headers)
    assert everything.status_code == 200, everything.text
    assert everything.json()["counts"]["changed"] == made.count  # default-deny for all five


# --- validation and activation ----------------------------------------------------------


def test_an_admin_activates_an_edited_bundle_and_the_history_shows_its_diff(
    page: Page, console: Served, made: Made
) -> None:
    """(``made``: the decisions logged the example bundle, the activation to diff against.)"""
    before = policies(console)
    open_lab(page, console, "admin")
    editor = candidate(page)
    edited = editor.input_value().replace(
        "message: Agents never delete files", "message: Agents never delete files (audit)"
    )
    assert edited != editor.input_value()
    editor.fill(edited)
    page.get_by_role("button", name="Validate").click()
    expect(page.locator("#validate-ok")).to_contain_text("The candidate loads")
    assert policies(console)["digest"] == before["digest"]  # validating changes nothing
    page.get_by_role("button", name="Activate…").click()
    page.get_by_role("button", name="Activate now").click()
    expect(page.locator("#activated-notice")).to_be_visible()
    after = policies(console)
    assert after["digest"] != before["digest"]
    assert len(after["activations"]) == len(before["activations"]) + 1
    expect(page.locator("#active-digest")).to_have_text(after["digest"])
    newest = page.locator("#history tbody tr").first
    expect(newest).to_contain_text(after["digest"])
    expect(newest).to_contain_text("active")
    page.get_by_role("link", name="See what changed").click()
    diff = page.locator("#diff")
    expect(diff.locator(".add")).to_contain_text(["Agents never delete files (audit)"])
    expect(
        diff.locator(".del").filter(has_text="message: Agents never delete files")
    ).to_have_count(1)
    expect(page.locator("#added")).to_have_text("+1")
    expect(page.locator("#removed")).to_have_text("−1")
    shoot(page, "policy-diff")
    # The gate decides with it now: the API's dry run shows the new message.
    api = api_dry_run(
        console, {"principal": "agent:ops-bot", "action": "delete_file", "args": {"path": "x"}}
    )
    assert api["reasons"][0]["message"] == "Agents never delete files (audit)"


def test_a_bad_bundle_shows_the_loaders_message_and_changes_nothing(
    page: Page, console: Served
) -> None:
    digest = policies(console)["digest"]
    size = log_size(console)
    open_lab(page, console, "admin")
    editor = candidate(page)
    editor.fill(editor.input_value().replace("effect: deny", "effect: maybe", 1))
    page.get_by_role("button", name="Validate").click()
    alert = page.locator("#admin-result").get_by_role("alert")
    expect(alert).to_contain_text("the candidate bundle was refused")
    expect(alert).to_contain_text("agent.yaml")
    page.get_by_role("button", name="Activate…").click()
    page.get_by_role("button", name="Activate now").click()
    expect(alert).to_contain_text("the bundle was refused")
    assert policies(console)["digest"] == digest
    assert log_size(console) == size
    expect(page.locator("#active-digest")).to_have_text(digest)


def test_a_stale_editor_cannot_overwrite_a_newer_activation(
    admin: tuple[httpx.Client, str], console: Served
) -> None:
    client, csrf = admin
    digest = policies(console)["digest"]
    stale = client.post(
        "/console/api/policy/activate",
        json={"files": active_files(console), "based_on": "sha256:" + "0" * 64},
        headers={"X-CSRF-Token": csrf},
    )
    assert stale.status_code == 409, stale.text
    assert "reload" in stale.json()["error"]["message"]
    assert policies(console)["digest"] == digest


# --- CSRF, sessions, bad input ----------------------------------------------------------


def test_every_post_needs_the_csrf_header_and_a_session(
    admin: tuple[httpx.Client, str], console: Served
) -> None:
    client, csrf = admin
    files = active_files(console)
    bodies = {
        "evaluate": {"intent": "{}"},
        "impact": {"files": files},
        "validate": {"files": files},
        "activate": {"files": files},
    }
    for name, body in bodies.items():
        path = f"/console/api/policy/{name}"
        for headers in ({}, {"X-CSRF-Token": "not-the-token"}):
            refused = client.post(path, json=body, headers=headers)
            assert refused.status_code == 403, (name, refused.text)
        anonymous = httpx.post(console.url + path, json=body, headers={"X-CSRF-Token": csrf})
        assert anonymous.status_code == 401, (name, anonymous.text)
    page = httpx.get(console.url + "/console/policy", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"].startswith("/console/login")


def test_bad_dry_run_input_is_a_clear_4xx(auditor: tuple[httpx.Client, str]) -> None:
    client, csrf = auditor
    headers = {"X-CSRF-Token": csrf}
    for body, status, words in (
        ({"intent": "[1, 2]"}, 422, "must be a JSON object"),
        ({"intent": '{"action": "a", "action": "b"}'}, 422, "not valid JSON"),
        ({"intent": '{"action": NaN}'}, 422, "not valid JSON"),
        ({"intent": '{"action": "read_file", "acton": 1}'}, 422, "intent.acton"),
        ({"intent": '{"action": "read file"}'}, 422, "intent.action"),
        ({"intent": '{"action": "read_file"}', "trace_id": "no such trace"}, 422, "trace_id"),
        ({"intent": '{"action": "read_file"}', "files": {"a.yaml": "rules: 1"}}, 422, "refused"),
    ):
        response = client.post("/console/api/policy/evaluate", json=body, headers=headers)
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert words in error["message"] + " " + str(error.get("field")), error
    not_json = client.post(
        "/console/api/policy/evaluate",
        content=b"{not json",
        headers={**headers, "Content-Type": "application/json"},
    )
    assert not_json.status_code in (400, 422), not_json.text
    missing = client.get("/console/policy/activations/999999")
    assert missing.status_code == 404
    assert "no policy activation" in missing.text


def test_the_lab_reads_at_phone_width(page: Page, console: Served) -> None:
    page.set_viewport_size({"width": 375, "height": 800})
    open_lab(page, console, "auditor")
    widest = page.evaluate("document.documentElement.scrollWidth")
    assert widest <= 375, widest
    page.get_by_role("button", name="Evaluate (dry run)").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#dry-effect")).to_have_text("allow")  # the prefilled example
