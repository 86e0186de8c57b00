"""Fixtures of the server tests: one real server per module (see :mod:`.support`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.server.support import Served, serve


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Served]:
    """A server over a fresh home; a module may set ``SERVER_SETTINGS`` for clearance.yaml."""
    settings: dict[str, Any] = getattr(request.module, "SERVER_SETTINGS", {})
    served = serve(tmp_path_factory.mktemp("server") / "home", settings)
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture(scope="module")
def clients(server: Served) -> Iterator[dict[str, httpx.Client]]:
    """An httpx client per key name, plus ``anonymous`` (no key)."""
    made = {name: server.client(name) for name in server.keys}
    made["anonymous"] = server.client()
    try:
        yield made
    finally:
        for client in made.values():
            client.close()


def open_trace(orchestrator: httpx.Client, principal: str, spend_cap: float = 1000) -> str:
    """Open a trace for ``principal`` with a spend cap; returns its id."""
    response = orchestrator.post(
        "/v1/traces",
        json={
            "mandate": {
                "text": "Pay the invoices from acme-supplies",
                "bounds": {"spend_cap": spend_cap},
            },
            "principal": principal,
        },
    )
    assert response.status_code == 201, response.text
    trace_id = response.json()["trace_id"]
    assert isinstance(trace_id, str)
    return trace_id
