"""Logging in and out of the console, in Chromium, against a real server."""

from __future__ import annotations

import time

import httpx
from playwright.sync_api import Browser, Page

from tests.browser.conftest import login, shoot
from tests.integration.server.support import Served, clearance_command, create_keys


def test_login_sets_a_strict_http_only_session_cookie(page: Page, console: Served) -> None:
    login(page, console, "auditor", next_path="/console/me")
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["clearance_console"]
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Strict"
    assert session["path"] == "/console"
    assert console.keys["auditor"] not in session["value"]
    assert "user:carol" in page.locator("header .who").inner_text()


def test_a_wrong_key_is_refused_with_one_message(page: Page, console: Served) -> None:
    page.goto(f"{console.url}/console/login")
    page.get_by_label("API key").fill("clk_0000000000000000_" + "A" * 43)
    page.get_by_role("button", name="Log in").click()
    assert "not valid" in page.get_by_role("alert").inner_text()
    assert not [c for c in page.context.cookies() if c["name"] == "clearance_console"]


def test_logout_ends_the_session_on_the_server(page: Page, console: Served) -> None:
    login(page, console, "auditor", next_path="/console/me")
    session = next(c for c in page.context.cookies() if c["name"] == "clearance_console")
    page.get_by_role("button", name="Log out").click()
    page.wait_for_load_state("load")
    assert page.url.endswith("/console/login"), page.url + page.inner_text("main")
    replayed = httpx.get(
        f"{console.url}/console",
        cookies={"clearance_console": session["value"]},
        follow_redirects=False,
    )
    assert replayed.status_code == 303
    assert replayed.headers["location"] == "/console/login"


def test_console_pages_carry_a_strict_content_security_policy(console: Served) -> None:
    response = httpx.get(f"{console.url}/console/login")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "default-src 'none'" in policy
    assert "unsafe-inline" not in policy
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"


def test_anonymous_visitors_are_sent_to_login_and_brought_back(page: Page, console: Served) -> None:
    page.goto(f"{console.url}/console/me")
    assert "/console/login?next=%2Fconsole%2Fme" in page.url
    page.get_by_label("API key").fill(console.keys["approver"])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/console/me")
    assert "user:bob" in page.locator("main").inner_text()


def test_a_revoked_key_ends_its_sessions_at_once(page: Page, console: Served) -> None:
    specs = {"short-lived": (("auditor",), "user:dave")}
    console.keys.update(create_keys(console.home, specs))
    login(page, console, "short-lived", next_path="/console/me")
    revoked = clearance_command("api-keys", "revoke", "short-lived", "--home", str(console.home))
    assert revoked.returncode == 0, revoked.stderr
    time.sleep(1.1)  # the key cache's second
    page.goto(f"{console.url}/console/me")
    assert "/console/login" in page.url


def test_logout_without_the_csrf_token_is_refused(page: Page, console: Served) -> None:
    login(page, console, "auditor", next_path="/console/me")
    session = next(c for c in page.context.cookies() if c["name"] == "clearance_console")
    forged = httpx.post(
        f"{console.url}/console/logout",
        cookies={"clearance_console": session["value"]},
        data={"csrf_token": "guessed"},
        follow_redirects=False,
    )
    assert forged.status_code == 403
    page.goto(f"{console.url}/console/me")
    assert page.url.endswith("/console/me")  # still logged in


def test_a_login_post_without_the_form_token_is_refused(console: Served) -> None:
    response = httpx.post(
        f"{console.url}/console/login",
        data={"api_key": console.keys["admin"], "login_token": "x", "next": "/console"},
        follow_redirects=False,
    )
    assert response.status_code == 403
    assert "clearance_console" not in response.cookies


def test_the_console_reads_well_at_phone_width(browser: Browser, console: Served) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 740})
    try:
        phone = context.new_page()
        phone.goto(f"{console.url}/console/login")
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 375
        shoot(phone, "login-phone")
    finally:
        context.close()
