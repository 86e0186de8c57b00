"""The lean path of ``POST /v1/authorize`` answers exactly as the FastAPI route does.

Two apps on two fresh homes, one as served (with :class:`LeanAuthorize`) and one with
that middleware removed, get the same requests; each answer's status, error code, field
and effect must agree. A counter on the lean path shows it really answered the
well-formed requests (and handed the others on).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from clearance._internal.server import hot
from clearance._internal.server.app import create_app
from tests.integration.server.support import KEYS, create_keys, make_home

READ = {"action": "read_file", "resource": "file:r", "args": {"path": "reports/q1.txt"}}

CASES: list[tuple[str, str | None, dict[str, str], bytes]] = [
    ("allowed", "agent", {}, json.dumps(READ).encode()),
    ("denied", "agent", {}, json.dumps({**READ, "args": {"path": "/etc/passwd"}}).encode()),
    ("no key", None, {}, json.dumps(READ).encode()),
    ("wrong key", "clk_0000000000000000_nope", {}, json.dumps(READ).encode()),
    ("no agent scope", "auditor", {}, json.dumps(READ).encode()),
    ("other principal", "agent", {}, json.dumps({**READ, "principal": "agent:x"}).encode()),
    ("unknown trace", "agent", {}, json.dumps({**READ, "trace_id": "t0123"}).encode()),
    ("not JSON", "agent", {}, b"{not json"),
    ("duplicate member", "agent", {}, b'{"action": "read_file", "action": "delete_file"}'),
    ("bad field", "agent", {}, json.dumps({**READ, "action": 7}).encode()),
    ("unknown field", "agent", {}, json.dumps({**READ, "extra": 1}).encode()),
    ("a list", "agent", {}, b"[]"),
    ("text/plain", "agent", {"content-type": "text/plain"}, json.dumps(READ).encode()),
]


WELL_FORMED = {
    "allowed",
    "denied",
    "no key",
    "wrong key",
    "no agent scope",
    "other principal",
    "unknown trace",
}


async def _ask(
    client: httpx.AsyncClient,
    tokens: dict[str, str],
    key: str | None,
    headers: dict[str, str],
    body: bytes,
) -> tuple[int, Any]:
    sent = {"content-type": "application/json", **headers}
    if key is not None:
        sent["authorization"] = f"Bearer {tokens.get(key, key)}"
    response = await client.post("/v1/authorize", content=body, headers=sent)
    return response.status_code, response.json()


def _shape(status: int, body: Any) -> tuple[Any, ...]:
    error = body.get("error", {}) if isinstance(body, dict) else {}
    effect = body.get("effect") if isinstance(body, dict) else None
    return status, error.get("code"), error.get("field"), effect


def _minted_aside(body: dict[str, Any]) -> dict[str, Any]:
    """An allow body's intent without the trace id each home mints for itself."""
    return {k: v for k, v in body["intent"].items() if k != "trace_id"}


def _app(home: Path, lean: bool) -> tuple[FastAPI, dict[str, str]]:
    make_home(home)
    tokens = create_keys(home, KEYS)
    app = create_app(home)
    if not lean:
        lean_cls: object = hot.LeanAuthorize
        app.user_middleware = [m for m in app.user_middleware if m.cls is not lean_cls]
    return app, tokens


def test_the_lean_path_answers_as_the_route(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    answered: list[str] = []
    current = [""]
    original = hot._answer

    async def counting(request: Any, intent: Any) -> Any:
        answered.append(current[0])
        return await original(request, intent)

    monkeypatch.setattr(hot, "_answer", counting)
    lean_app, lean_tokens = _app(tmp_path / "lean", True)
    plain_app, plain_tokens = _app(tmp_path / "plain", False)

    async def run() -> list[str]:
        problems = []
        async with (
            lean_app.router.lifespan_context(lean_app),
            plain_app.router.lifespan_context(plain_app),
            httpx.AsyncClient(transport=httpx.ASGITransport(lean_app), base_url="http://t") as lc,
            httpx.AsyncClient(transport=httpx.ASGITransport(plain_app), base_url="http://t") as pc,
        ):
            for name, key, headers, body in CASES:
                current[0] = name
                lean_status, lean_body = await _ask(lc, lean_tokens, key, headers, body)
                plain_status, plain_body = await _ask(pc, plain_tokens, key, headers, body)
                if _shape(lean_status, lean_body) != _shape(plain_status, plain_body):
                    problems.append(
                        f"{name}: {lean_status} {lean_body} != {plain_status} {plain_body}"
                    )
                elif lean_status == 200 and _minted_aside(lean_body) != _minted_aside(plain_body):
                    problems.append(f"{name}: intents differ")
        return problems

    assert asyncio.run(run()) == []
    assert answered == [name for name, *_ in CASES if name in WELL_FORMED]
