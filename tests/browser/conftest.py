"""Fixtures of the console's browser tests: real Chromium, a real ``clearance serve``.

Playwright drives Debian's ``chromium`` through ``executable_path`` (``make`` installs
it with apt when missing); no browser build is ever downloaded. When Chromium is
missing the tests fail, naming the fix: they never skip.

Each test module gets one server (``console``) over a fresh home with one key per
scope (:data:`tests.integration.server.support.KEYS`); each test gets a fresh browser
context (no cookies shared between tests). :func:`shoot` saves a screenshot under
``.artifacts/screenshots`` (the README shows copies of them from ``docs/screenshots``).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from tests.integration.server.support import Served, serve

SCREENSHOTS = Path(__file__).resolve().parents[2] / ".artifacts" / "screenshots"
CHROMIUM_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_path() -> str:
    """Debian's chromium; AssertionError naming the fix when it is missing."""
    found = os.environ.get("CLEARANCE_CHROMIUM") or shutil.which("chromium")
    if found is None and Path("/usr/bin/chromium").exists():
        found = "/usr/bin/chromium"
    assert found, "chromium is not installed: `make test` installs it (apt-get install chromium)"
    return found


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Playwright's driver, for one test module at a time: its sync API keeps an asyncio
    loop marked running in the thread while it lives, which would break every later test
    in the same worker that starts a loop of its own (``asyncio.run``, anyio)."""
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = playwright.chromium.launch(
        executable_path=chromium_path(), headless=True, args=list(CHROMIUM_FLAGS)
    )
    try:
        yield launched
    finally:
        launched.close()


@pytest.fixture(scope="module")
def console(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Served]:
    """A server over a fresh home; a module may set ``SERVER_SETTINGS`` for clearance.yaml."""
    settings: dict[str, Any] = getattr(request.module, "SERVER_SETTINGS", {})
    served = serve(tmp_path_factory.mktemp("console") / "home", settings)
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page in a fresh context (its own cookies), at a laptop's width."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(10_000)
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(str(error)))
    try:
        yield opened
    finally:
        context.close()
    assert not problems, f"the page raised JavaScript errors: {problems}"


def login(page: Page, served: Served, key: str, *, next_path: str | None = None) -> None:
    """Log in to the console of ``served`` with its key named ``key``."""
    target = f"{served.url}/console/login"
    if next_path is not None:
        target += f"?next={next_path}"
    page.goto(target)
    page.get_by_label("API key").fill(served.keys[key])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state("load")
    assert "/console/login" not in page.url, page.content()[:2000]


def shoot(page: Page, name: str) -> Path:
    """Save a full-page screenshot ``name``.png under .artifacts/screenshots."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def session(served: Served, key: str) -> tuple[httpx.Client, str]:
    """An httpx client logged in to the console with key ``key``, and its CSRF token."""
    client = httpx.Client(base_url=served.url, follow_redirects=False, timeout=30)
    form = client.get("/console/login")
    token = re.search(r'name="login_token" value="([^"]+)"', form.text)
    assert token is not None, form.text
    done = client.post(
        "/console/login",
        data={"api_key": served.keys[key], "login_token": token.group(1), "next": "/console/me"},
    )
    assert done.status_code == 303, done.text
    me = client.get("/console/me")
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', me.text)
    assert csrf is not None
    assert csrf.group(1)
    return client, csrf.group(1)
