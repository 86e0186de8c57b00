"""The health dashboard, in Chromium and over HTTP, against a real server.

The module's server has the default settings (a public health page); a second server
with ``server.console.public_health: false`` checks the login requirement.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import login, shoot
from tests.integration.server.conftest import open_trace
from tests.integration.server.support import KEYS, Served, serve

REFRESH_TIMEOUT = 12_000
"""Milliseconds a live value has to change: a few refresh periods of the page (3 s)."""


@pytest.fixture(scope="module")
def private_console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A server whose health page needs a login."""
    served = serve(
        tmp_path_factory.mktemp("private") / "home",
        {"server": {"console": {"public_health": False}}},
    )
    try:
        yield served
    finally:
        served.stop()


def _decide(console: Served, allowed: int, denied: int) -> None:
    """``allowed`` sandbox reads and ``denied`` deletes, as the agent."""
    with console.client("agent") as agent:
        for n in range(allowed):
            reply = agent.post(
                "/v1/authorize", json={"action": "read_file", "args": {"path": f"n{n}.txt"}}
            )
            assert reply.status_code == 200, reply.text
        for _ in range(denied):
            reply = agent.post(
                "/v1/authorize", json={"action": "delete_file", "args": {"path": "notes.txt"}}
            )
            assert reply.status_code == 403, reply.text


def _health(console: Served) -> dict[str, Any]:
    reply = httpx.get(f"{console.url}/console/api/health")
    assert reply.status_code == 200, reply.text
    document = reply.json()
    assert isinstance(document, dict)
    return document


def _window(document: dict[str, Any], minutes: int) -> dict[str, Any]:
    found = next(w for w in document["decisions"] if w["minutes"] == minutes)
    assert isinstance(found, dict)
    return found


def test_the_dashboard_refreshes_its_numbers_without_a_reload(page: Page, console: Served) -> None:
    page.goto(f"{console.url}/console/health")
    expect(page.get_by_role("heading", name="Health", exact=True)).to_be_visible()
    expect(page.locator("#checkpoint-verifies")).to_have_text("verifies")
    expect(page.locator("#checkpoint-age")).to_have_text(re.compile(r"^\d+ (s|min) ago$"))
    expect(page.locator("#store-ready")).to_have_text("ready")
    expect(page.locator("#store-checks li")).to_have_count(3)
    before = _health(console)
    size_before = page.locator("#ledger-size").inner_text()
    assert size_before == str(before["ledger"]["size"])
    page.evaluate("window.__notReloaded = true")

    _decide(console, allowed=3, denied=1)

    last15 = _window(before, 15)
    count = last15["count"] + 4
    deny_rate = math.floor((last15["deny"] + 1) / count * 100 + 0.5)
    expect(page.locator("#decisions-15-count")).to_have_text(str(count), timeout=REFRESH_TIMEOUT)
    expect(page.locator("#decisions-15-deny-rate")).to_have_text(f"{deny_rate}%")
    expect(page.locator("#ledger-size")).not_to_have_text(size_before)
    assert int(page.locator("#ledger-size").inner_text()) >= int(size_before) + 4
    expect(page.locator("#decisions-1-rate")).to_have_text(re.compile(r"^\d+\.\d\d/s$"))
    expect(page.locator("#latency-p50")).to_have_text(re.compile(r"^\d+\.\d ms$"))
    expect(page.locator("#latency-p99")).to_have_text(re.compile(r"^\d+\.\d ms$"))
    assert page.evaluate("window.__notReloaded") is True
    shoot(page, "health")


def test_the_health_api_has_the_documented_shape(console: Served) -> None:
    _decide(console, allowed=1, denied=0)
    document = _health(console)
    assert set(document) == {
        "at",
        "ledger",
        "checkpoint",
        "decisions",
        "latency",
        "spool_depth",
        "approvals_pending",
        "store",
        "keys",
    }
    assert document["ledger"]["size"] >= 1
    checkpoint = document["checkpoint"]
    assert set(checkpoint) == {"size", "verifies", "problem", "age_seconds"}
    assert checkpoint["verifies"] is True
    assert checkpoint["problem"] is None
    assert 1 <= checkpoint["size"] <= document["ledger"]["size"]
    assert checkpoint["age_seconds"] >= 0
    assert [w["minutes"] for w in document["decisions"]] == [1, 5, 15]
    for window in document["decisions"]:
        assert window["count"] == window["allow"] + window["deny"] + window["approval_required"]
        assert window["count"] >= 1
        per_second = window["count"] / window["covers_seconds"]  # covers_seconds is rounded
        assert window["per_second"] == pytest.approx(per_second, rel=0.05)
        assert window["deny_rate"] == pytest.approx(window["deny"] / window["count"])
    latency = document["latency"]
    assert latency["minutes"] == 5
    assert latency["samples"] >= 1
    assert 0 < latency["p50_ms"] <= latency["p99_ms"]
    assert document["spool_depth"] == 0
    assert document["store"] == {
        "ready": True,
        "checks": {"ledger": "ok", "policy": "ok", "signing_key": "ok"},
    }
    # The key ids are the published ones: the JWKS's kids and the vkey's key id.
    jwks = httpx.get(f"{console.url}/.well-known/jwks.json").json()
    keys = document["keys"]
    assert [k["kid"] for k in keys["grant"]] == [k["kid"] for k in jwks["keys"]]
    assert sum(k["active"] for k in keys["grant"]) == 1
    assert keys["grant_problem"] is None
    vkey = httpx.get(f"{console.url}/v1/log/vkey").text.strip()
    name, key_id, _ = vkey.split("+", 2)
    assert keys["log"] == {"name": name, "key_id": key_id}
    # The same gauges as /metrics.
    metrics = httpx.get(f"{console.url}/metrics").text
    pending = re.search(r"^clearance_approvals_pending (\S+)$", metrics, re.MULTILINE)
    assert pending is not None
    assert document["approvals_pending"] == int(float(pending.group(1)))


def test_the_public_page_names_no_principal_key_or_intent(console: Served) -> None:
    with console.client("orchestrator") as orchestrator:
        trace_id = open_trace(orchestrator, "agent:ops-bot")
    with console.client("agent") as agent:
        pending = agent.post(
            "/v1/authorize",
            json={
                "action": "pay_invoice",
                "args": {"to": "acme-supplies", "amount": 600.0, "currency": "EUR"},
                "trace_id": trace_id,
            },
        )
    assert pending.status_code == 202, pending.text
    request_id = pending.json()["request_id"]
    _decide(console, allowed=1, denied=1)
    page_text = httpx.get(f"{console.url}/console/health").text
    data_text = httpx.get(f"{console.url}/console/api/health").text
    assert _health(console)["approvals_pending"] >= 1
    secrets = [principal for _, principal in KEYS.values()]
    secrets += [f"clk_{token.split('_')[1]}" for token in console.keys.values()]
    secrets += [f'"{name}"' for name in console.keys] + [f">{name}<" for name in console.keys]
    secrets += ["pay_invoice", "read_file", "acme-supplies", trace_id, request_id]
    for text in (page_text, data_text):
        leaked = [secret for secret in secrets if secret in text]
        assert not leaked, leaked


def test_a_private_health_page_needs_a_login(page: Page, private_console: Served) -> None:
    url = private_console.url
    page_reply = httpx.get(f"{url}/console/health", follow_redirects=False)
    assert page_reply.status_code == 303
    assert page_reply.headers["location"] == "/console/login?next=%2Fconsole%2Fhealth"
    api_reply = httpx.get(f"{url}/console/api/health")
    assert api_reply.status_code == 401
    assert api_reply.json()["error"]["code"] == "unauthenticated"
    login_page = httpx.get(f"{url}/console/login").text
    assert 'href="/console/health"' not in login_page  # not offered to anonymous visitors

    page.goto(f"{url}/console/health")
    expect(page).to_have_url(re.compile(r"/console/login\?next="))
    # Any scope will do: the agent key has no console page but this one.
    page.get_by_label("API key").fill(private_console.keys["agent"])
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/console/health$"))
    expect(page.locator("#checkpoint-verifies")).to_have_text("verifies")
    expect(page.get_by_role("navigation").get_by_role("link", name="Health")).to_be_visible()


def test_the_public_page_is_listed_for_anonymous_visitors(console: Served) -> None:
    assert 'href="/console/health"' in httpx.get(f"{console.url}/console/login").text


def test_the_inbox_link_follows_the_scopes(page: Page, console: Served) -> None:
    login(page, console, "approver", next_path="/console/health")
    expect(page.get_by_role("link", name="Open the inbox")).to_be_visible()
    page.context.clear_cookies()
    page.goto(f"{console.url}/console/health")
    expect(page.locator("#approvals-pending")).to_be_visible()
    expect(page.get_by_role("link", name="Open the inbox")).to_have_count(0)


def test_the_dashboard_fits_a_phone(page: Page, console: Served) -> None:
    page.set_viewport_size({"width": 375, "height": 800})
    page.goto(f"{console.url}/console/health")
    expect(page.locator("#checkpoint-verifies")).to_have_text("verifies")
    overflow = page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= 375, f"the page is {overflow} px wide at a 375 px viewport"


def test_a_plain_server_offers_no_demo_page(page: Page, console: Served) -> None:
    """This module's server is a plain ``clearance serve``: no runtime demo (404 to all)."""
    assert httpx.get(f"{console.url}/console/demo").status_code == 404
    assert httpx.post(f"{console.url}/console/api/demo/steps/1").status_code == 404
    login(page, console, "admin", next_path="/console/me")
    navigation = page.get_by_role("navigation", name="Console")
    expect(navigation.get_by_role("link", name="Health")).to_be_visible()
    expect(navigation.get_by_role("link", name="Demo")).to_have_count(0)
    shown = page.goto(f"{console.url}/console/demo")
    assert shown is not None
    assert shown.status == 404
    expect(page.get_by_role("heading", name="No demo on this server")).to_be_visible()
    csrf = page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert csrf
    posted = page.request.post(
        f"{console.url}/console/api/demo/steps/1", headers={"X-CSRF-Token": csrf}
    )
    assert posted.status == 404
