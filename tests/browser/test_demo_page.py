"""``clearance demo`` serving the console, and its runtime demo page, in Chromium.

The module runs the real demo once, as ``make demo`` does on a terminal (its stdin is
a pseudo-terminal; without one the demo exits, as tests/integration/test_demo.py
checks): it prints the console's URL, an admin key and the approver's key, and serves
until Ctrl-C. The tests log in with the printed keys, run the demo page's steps
against the live gate, and the last one sends SIGINT and expects a clean exit.
That a plain ``clearance serve`` has no demo page is checked in test_health.py (whose
server is one), to start no extra server.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import login, shoot
from tests.integration.server.support import (
    Served,
    clearance_command,
    make_home,
)

START_TIMEOUT = 90.0
EXPECTED = {
    1: ("allow", "allowed"),
    2: ("deny", "denied"),
    3: ("deny", "denied"),
    4: ("approval_required", "approval required"),
    5: ("rejected", "refused"),
    6: ("rejected", "refused"),
}
"""Step -> the effect of its last call, and the badge the page shows for it."""


@dataclass
class RunningDemo:
    """A ``clearance demo`` serving the console, and what it printed."""

    process: subprocess.Popen[str]
    home: Path
    lines: list[str] = field(default_factory=list)
    url: str = ""
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def served(self) -> Served:
        """The console as the browser helpers address it (keys ``admin``, ``approver``)."""
        port = httpx.URL(self.url).port
        assert port is not None
        return Served(home=self.home, port=port, keys=dict(self.keys))

    def output(self) -> str:
        return "".join(self.lines)

    def read(self) -> None:
        """Collect the demo's output until it exits (a reader thread)."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def stop(self) -> int:
        """SIGINT (Ctrl-C), then wait; killed if it does not stop."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the demo ignored SIGINT:\n{self.output()[-3000:]}") from None


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDemo]:
    """``clearance demo`` on a fresh home, with a terminal, once it serves the console."""
    base = tmp_path_factory.mktemp("demo")
    terminal, child_end = os.openpty()
    env = {k: v for k, v in os.environ.items() if k != "CLEARANCE_HOME"}
    env["PYTHONUNBUFFERED"] = "1"
    process = subprocess.Popen(
        [sys.executable, "-m", "clearance", "demo", "--home", "demo-home"],
        cwd=base,
        env=env,
        stdin=child_end,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    os.close(child_end)
    running = RunningDemo(process, base / "demo-home")
    reader = threading.Thread(target=running.read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while "Press Ctrl-C" not in running.output():
            assert process.poll() is None, f"the demo exited:\n{running.output()[-3000:]}"
            assert time.monotonic() < deadline, f"no console yet:\n{running.output()[-3000:]}"
            time.sleep(0.1)
        text = running.output()
        found = re.search(r"^console\s+(http://127\.0\.0\.1:\d+)/console$", text, re.MULTILINE)
        assert found, text[-3000:]
        running.url = found.group(1)
        for role in ("admin", "approver"):
            key = re.search(rf"^{role} key\s+(clk_\S+)$", text, re.MULTILINE)
            assert key, text[-3000:]
            running.keys[role] = key.group(1)
        yield running
    finally:
        if process.poll() is None:
            running.stop()
        os.close(terminal)
        reader.join(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def _session(client: httpx.Client, key: str) -> str:
    """Log ``client`` in to the console with ``key``; returns the session's CSRF token."""
    form = client.get("/console/login").text
    token = re.search(r'name="login_token" value="([^"]+)"', form)
    assert token
    done = client.post(
        "/console/login", data={"api_key": key, "login_token": token.group(1), "next": "/console"}
    )
    assert done.status_code == 303, done.text
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/console/me").text)
    assert csrf
    assert csrf.group(1)
    return csrf.group(1)


def _client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=30.0)


def _bearer(demo: RunningDemo, role: str) -> httpx.Client:
    return httpx.Client(
        base_url=demo.url, headers={"Authorization": f"Bearer {demo.keys[role]}"}, timeout=30.0
    )


def test_the_demo_serves_its_decisions_an_approval_and_a_trace(demo: RunningDemo) -> None:
    with _bearer(demo, "approver") as approver:
        pending = approver.get("/v1/approvals", params={"status": "pending"})
    assert pending.status_code == 200, pending.text
    waiting = pending.json()["approvals"]
    assert [a["action"] for a in waiting] == ["pay_invoice"]  # act 1's freight payment
    with _bearer(demo, "admin") as admin:
        trace = admin.get(f"/v1/traces/{waiting[0]['trace_id']}")
        assert trace.status_code == 200, trace.text
        assert len(trace.json()["requests"]) >= 8
    with _client(demo.url) as console:
        _session(console, demo.keys["admin"])
        assert console.get("/console/demo").status_code == 200


def test_only_an_admin_is_offered_and_may_open_the_demo(page: Page, demo: RunningDemo) -> None:
    served = demo.served
    login(page, served, "approver", next_path="/console/approvals")
    navigation = page.get_by_role("navigation", name="Console")
    expect(navigation.get_by_role("link", name="Approvals")).to_be_visible()
    expect(navigation.get_by_role("link", name="Demo")).to_have_count(0)
    refused = page.goto(f"{demo.url}/console/demo")
    assert refused is not None
    assert refused.status == 403
    expect(page.get_by_role("alert")).to_contain_text("admin")

    page.context.clear_cookies()
    login(page, served, "admin", next_path="/console/me")
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Demo").click()
    expect(page.get_by_role("heading", name="Runtime demo")).to_be_visible()


def test_each_step_shows_its_effect_from_the_live_gate(page: Page, demo: RunningDemo) -> None:
    login(page, demo.served, "admin", next_path="/console/demo")
    page.get_by_role("button", name="Start a new trace").click()
    expect(page.locator("#demo-status")).to_contain_text("New trace")
    trace_id = page.locator("#trace-link").inner_text()
    for number, (effect, label) in EXPECTED.items():
        page.get_by_role("button", name=f"Run step {number}").click()
        result = page.locator(f"#step-{number} .result")
        expect(result).to_have_attribute("data-effect", effect)
        expect(result.locator(".call").last.locator(".badge")).to_have_text(label)
        expect(page.locator("#demo-status")).to_have_text(f"Step {number} done.")
    expect(page.locator("#step-2 .result")).to_contain_text("no-path-traversal")
    expect(page.locator("#step-3 .result")).to_contain_text(
        "no-ungrounded-payments-after-untrusted-input"
    )
    expect(page.locator("#step-4 .result")).to_contain_text("payments-over-cap-need-approval")
    expect(page.locator("#step-5 .result")).to_contain_text("bad signature")
    expect(page.locator("#step-6 .result")).to_contain_text("replayed")
    shoot(page, "demo")
    requests = '.result a[href^="/console/requests/"]'
    expect(page.locator(f"#step-5 {requests}")).to_have_count(0)  # a forgery decided nothing
    replayed = page.locator(f"#step-6 {requests}").last.get_attribute("href")
    assert replayed == page.locator(f"#step-1 {requests}").get_attribute("href")

    # The decisions are the live gate's: in the log, the trace and the inbox.
    denied = page.locator("#step-2 .result a", has_text="request ")
    href = denied.get_attribute("href")
    assert href is not None
    assert href.startswith("/console/requests/r")
    lineage = page.locator("#step-2 .result a", has_text="lineage")
    assert lineage.get_attribute("href") == f"/console/lineage/{trace_id}"
    with _bearer(demo, "admin") as admin:
        record = admin.get(f"/v1/requests/{href.rsplit('/', 1)[1]}").json()
        assert record["decision"]["effect"] == "deny"
        assert record["trace_id"] == trace_id
        listed = admin.get(f"/v1/traces/{trace_id}").json()["requests"]
    linked = page.locator('.result a[href^="/console/requests/"]')
    decided = {str(link.get_attribute("href")).rsplit("/", 1)[1] for link in linked.all()}
    assert len(decided) >= 5  # steps 1, 2, 3 (two calls) and 4; 5 and 6 decide nothing new
    assert {r["request_id"] for r in listed} == decided
    with _bearer(demo, "approver") as approver:
        pending = approver.get("/v1/approvals", params={"status": "pending"}).json()
    assert trace_id in [a["trace_id"] for a in pending["approvals"]]


def test_run_all_runs_every_step_in_a_new_trace(page: Page, demo: RunningDemo) -> None:
    login(page, demo.served, "admin", next_path="/console/demo")
    before = page.locator("#trace-link").inner_text()
    page.get_by_role("button", name="Run all steps in a new trace").click()
    expect(page.locator("#demo-status")).to_have_text("All 6 steps ran.", timeout=30_000)
    assert page.locator("#trace-link").inner_text() != before
    for number, (effect, _) in EXPECTED.items():
        expect(page.locator(f"#step-{number} .result")).to_have_attribute("data-effect", effect)


def test_a_step_needs_the_csrf_token_and_the_admin_scope(demo: RunningDemo) -> None:
    with _client(demo.url) as admin, _client(demo.url) as approver:
        csrf = _session(admin, demo.keys["admin"])
        approver_csrf = _session(approver, demo.keys["approver"])
        size = admin.get("/console/api/health").json()["ledger"]["size"]
        for headers in ({}, {"X-CSRF-Token": "not-the-token"}):
            refused = admin.post("/console/api/demo/steps/1", headers=headers)
            assert refused.status_code == 403, refused.text
            assert refused.json()["error"]["code"] == "forbidden"
        assert admin.post("/console/api/demo/trace").status_code == 403
        other_site = admin.post(
            "/console/api/demo/steps/1",
            headers={"X-CSRF-Token": csrf, "Origin": "https://elsewhere.example"},
        )
        assert other_site.status_code == 403
        scoped = approver.post("/console/api/demo/steps/1", headers={"X-CSRF-Token": approver_csrf})
        assert scoped.status_code == 403
        anonymous = httpx.post(f"{demo.url}/console/api/demo/steps/1")
        assert anonymous.status_code == 401
        assert admin.get("/console/api/health").json()["ledger"]["size"] == size  # nothing ran
        missing = admin.post("/console/api/demo/steps/7", headers={"X-CSRF-Token": csrf})
        assert missing.status_code == 404
        malformed = admin.post("/console/api/demo/steps/one", headers={"X-CSRF-Token": csrf})
        assert malformed.status_code == 422


def test_the_demo_page_fits_a_phone(page: Page, demo: RunningDemo) -> None:
    page.set_viewport_size({"width": 375, "height": 800})
    login(page, demo.served, "admin", next_path="/console/demo")
    expect(page.get_by_role("button", name="Run step 1")).to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"the page is {width} px wide at a 375 px viewport"


def test_serve_offers_the_demo_only_over_a_demo_home(tmp_path: Path) -> None:
    home = make_home(tmp_path / "plain")
    refused = clearance_command("serve", "--demo", "--home", str(home), "--port", "1")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "--demo serves only a home that `clearance demo` created" in refused.stderr


def test_ctrl_c_stops_the_demo_and_its_servers(demo: RunningDemo) -> None:
    """Last in the module: the fixture's demo is stopped as a person would stop it."""
    status = demo.stop()
    assert status == 0, demo.output()[-3000:]
    deadline = time.monotonic() + 10
    while "Stopped." not in demo.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "Stopped." in demo.output()
    assert "Traceback" not in demo.output()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{demo.url}/readyz", timeout=2.0)
