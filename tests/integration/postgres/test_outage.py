"""A gateway on PostgreSQL through an outage: fail closed, recover, lose nothing.

issue 12, "Fault tests": the database goes away in the middle of a load. Requests made
while it is away are refused with a clear error (never a grant, never a 500); the
gateway recovers by itself once the database answers again; every authorization that
was acknowledged (200 with a grant) is in the log afterwards.

Two outages: a real restart of a PostgreSQL server (a private one, made for the test,
because the machine's server is shared with other test workers; stopped in
``immediate`` mode, as a crash, and recovered from its WAL), and a network cut on the
gateway's own connections to the shared server (a TCP proxy that the test cuts: every
open connection reset, new ones refused; then restored on the same port).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from clearance._internal.home import DATABASE_ENV, Home
from clearance._internal.wiring import open_ledger
from tests.integration.postgres.private_server import private_server
from tests.integration.postgres.tcp_proxy import proxy_to
from tests.integration.server.support import KEYS, Served, create_keys, free_port, make_home

INTENT = {"action": "read_file", "args": {"path": "reports/q1.txt"}, "purpose": "outage test"}


def test_a_gateway_fails_closed_while_its_network_is_cut_and_recovers(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with proxy_to(pg_url) as proxy:
        _through_an_outage(tmp_path, proxy.via(pg_url), proxy.cut, proxy.restore, monkeypatch)


def test_a_gateway_survives_a_real_restart_of_postgresql(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with private_server() as server:
        _through_an_outage(tmp_path, server.url, server.crash, server.start, monkeypatch)


def _through_an_outage(
    tmp_path: Path,
    url: str,
    cut: Callable[[], None],
    restore: Callable[[], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Authorize from four clients; ``cut`` the database mid-load, ``restore`` it."""
    monkeypatch.setenv(DATABASE_ENV, url)
    unlimited = {"rate_limit": {"per_second": 1_000_000, "burst": 1_000_000}}
    home = make_home(tmp_path / "home", {"durability": "durable", "server": unlimited})
    served = Served(home=home, port=free_port(), keys=create_keys(home, KEYS))
    served.start()
    acknowledged: list[str] = []
    refused: Counter[tuple[int, str]] = Counter()
    phase = {"name": "before"}
    stop = threading.Event()

    def agent() -> None:
        with served.client("agent") as client:
            while not stop.is_set():
                try:
                    answer = client.post("/v1/authorize", json=INTENT, timeout=15)
                except httpx.TransportError:
                    refused[(0, phase["name"])] += 1
                    continue
                if answer.status_code == 200 and answer.json().get("grant"):
                    acknowledged.append(answer.json()["request_id"])
                    continue
                body: dict[str, Any] = answer.json()
                assert answer.status_code != 500, body
                assert "error" in body, body
                refused[(answer.status_code, body["error"]["code"])] += 1

    agents = [threading.Thread(target=agent) for _ in range(4)]
    try:
        for thread in agents:
            thread.start()
        time.sleep(1.0)
        before = len(acknowledged)
        assert before > 0, (refused, served.log())
        phase["name"] = "outage"
        cut()
        time.sleep(1.0)
        during = len(acknowledged)
        time.sleep(1.0)
        assert len(acknowledged) - during <= 4  # nothing granted while it is away
        restore()
        phase["name"] = "after"
        deadline = time.monotonic() + 20
        while len(acknowledged) < during + 20 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(acknowledged) >= during + 20, f"no recovery: {refused}"
    finally:
        stop.set()
        for thread in agents:
            thread.join(timeout=30)
        assert served.stop() == 0, served.log()
    assert refused, "the outage refused nothing"
    answered = {(status, code) for status, code in refused if status != 0}
    assert {status for status, _ in answered} <= {403, 503}, refused
    assert {code for _, code in answered} <= {"denied", "unavailable"}, refused
    with open_ledger(Home.load(home)) as ledger:
        logged = {s.entry["request_id"] for s in ledger.scan() if s.entry["type"] == "decision"}
    missing = set(acknowledged) - logged
    assert not missing, f"{len(missing)} acknowledged decisions are not in the log"
