"""The grant guard against grants a real in-process gate signed (no gateway process).

Every refusal is proven from the tool's side: the handler's own call list stays empty.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from clearance import (
    Authorization,
    Gate,
    GrantClaims,
    GrantGuard,
    GrantGuardMiddleware,
    InputError,
    Intent,
    InvalidGrant,
    ToolRoute,
    grant_headers,
    init_home,
    keys_from_jwks,
    open_gate,
)
from clearance._internal.canonical import json_digest
from clearance._internal.grants.keys import GrantKeyRing
from clearance._internal.home import Home
from tests.integration.remote.asgi import TestClient

PAYMENT = {"to": "acme-supplies", "amount": 120, "currency": "EUR"}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    return init_home(tmp_path_factory.mktemp("guard") / "home", now=time.time())


@pytest.fixture(scope="module")
def gate(home: Home) -> Iterator[Gate]:
    opened = open_gate(home.path, principal="agent:ops-bot", durability="relaxed")
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def keys(home: Home) -> dict[str, Any]:
    return keys_from_jwks(GrantKeyRing.load(home.grant_key_dir).jwks(time.time()))


class Tool:
    """A small tool service: every call its handlers ran, with the raw body they saw."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []

    async def pay(self, request: Request) -> Response:
        raw = await request.body()
        self.calls.append(("pay", raw))
        return JSONResponse(
            {"paid": json.loads(raw)["amount"], "sha": hashlib.sha256(raw).hexdigest()}
        )

    async def account(self, request: Request) -> Response:
        raw = await request.body()
        self.calls.append((f"account:{request.path_params['account']}", raw))
        return JSONResponse({"ok": True})

    async def lookup(self, request: Request) -> Response:
        self.calls.append(("lookup", b""))
        return JSONResponse({"found": True})

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/pay", self.pay, methods=["POST"]),
                Route("/accounts/{account}/pay", self.account, methods=["POST"]),
                Route("/lookup", self.lookup, methods=["GET"]),
                Route("/health", self.health, methods=["GET"]),
            ]
        )


def make_guard(gate: Gate, keys: dict[str, Any], tmp_path: Path, **options: Any) -> GrantGuard:
    settings: dict[str, Any] = {
        "routes": {
            ("POST", "/pay"): "pay_invoice",
            ("POST", "/accounts/{account}/pay"): ToolRoute(
                "pay_invoice", resource="accounts/{account}"
            ),
            ("GET", "/lookup"): "read_file",
        },
        "issuer": gate.issuer,
        "audience": gate.audience,
        "replay": tmp_path / "replay.db",
        "keys": keys,
        **options,
    }
    return GrantGuard(**settings)


@pytest.fixture
def tool() -> Tool:
    return Tool()


@pytest.fixture
def guard(gate: Gate, keys: dict[str, Any], tmp_path: Path) -> Iterator[GrantGuard]:
    made = make_guard(gate, keys, tmp_path)
    yield made
    made.close()


@pytest.fixture
def http(tool: Tool, guard: GrantGuard) -> Iterator[TestClient]:
    with TestClient(GrantGuardMiddleware(tool.app(), guard=guard)) as client:
        yield client


def authorize(gate: Gate, args: dict[str, Any] = PAYMENT, **intent: Any) -> Authorization:
    with gate.trace("Pay acme-supplies for INV-7", bounds={"spend_cap": 1000}):
        return gate.authorize({"action": "pay_invoice", "args": args, **intent})


def refused(response: Any) -> bool:
    return bool(
        response.status_code == 403
        and response.json() == {"error": {"code": "invalid_grant", "message": "grant rejected"}}
    )


def test_a_grant_for_exactly_this_request_runs_the_handler_with_the_body_unchanged(
    gate: Gate, http: TestClient, tool: Tool
) -> None:
    auth = authorize(gate)
    raw = b'{ "currency": "EUR", "amount": 120.0,\n "to": "acme-supplies" }'  # any spelling
    response = http.post("/pay", content=raw, headers=grant_headers(auth.grant, auth.intent))
    assert response.status_code == 200
    assert response.json()["sha"] == hashlib.sha256(raw).hexdigest()
    assert tool.calls == [("pay", raw)]


def test_no_grant_is_refused_and_the_handler_does_not_run(http: TestClient, tool: Tool) -> None:
    response = http.post("/pay", json=PAYMENT)
    assert refused(response)
    assert response.headers["www-authenticate"] == "Clearance"
    assert tool.calls == []


def test_a_grant_for_other_arguments_is_refused(gate: Gate, http: TestClient, tool: Tool) -> None:
    auth = authorize(gate)
    response = http.post(
        "/pay", json={**PAYMENT, "amount": 121}, headers=grant_headers(auth.grant, auth.intent)
    )
    assert refused(response)
    assert tool.calls == []


def test_a_replayed_grant_is_refused_the_second_time(
    gate: Gate, http: TestClient, tool: Tool
) -> None:
    auth = authorize(gate)
    headers = grant_headers(auth.grant, auth.intent)
    assert http.post("/pay", json=PAYMENT, headers=headers).status_code == 200
    assert refused(http.post("/pay", json=PAYMENT, headers=headers))
    assert len(tool.calls) == 1


def test_the_replay_store_is_durable_across_guards(
    gate: Gate, keys: dict[str, Any], tmp_path: Path, tool: Tool
) -> None:
    auth = authorize(gate)
    headers = grant_headers(auth.grant, auth.intent)
    for expected in (200, 403):  # a restarted tool service, same replay store
        guard = make_guard(gate, keys, tmp_path)
        with TestClient(GrantGuardMiddleware(tool.app(), guard=guard)) as client:
            assert client.post("/pay", json=PAYMENT, headers=headers).status_code == expected
        guard.close()
    assert len(tool.calls) == 1


def test_an_expired_grant_is_refused(
    gate: Gate, keys: dict[str, Any], tmp_path: Path, tool: Tool
) -> None:
    auth = authorize(gate)
    late = make_guard(gate, keys, tmp_path, clock=lambda: time.time() + 61, leeway=0)
    with TestClient(GrantGuardMiddleware(tool.app(), guard=late)) as client:
        assert refused(
            client.post("/pay", json=PAYMENT, headers=grant_headers(auth.grant, auth.intent))
        )
    late.close()
    assert tool.calls == []


@pytest.mark.parametrize(
    "option", [{"audience": "other-audience"}, {"issuer": "clearance://elsewhere"}, {"keys": None}]
)
def test_the_wrong_issuer_audience_or_keys_refuse(
    gate: Gate, keys: dict[str, Any], tmp_path: Path, tool: Tool, option: dict[str, Any]
) -> None:
    if option.get("keys", True) is None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        from clearance._internal.grants.jwk import jwk_thumbprint

        other = Ed25519PrivateKey.generate().public_key()
        option = {"keys": {jwk_thumbprint(other): other}}
    auth = authorize(gate)
    guard = make_guard(gate, option.pop("keys", keys), tmp_path, **option)
    with TestClient(GrantGuardMiddleware(tool.app(), guard=guard)) as client:
        assert refused(
            client.post("/pay", json=PAYMENT, headers=grant_headers(auth.grant, auth.intent))
        )
    guard.close()
    assert tool.calls == []


def test_a_tampered_grant_is_refused(gate: Gate, http: TestClient, tool: Tool) -> None:
    auth = authorize(gate)
    header, payload, signature = auth.grant.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    response = http.post(
        "/pay", json=PAYMENT, headers=grant_headers(f"{header}.{payload}.{flipped}", auth.intent)
    )
    assert refused(response)
    assert tool.calls == []


def test_an_in_process_grant_is_not_accepted_by_a_tool(
    gate: Gate, http: TestClient, tool: Tool
) -> None:
    with (
        gate.trace("Pay acme-supplies", bounds={"spend_cap": 1000}),
        gate.clearance({"action": "pay_invoice", "args": PAYMENT}) as cleared,
    ):
        grant, intent = cleared.grant, cleared.authorization.intent
    assert refused(http.post("/pay", json=PAYMENT, headers=grant_headers(grant, intent)))
    assert tool.calls == []


def test_purpose_travels_percent_encoded(gate: Gate, http: TestClient, tool: Tool) -> None:
    purpose = " Pay INV-7 für ACME; 100% due "
    auth = authorize(gate, purpose=purpose)
    headers = grant_headers(auth.grant, auth.intent)
    assert headers["Clearance-Purpose"].isascii()
    assert refused(
        http.post("/pay", json=PAYMENT, headers={"Authorization": headers["Authorization"]})
    )
    assert http.post("/pay", json=PAYMENT, headers=headers).status_code == 200
    assert len(tool.calls) == 1


def test_resource_comes_from_the_route(gate: Gate, http: TestClient, tool: Tool) -> None:
    auth = authorize(gate, resource="accounts/A-1")
    headers = grant_headers(auth.grant, auth.intent)
    assert refused(http.post("/accounts/B-2/pay", json=PAYMENT, headers=headers))
    assert refused(http.post("/pay", json=PAYMENT, headers=headers))  # no resource there
    assert http.post("/accounts/A-1/pay", json=PAYMENT, headers=headers).status_code == 200
    assert [name for name, _ in tool.calls] == ["account:A-1"]


@pytest.mark.parametrize("path", ["/pay/", "/pay//", "/pay///"])
def test_other_spellings_of_a_protected_path_are_guarded(
    http: TestClient, tool: Tool, path: str
) -> None:
    response = http.post(path, json=PAYMENT, follow_redirects=False)
    assert refused(response)
    assert tool.calls == []


def test_head_is_guarded_like_get(http: TestClient, tool: Tool) -> None:
    assert http.head("/lookup").status_code == 403
    assert refused(http.get("/lookup"))
    assert tool.calls == []


def test_unprotected_routes_pass_through(http: TestClient) -> None:
    assert http.get("/health").json() == {"status": "ok"}


@pytest.mark.parametrize("raw", [b"[1, 2]", b"not json", b'{"a": 1, "a": 2}', b'{"n": 1e999}'])
def test_a_body_that_is_not_a_json_object_is_refused(
    gate: Gate, http: TestClient, tool: Tool, raw: bytes
) -> None:
    auth = authorize(gate)
    assert refused(http.post("/pay", content=raw, headers=grant_headers(auth.grant, auth.intent)))
    assert tool.calls == []


def test_an_oversized_body_is_413_and_nothing_runs(
    gate: Gate, keys: dict[str, Any], tmp_path: Path, tool: Tool
) -> None:
    small = make_guard(gate, keys, tmp_path, max_body=64)
    auth = authorize(gate)
    with TestClient(GrantGuardMiddleware(tool.app(), guard=small)) as client:
        response = client.post(
            "/pay",
            json={**PAYMENT, "memo": "x" * 100},
            headers=grant_headers(auth.grant, auth.intent),
        )
    small.close()
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert tool.calls == []


@pytest.mark.parametrize(
    "authorization",
    ["Bearer {grant}", "Clearance", "Clearance ", "{grant}"],
)
def test_malformed_authorization_headers_are_refused(
    gate: Gate, http: TestClient, tool: Tool, authorization: str
) -> None:
    auth = authorize(gate)
    headers = {"Authorization": authorization.format(grant=auth.grant)}
    assert refused(http.post("/pay", json=PAYMENT, headers=headers))
    assert tool.calls == []


def test_two_authorization_headers_are_refused(gate: Gate, http: TestClient, tool: Tool) -> None:
    auth = authorize(gate)
    value = f"Clearance {auth.grant}"
    response = http.post(
        "/pay", json=PAYMENT, headers=[("Authorization", value), ("Authorization", value)]
    )
    assert refused(response)
    assert tool.calls == []


def test_the_scheme_is_case_insensitive(gate: Gate, http: TestClient) -> None:
    auth = authorize(gate)
    response = http.post("/pay", json=PAYMENT, headers={"Authorization": f"clearance {auth.grant}"})
    assert response.status_code == 200


def test_grant_headers_refuses_an_intent_with_input() -> None:
    intent = Intent.create(principal="agent:a", action="x", input={"k": 1})
    with pytest.raises(InputError, match="input"):
        grant_headers("a.b.c", intent)
    with pytest.raises(InputError, match="JWT"):
        grant_headers("", Intent.create(principal="agent:a", action="x"))


# -- plain handlers --------------------------------------------------------------------


def test_protect_runs_a_plain_handler_only_for_its_grant(gate: Gate, guard: GrantGuard) -> None:
    seen: list[tuple[dict[str, Any], str]] = []

    @guard.protect("pay_invoice")
    def pay(args: dict[str, Any], claims: GrantClaims) -> dict[str, Any]:
        seen.append((args, claims.sub))
        return {"paid": args["amount"]}

    auth = authorize(gate)
    headers = grant_headers(auth.grant, auth.intent)
    with pytest.raises(InvalidGrant):
        pay(headers, json.dumps({**PAYMENT, "amount": 5}))
    assert seen == []
    assert pay(headers, json.dumps(PAYMENT).encode()) == {"paid": 120}
    with pytest.raises(InvalidGrant):
        pay(headers, json.dumps(PAYMENT))
    assert seen == [(PAYMENT, "agent:ops-bot")]
    assert pay.__name__ == "pay"


def test_protect_refuses_an_oversized_body_with_input_error(
    gate: Gate, keys: dict[str, Any], tmp_path: Path
) -> None:
    small = make_guard(gate, keys, tmp_path, max_body=10)

    @small.protect("pay_invoice")
    def pay(args: dict[str, Any], claims: GrantClaims) -> None:
        raise AssertionError("must not run")

    with pytest.raises(InputError, match="over 10 bytes"):
        pay({}, json.dumps(PAYMENT))
    small.close()


def test_protect_wraps_coroutine_handlers(gate: Gate, guard: GrantGuard) -> None:
    import anyio

    ran: list[str] = []

    @guard.protect("pay_invoice")
    async def pay(args: dict[str, Any], claims: GrantClaims) -> str:
        ran.append(claims.rid)
        return "paid"

    auth = authorize(gate)
    headers = grant_headers(auth.grant, auth.intent)

    async def main() -> None:
        with pytest.raises(InvalidGrant):
            await pay({}, json.dumps(PAYMENT))
        assert await pay(headers, json.dumps(PAYMENT)) == "paid"

    anyio.run(main)
    assert ran == [auth.request_id]


# -- reporting to a gateway (a recording double over httpx's MockTransport) ---------------


class Recorder:
    """The gateway as a guard sees it: the JWKS, and POST /v1/executions recorded."""

    def __init__(self, home: Home, status: int = 201) -> None:
        self.jwks = GrantKeyRing.load(home.grant_key_dir).jwks(time.time())
        self.status = status
        self.reports: list[dict[str, Any]] = []
        self.jwks_fetches = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/.well-known/jwks.json":
            self.jwks_fetches += 1
            return httpx.Response(200, json=self.jwks)
        assert request.url.path == "/v1/executions"
        assert request.headers["authorization"] == "Bearer clk_tool"
        self.reports.append(json.loads(request.content))
        return httpx.Response(self.status, json={"ledger_index": len(self.reports)})


def reporting_guard(
    gate: Gate, home: Home, tmp_path: Path, recorder: Recorder, **options: Any
) -> GrantGuard:
    transport = httpx.MockTransport(recorder)
    return make_guard(
        gate,
        None,  # type: ignore[arg-type]  # fetched from the gateway's JWKS
        tmp_path,
        gateway_url="http://gateway.test",
        api_key="clk_tool",
        executor="billing-tool",
        transport=transport,
        async_transport=transport,
        **options,
    )


class Failing:
    """A tool whose handler answers 500 or raises, to see error outcomes reported."""

    def __init__(self) -> None:
        self.ran = 0

    def app(self) -> Starlette:
        async def boom(request: Request) -> Response:
            self.ran += 1
            if (await request.json()).get("amount") == 1:
                raise RuntimeError("the bank is down")
            return JSONResponse({"error": "declined"}, status_code=502)

        return Starlette(routes=[Route("/pay", boom, methods=["POST"])])


def test_refusals_and_outcomes_are_reported(
    gate: Gate, home: Home, tmp_path: Path, tool: Tool
) -> None:
    recorder = Recorder(home)
    guard = reporting_guard(gate, home, tmp_path, recorder)
    auth = authorize(gate)
    with TestClient(GrantGuardMiddleware(tool.app(), guard=guard)) as client:
        assert refused(client.post("/pay", json=PAYMENT))
        ok = client.post("/pay", json=PAYMENT, headers=grant_headers(auth.grant, auth.intent))
        assert ok.status_code == 200
        assert refused(
            client.post("/pay", json=PAYMENT, headers=grant_headers(auth.grant, auth.intent))
        )
    anyio.run(guard.aclose)
    assert recorder.jwks_fetches == 1
    first, outcome, replay = recorder.reports
    assert first == {
        "status": "rejected",
        "reason": "no grant presented (no Authorization header)",
        "action": "pay_invoice",
        "grant": None,
        "intent_digest": None,
        "executor": "billing-tool",
    }
    assert outcome["status"] == "ok"
    assert outcome["grant"] == auth.grant
    assert outcome["intent"] == auth.intent.to_json()
    assert outcome["result_digest"] == json_digest(ok.json())
    assert replay["status"] == "rejected"
    assert replay["reason"].startswith("replayed jti")
    assert replay["intent_digest"] == auth.intent.digest


def test_error_outcomes_are_reported(gate: Gate, home: Home, tmp_path: Path) -> None:
    recorder = Recorder(home)
    guard = reporting_guard(gate, home, tmp_path, recorder)
    failing = Failing()
    app = GrantGuardMiddleware(failing.app(), guard=guard)
    declined = authorize(gate)
    crashed = authorize(gate, args={**PAYMENT, "amount": 1})
    with TestClient(app) as client:
        response = client.post(
            "/pay", json=PAYMENT, headers=grant_headers(declined.grant, declined.intent)
        )
        assert response.status_code == 502
        with pytest.raises(RuntimeError, match="bank is down"):
            client.post(
                "/pay",
                json={**PAYMENT, "amount": 1},
                headers=grant_headers(crashed.grant, crashed.intent),
            )
    anyio.run(guard.aclose)
    # Starlette answers an exception with a 500 before re-raising it: that is the outcome.
    assert [(r["status"], r["error_type"]) for r in recorder.reports] == [
        ("error", "HTTP_502"),
        ("error", "HTTP_500"),
    ]
    assert failing.ran == 2


def test_reports_the_gateway_cannot_take_are_spooled(
    gate: Gate, home: Home, tmp_path: Path, tool: Tool
) -> None:
    recorder = Recorder(home, status=503)
    guard = reporting_guard(gate, home, tmp_path, recorder, spool_dir=tmp_path / "spool")
    with TestClient(GrantGuardMiddleware(tool.app(), guard=guard)) as client:
        assert refused(client.post("/pay", json=PAYMENT))
    assert len(list((tmp_path / "spool").rglob("o-*.json"))) == 1
    recorder.status = 201
    reporter = guard.reporter
    assert reporter is not None
    assert reporter.flush() == 1
    assert [r["status"] for r in recorder.reports][-1] == "rejected"
    anyio.run(guard.aclose)


def test_a_refused_report_never_changes_the_answer(
    gate: Gate, home: Home, tmp_path: Path, tool: Tool, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder(home, status=422)
    guard = reporting_guard(gate, home, tmp_path, recorder)
    auth = authorize(gate)
    with (
        caplog.at_level(logging.ERROR, logger="clearance.client"),
        TestClient(GrantGuardMiddleware(tool.app(), guard=guard)) as client,
    ):
        ok = client.post("/pay", json=PAYMENT, headers=grant_headers(auth.grant, auth.intent))
    assert ok.status_code == 200
    assert "UNRECORDED" in caplog.text
    anyio.run(guard.aclose)


def test_plain_handlers_report_too(gate: Gate, home: Home, tmp_path: Path) -> None:
    recorder = Recorder(home)
    guard = reporting_guard(gate, home, tmp_path, recorder)

    @guard.protect("pay_invoice")
    def pay(args: dict[str, Any], claims: GrantClaims) -> dict[str, Any]:
        if args["amount"] == 1:
            raise ValueError("no")
        return {"paid": args["amount"]}

    @guard.protect("pay_invoice")
    async def apay(args: dict[str, Any], claims: GrantClaims) -> dict[str, Any]:
        if args["amount"] == 1:
            raise ValueError("no")
        return {"paid": args["amount"]}

    good, bad = authorize(gate), authorize(gate, args={**PAYMENT, "amount": 1})
    assert pay(grant_headers(good.grant, good.intent), json.dumps(PAYMENT)) == {"paid": 120}
    with pytest.raises(ValueError, match="no"):
        pay(grant_headers(bad.grant, bad.intent), json.dumps({**PAYMENT, "amount": 1}))
    with pytest.raises(InvalidGrant):
        pay({}, b"{}")
    agood, abad = authorize(gate), authorize(gate, args={**PAYMENT, "amount": 1})

    async def main() -> None:
        assert await apay(grant_headers(agood.grant, agood.intent), json.dumps(PAYMENT)) == {
            "paid": 120
        }
        with pytest.raises(ValueError, match="no"):
            await apay(grant_headers(abad.grant, abad.intent), json.dumps({**PAYMENT, "amount": 1}))
        with pytest.raises(InvalidGrant):
            await apay([("authorization", "Clearance x.y.z")], b"{}")
        with pytest.raises(InputError):
            await apay({}, b"x" * (guard.max_body + 1))
        with pytest.raises(TypeError):
            await apay({}, 5)  # type: ignore[arg-type]
        await guard.aclose()

    anyio.run(main)
    statuses = [r["status"] for r in recorder.reports]
    assert statuses == ["ok", "error", "rejected", "ok", "error", "rejected", "rejected"]


# -- ASGI corner cases ----------------------------------------------------------------


def test_non_http_scopes_and_disconnects(gate: Gate, keys: dict[str, Any], tmp_path: Path) -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    guard = make_guard(gate, keys, tmp_path)
    middleware = GrantGuardMiddleware(app, guard=guard)
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def disconnect() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def main() -> None:
        await middleware({"type": "lifespan"}, disconnect, send)
        scope = {"type": "http", "method": "POST", "path": "/pay", "headers": [], "root_path": ""}
        await middleware(scope, disconnect, send)
        mounted = {**scope, "path": "/api/pay", "root_path": "/api"}
        chunks = iter(
            [
                {"type": "http.request", "body": b"{", "more_body": True},
                {"type": "http.request", "body": b"}"},
            ]
        )

        async def receive() -> Any:
            return next(chunks)

        await middleware(mounted, receive, send)

    anyio.run(main)
    guard.close()
    assert seen == ["lifespan"]  # the disconnected and the refused request never reached it
    assert [m.get("status") for m in sent if m["type"] == "http.response.start"] == [403]


def test_a_response_that_never_completes_is_reported_as_an_error(
    gate: Gate, home: Home, tmp_path: Path
) -> None:
    recorder = Recorder(home)
    guard = reporting_guard(gate, home, tmp_path, recorder)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{", "more_body": True})

    auth = authorize(gate)
    headers = [
        (k.lower().encode(), v.encode()) for k, v in grant_headers(auth.grant, auth.intent).items()
    ]
    body = json.dumps(PAYMENT).encode()

    async def main() -> None:
        async def receive() -> Any:
            return {"type": "http.request", "body": body}

        async def send(message: Any) -> None:
            return None

        scope = {"type": "http", "method": "POST", "path": "/pay", "headers": headers}
        await GrantGuardMiddleware(app, guard=guard)(scope, receive, send)
        await guard.aclose()

    anyio.run(main)
    assert [(r["status"], r["error_type"]) for r in recorder.reports] == [
        ("error", "IncompleteResponse")
    ]


def test_an_exception_before_any_response_is_reported_with_its_type(
    gate: Gate, home: Home, tmp_path: Path
) -> None:
    recorder = Recorder(home)
    guard = reporting_guard(gate, home, tmp_path, recorder)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["body"] == body
        raise KeyError("boom")

    auth = authorize(gate)
    headers = [
        (k.lower().encode(), v.encode()) for k, v in grant_headers(auth.grant, auth.intent).items()
    ]
    body = json.dumps(PAYMENT).encode()

    async def main() -> None:
        async def receive() -> Any:
            return {"type": "http.request", "body": body}

        async def send(message: Any) -> None:
            raise AssertionError("nothing is sent")

        scope = {"type": "http", "method": "POST", "path": "/pay", "headers": headers}
        with pytest.raises(KeyError):
            await GrantGuardMiddleware(app, guard=guard)(scope, receive, send)
        await guard.aclose()

    anyio.run(main)
    assert [(r["status"], r["error_type"]) for r in recorder.reports] == [("error", "KeyError")]


def test_middleware_needs_a_guard() -> None:
    with pytest.raises(TypeError, match="GrantGuard"):
        GrantGuardMiddleware(lambda *a: None, guard=object())  # type: ignore[arg-type]
