"""In process, no socket: the error contract on a bare FastAPI app (unexpected exceptions
are 500 ``internal``, logged and never shown; every code has its status), and the public
app before it has started (docs/http-api.md "Conventions")."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from clearance._internal.server.errors import CODES, ApiError, field_of, install_error_handlers
from clearance.errors import InputError, LedgerError
from clearance.server import create_app
from tests.integration.server.support import make_home


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals /etc/passwd")

    @app.get("/ledger")
    def ledger() -> None:
        raise LedgerError("disk full")

    return app


def _get(path: str) -> httpx.Response:
    """GET ``path`` from :func:`_app` in process (an ASGI transport, no socket)."""

    async def fetch() -> httpx.Response:
        transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            return await client.get(path)

    return asyncio.run(fetch())


def test_an_unexpected_exception_is_500_internal_logged_and_not_shown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="clearance.server"):
        response = _get("/boom")
    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": "internal", "message": "internal error; the gateway logged it"}
    }
    assert "secret" not in response.text
    assert any("secret internals" in str(r.exc_info) for r in caplog.records)


def test_infrastructure_errors_are_503_unavailable() -> None:
    response = _get("/ledger")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "unavailable"


def test_codes_and_fields() -> None:
    assert CODES["payload_too_large"] == 413
    assert ApiError("rate_limited", "slow down").status == 429
    with pytest.raises(ValueError, match="unknown error code"):
        ApiError("teapot", "no")
    assert field_of("args.amount: integer outside the range", "intent.") == "intent.args.amount"
    assert field_of("action 'x y' is invalid") == "action"
    assert field_of("something else entirely") is None


def test_the_public_app_answers_503_until_it_has_started(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    app = create_app(home)  # not started: no lifespan has run, nothing is open

    async def fetch() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            return [
                await client.get("/readyz"),
                await client.get("/v1/policies", headers={"Authorization": "Bearer x"}),
                await client.get("/openapi.json"),
            ]

    ready, policies, openapi = asyncio.run(fetch())
    assert ready.status_code == 503
    assert ready.json() == {"status": "unavailable", "checks": {"server": "starting or stopping"}}
    assert policies.status_code == 503
    assert policies.json()["error"]["code"] == "unavailable"
    assert openapi.json()["info"]["title"] == "clearance runtime API"
    with pytest.raises(InputError, match="no clearance home"):
        create_app(tmp_path / "nowhere")
