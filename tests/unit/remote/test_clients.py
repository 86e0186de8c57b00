"""Client and AsyncClient over a scripted gateway (real grants, canned HTTP).

The flows against the real server are in tests/integration/remote; these pin the
branches a real server rarely takes (odd replies, races, failures of the JWKS fetch).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from clearance import (
    ApprovalRequired,
    AsyncClient,
    Client,
    Conflict,
    Denied,
    Error,
    InputError,
    InvalidGrant,
    NotFound,
    Trace,
)
from clearance._internal.remote.settings import RemoteSettings
from tests.unit.remote.fake_gateway import AUD, ISS, PRINCIPAL, FakeGateway

URL = "http://gateway.test"
KEY = "clk_fake_key"
QUICK = RemoteSettings(min_poll_interval=0.05, report_backoff=0.0, report_attempts=1)
INTENT = {"action": "payments.send", "args": {"to": "acme", "amount": 5}}


@pytest.fixture
def fake(tmp_path: Path) -> FakeGateway:
    return FakeGateway(tmp_path)


@pytest.fixture
def client(fake: FakeGateway) -> Iterator[Client]:
    with Client(URL, KEY, transport=fake.transport(), settings=QUICK) as made:
        yield made


def paths(fake: FakeGateway) -> list[str]:
    return [r.url.path for r in fake.requests]


def test_a_governed_call_fetches_the_jwks_once_and_reports(
    fake: FakeGateway, client: Client
) -> None:
    for _ in range(2):
        with client.clearance(INTENT) as cleared:
            cleared.record_result({"ok": 1})
    assert paths(fake).count("/.well-known/jwks.json") == 1
    assert [r["status"] for r in fake.reports] == ["ok", "ok"]
    assert fake.reports[0]["executor"] == "clearance-client"
    assert fake.reports[0]["result_digest"].startswith("sha256:")
    assert cleared.claims.iss == ISS
    assert cleared.claims.aud == AUD
    assert cleared.authorization.intent.principal == PRINCIPAL


def test_a_clearance_context_is_entered_once(client: Client) -> None:
    call = client.clearance(INTENT)
    with call:
        pass
    with pytest.raises(RuntimeError, match="entered once"), call:
        pass


def test_a_jwks_that_cannot_be_fetched_refuses_the_grant(fake: FakeGateway, client: Client) -> None:
    fake.overrides["/.well-known/jwks.json"] = lambda r, b: httpx.Response(503)
    ran = []
    with pytest.raises(InvalidGrant), client.clearance(INTENT):
        ran.append(1)
    assert ran == []


def test_a_jwks_that_is_not_a_key_set_refuses_the_grant(fake: FakeGateway, client: Client) -> None:
    fake.overrides["/.well-known/jwks.json"] = lambda r, b: httpx.Response(200, json={"keys": []})
    with pytest.raises(InvalidGrant):
        client.authorize(INTENT)


def test_an_unreachable_jwks_refuses_the_grant(fake: FakeGateway, client: Client) -> None:
    def down(request: httpx.Request, body: Any) -> httpx.Response:
        raise httpx.ConnectError("down", request=request)

    fake.overrides["/.well-known/jwks.json"] = down
    with pytest.raises(InvalidGrant):
        client.authorize(INTENT)


def test_a_200_that_is_not_an_allow_is_a_denial(fake: FakeGateway, client: Client) -> None:
    fake.overrides["/v1/authorize"] = lambda r, b: httpx.Response(200, json={"effect": "deny"})
    with pytest.raises(Denied) as caught:
        client.authorize(INTENT)
    assert caught.value.reasons == ["gateway-unavailable"]


def test_a_pinned_principal_is_sent_and_enforced(fake: FakeGateway) -> None:
    fake.overrides["/v1/authorize"] = lambda r, b: httpx.Response(
        200, json=fake.allow({**b, "principal": PRINCIPAL})
    )
    with (
        Client(URL, KEY, transport=fake.transport(), principal="agent:other") as client,
        pytest.raises(InvalidGrant),
    ):
        client.authorize(INTENT)
    assert json.loads(fake.requests[0].content)["principal"] == "agent:other"


def test_issuer_and_audience_given_up_front(fake: FakeGateway) -> None:
    with (
        Client(URL, KEY, transport=fake.transport(), issuer=ISS, audience="elsewhere") as client,
        pytest.raises(InvalidGrant),
    ):
        client.authorize(INTENT)
    with Client(URL, KEY, transport=fake.transport(), issuer=ISS, audience=AUD) as client:
        assert client.authorize(INTENT).grant


@pytest.mark.parametrize(
    "options",
    [{"executor": ""}, {"issuer": ""}, {"principal": 5}, {"api_key": "has space"}, {"url": "nope"}],
)
def test_bad_configuration_is_refused(fake: FakeGateway, options: dict[str, Any]) -> None:
    arguments: dict[str, Any] = {"url": URL, "api_key": KEY, **options}
    with pytest.raises(InputError):
        Client(**arguments)


def test_traces(fake: FakeGateway, client: Client) -> None:
    with (
        client.trace("Pay ACME", bounds={"spend_cap": 5}) as trace,
        client.clearance(INTENT) as cleared,
    ):
        assert cleared.authorization.intent.trace_id == "t-open"
    opened = json.loads(fake.requests[0].content)
    assert opened == {"mandate": {"text": "Pay ACME", "bounds": {"spend_cap": 5}}}
    assert isinstance(trace, Trace)
    assert trace.mandate["bounds"] == {"spend_cap": 5}
    resumed = client.resume_trace("t-old")
    assert resumed.mandate == {"text": "m", "bounds": {}}
    client.open_trace("for another agent", principal="agent:b")
    assert json.loads(fake.requests[-1].content)["principal"] == "agent:b"


@pytest.mark.parametrize(
    ("mandate", "bounds", "kind"), [(5, None, InputError), ("x", [1], InputError)]
)
def test_open_trace_validates(client: Client, mandate: Any, bounds: Any, kind: type) -> None:
    with pytest.raises(kind):
        client.open_trace(mandate, bounds=bounds)


def test_unreadable_trace_replies(fake: FakeGateway, client: Client) -> None:
    fake.overrides["/v1/traces"] = lambda r, b: httpx.Response(201, json={"trace_id": "../x"})
    with pytest.raises(InputError, match="not a valid id"):
        client.open_trace("x")
    with pytest.raises(InputError, match="not a valid id"):
        client.resume_trace("../admin")
    fake.overrides["/v1/traces/t1"] = lambda r, b: httpx.Response(200, json={"trace_id": "t2"})
    with pytest.raises(InputError, match="unreadable"):
        client.resume_trace("t1")
    fake.overrides["/v1/traces/t3"] = lambda r, b: httpx.Response(404, json={})
    with pytest.raises(NotFound):
        client.resume_trace("t3")
    fake.overrides["/v1/traces"] = lambda r, b: httpx.Response(403, json={})
    with pytest.raises(Error):
        client.open_trace("x")


def test_evaluate(fake: FakeGateway, client: Client) -> None:
    decision, facts = client.evaluate(INTENT)
    assert (decision.effect, decision.rule_ids, facts) == ("deny", ["no"], {"a": 1})
    assert json.loads(fake.requests[0].content) == {
        "intent": {
            **INTENT,
            "resource": None,
            "purpose": None,
            "trace_id": None,
            "parent_id": None,
            "input": None,
        }
    }
    fake.overrides["/v1/policies/evaluate"] = lambda r, b: httpx.Response(200, json={"effect": "?"})
    with pytest.raises(Error, match="unreadable"):
        client.evaluate(INTENT)
    fake.overrides["/v1/policies/evaluate"] = lambda r, b: httpx.Response(422, json={})
    with pytest.raises(InputError):
        client.evaluate(INTENT)


def test_approval_wait_polls_without_busy_looping(fake: FakeGateway, client: Client) -> None:
    fake.needs_approval("a1")
    polls = 0

    def approve_on_third_poll(request: httpx.Request, body: Any) -> None:
        nonlocal polls
        polls += 1
        assert request.url.params["wait"] in {"1", "2"}
        if polls == 3:
            fake.approval_status = "approved"
        return

    fake.overrides["/v1/approvals/a1"] = approve_on_third_poll
    started = time.monotonic()
    with client.clearance(INTENT, wait=2) as cleared:
        assert cleared.authorization.intent.args == INTENT["args"]
    assert polls == 3
    assert time.monotonic() - started >= 2 * QUICK.min_poll_interval
    assert fake.collections == 1


def test_a_collection_that_races_a_pending_approval_keeps_waiting(
    fake: FakeGateway, client: Client
) -> None:
    fake.needs_approval("a1")
    fake.approval_status = "approved"
    answers = [httpx.Response(202, json={}), None]
    fake.overrides["/v1/approvals/a1/grant"] = lambda r, b: answers.pop(0)
    with client.clearance(INTENT, wait=5):
        pass
    assert fake.collections == 1  # the first answer was the 202 override


def test_a_collected_grant_for_another_intent_runs_nothing(
    fake: FakeGateway, client: Client
) -> None:
    fake.needs_approval("a1")
    fake.approval_status = "approved"

    def other(request: httpx.Request, body: Any) -> httpx.Response:
        return httpx.Response(
            200, json=fake.allow({**INTENT, "args": {"to": "mallory", "amount": 5}})
        )

    fake.overrides["/v1/approvals/a1/grant"] = other
    with pytest.raises(InvalidGrant), client.clearance(INTENT, wait=5):
        raise AssertionError("must not run")


def test_resume_in_another_process_uses_the_approval_record(fake: FakeGateway) -> None:
    fake.needs_approval("a7")
    with (
        Client(URL, KEY, transport=fake.transport(), settings=QUICK) as first,
        pytest.raises(ApprovalRequired) as caught,
    ):
        first.authorize(INTENT)
    assert caught.value.approval_id == "a7"
    assert caught.value.decision["reasons"] == [{"rule": "big", "message": "needs a human"}]
    fake.approval_status = "approved"
    with Client(URL, KEY, transport=fake.transport(), settings=QUICK) as later:
        with later.resume("a7") as cleared:
            assert cleared.authorization.intent.args == INTENT["args"]
        with pytest.raises(Conflict), later.resume("a7"):
            pass
    with pytest.raises(InputError):
        later.resume("bad id")


def test_an_approval_error_reply_fails_closed(fake: FakeGateway, client: Client) -> None:
    fake.needs_approval("a1")
    fake.overrides["/v1/approvals/a1"] = lambda r, b: httpx.Response(503)
    with pytest.raises(Denied), client.clearance(INTENT, wait=1):
        pass
    fake.overrides["/v1/approvals/a1"] = lambda r, b: None
    fake.approval_status = "approved"
    fake.overrides["/v1/approvals/a1/grant"] = lambda r, b: httpx.Response(
        403, json={"error": {"code": "denied"}, "reasons": []}
    )
    with pytest.raises(Denied), client.clearance(INTENT, wait=1):
        pass


def test_flush_and_spool_depth_without_a_spool(client: Client) -> None:
    assert client.flush() == 0
    assert client.spool_depth == 0
    assert client.url == URL


def test_spooled_outcomes_go_out_after_the_next_successful_call(
    fake: FakeGateway, tmp_path: Path
) -> None:
    down = True

    def executions(request: httpx.Request, body: Any) -> httpx.Response | None:
        return httpx.Response(503) if down else None

    fake.overrides["/v1/executions"] = executions
    with Client(URL, KEY, transport=fake.transport(), settings=QUICK, spool_dir=tmp_path) as client:
        with client.clearance(INTENT):
            pass
        assert client.spool_depth == 1
        down = False
        client.evaluate(INTENT)  # any successful exchange sends the spool
        assert client.spool_depth == 0
    assert len(fake.reports) == 1


# -- the async client -------------------------------------------------------------------


def test_async_client_covers_the_same_ground(fake: FakeGateway, tmp_path: Path) -> None:
    async def main() -> None:
        async with AsyncClient(
            URL, KEY, transport=fake.transport(), settings=QUICK, spool_dir=tmp_path
        ) as client:
            assert client.url == URL
            assert client.spool_depth == 0
            async with client.trace("Pay ACME") as trace, client.clearance(INTENT) as cleared:
                assert cleared.authorization.intent.trace_id == trace.trace_id
            assert (await client.resume_trace("t9")).trace_id == "t9"
            decision, _ = await client.evaluate(INTENT)
            assert decision.effect == "deny"
            assert (await client.authorize(INTENT)).grant
            fake.needs_approval("a2")
            with pytest.raises(ApprovalRequired):
                await client.authorize(INTENT)
            with pytest.raises(ApprovalRequired):
                async with client.resume("a2"):
                    pass
            fake.approval_status = "approved"
            async with client.resume("a2", wait=1) as resumed:
                assert resumed.request_id
            call = client.clearance(INTENT)
            fake.overrides.pop("/v1/authorize")
            async with call:
                pass
            with pytest.raises(RuntimeError):
                async with call:
                    pass
            assert await client.flush() == 0
            await client.close()

    anyio.run(main)


def test_async_approval_wait_and_denial(fake: FakeGateway) -> None:
    fake.needs_approval("a3")
    polls = 0

    def deny_on_second(request: httpx.Request, body: Any) -> None:
        nonlocal polls
        polls += 1
        if polls == 2:
            fake.approval_status = "denied"

    fake.overrides["/v1/approvals/a3"] = deny_on_second

    async def main() -> None:
        async with AsyncClient(URL, KEY, transport=fake.transport(), settings=QUICK) as client:
            with pytest.raises(Denied):
                async with client.clearance(INTENT, wait=5):
                    raise AssertionError("must not run")
            fake.approval_status = "pending"
            fake.overrides["/v1/approvals/a3"] = lambda r, b: None
            with pytest.raises(ApprovalRequired):
                async with client.clearance(INTENT, wait=0.2):
                    raise AssertionError("must not run")
            fake.approval_status = "approved"
            answers = [httpx.Response(202, json={}), httpx.Response(409, json={})]
            fake.overrides["/v1/approvals/a3/grant"] = lambda r, b: answers.pop(0)
            with pytest.raises(Conflict):
                async with client.clearance(INTENT, wait=5):
                    raise AssertionError("must not run")

    anyio.run(main)
    assert polls == 2


def test_async_unreachable_and_jwks_failure(fake: FakeGateway) -> None:
    def down(request: httpx.Request, body: Any) -> httpx.Response:
        raise httpx.ConnectError("down", request=request)

    async def main() -> None:
        async with AsyncClient(URL, KEY, transport=fake.transport(), settings=QUICK) as client:
            fake.overrides["/.well-known/jwks.json"] = down
            with pytest.raises(InvalidGrant):
                await client.authorize(INTENT)
            fake.overrides["/v1/authorize"] = down
            with pytest.raises(Denied) as caught:
                await client.authorize(INTENT)
            assert caught.value.reasons == ["gateway-unreachable"]

    anyio.run(main)


# -- the decorator ----------------------------------------------------------------------


def test_governed_builds_the_intent_like_the_in_process_gate(
    fake: FakeGateway, client: Client
) -> None:
    class Db:
        pass

    @client.governed(
        "payments.send", resource="accounts/{account}", purpose="INV-7", exclude=("db",)
    )
    def pay(account: str, amount: float, db: Db, to: str = "acme") -> object:
        return object() if amount > 10 else {"paid": amount}

    assert pay("A-1", 5.0, Db()) == {"paid": 5.0}
    pay("A-1", 50.0, Db())  # not JSON: returned, its digest not recorded
    sent = json.loads(fake.requests[0].content)
    assert (sent["resource"], sent["purpose"], sent["args"]) == (
        "accounts/A-1",
        "INV-7",
        {"account": "A-1", "amount": 5.0, "to": "acme"},
    )
    assert [r["result_digest"] is None for r in fake.reports] == [False, True]

    @client.governed(resource=lambda a: f"to/{a['to']}")
    def transfer(to: str) -> None:
        return None

    transfer("bob")
    assert json.loads(fake.requests[-2].content)["action"] == "transfer"


def test_governed_refuses_bad_options(client: Client) -> None:
    with pytest.raises(ValueError, match="either exclude= or args="):
        client.governed(exclude=("a",), args=lambda a: a)
    with pytest.raises(ValueError, match="names no parameter"):
        client.governed(exclude=("nope",))(lambda a: a)


def test_a_governed_body_that_raises_reports_an_error(fake: FakeGateway, client: Client) -> None:
    @client.governed("payments.send")
    def pay(amount: float) -> None:
        raise LookupError("no such account")

    with pytest.raises(LookupError):
        pay(1.0)
    assert (fake.reports[-1]["status"], fake.reports[-1]["error_type"]) == ("error", "LookupError")

    @client.governed("payments.send")
    async def apay(amount: float) -> None:
        raise LookupError("no such account")

    with pytest.raises(LookupError):
        anyio.run(apay, 2.0)
    assert fake.reports[-1]["error_type"] == "LookupError"
