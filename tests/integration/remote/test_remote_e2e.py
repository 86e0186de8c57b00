"""The remote SDK and the grant guard against real processes on loopback.

One `clearance serve` (grants live 5 s) and one example tool service (uvicorn, leeway 0)
for the whole module. What a tool did is read from its own record (payments.jsonl);
what the log holds is read over the API with an auditor key.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from clearance import (
    ApprovalRequired,
    Client,
    Conflict,
    Denied,
    InvalidGrant,
    NotPermitted,
    Unauthenticated,
    grant_headers,
)
from tests.integration.remote.conftest import (
    AGENT,
    TOOL,
    Gateway,
    ToolService,
    free_port,
    start_tool_service,
)


@pytest.fixture(scope="module")
def tool(module_tmp: Path, gateway: Gateway) -> Iterator[ToolService]:
    started = start_tool_service(module_tmp, gateway, leeway=0.0)
    yield started
    started.process.stop()


@pytest.fixture
def client(gateway: Gateway, tmp_path: Path) -> Iterator[Client]:
    with Client(gateway.url, gateway.keys["agent"], spool_dir=tmp_path / "spool") as made:
        yield made


def payment(amount: float = 120.0, to: str = "acme-supplies") -> dict[str, Any]:
    return {"to": to, "amount": amount, "currency": "EUR"}


def send(tool: ToolService, args: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{tool.url}/pay", json=args, headers=headers, timeout=10)


def refusals(gateway: Gateway, reason: str) -> list[dict[str, Any]]:
    """The tool service's `rejected` entries whose reason contains ``reason``."""
    return [
        e
        for e in gateway.executions(status="rejected", executor=TOOL)
        if reason in str(e.get("error_type"))
    ]


# -- the happy path -------------------------------------------------------------------


def test_an_agent_goes_through_the_gateway_and_the_tool_runs(
    gateway: Gateway, tool: ToolService, client: Client
) -> None:
    before = len(tool.payments())
    args = payment(120)
    with (
        client.trace("Pay ACME's invoice INV-7", bounds={"spend_cap": 500}) as trace,
        client.clearance({"action": "payments.send", "args": args}) as cleared,
    ):
        response = send(tool, args, grant_headers(cleared.grant, cleared.authorization.intent))
        assert response.status_code == 200
        cleared.record_result(response.json())
    assert cleared.authorization.intent.trace_id == trace.trace_id
    assert len(tool.payments()) == before + 1
    outcomes = gateway.executions(request_id=cleared.request_id)
    # The tool reported first (before answering), under its own key; the agent's report
    # is its own entry (each principal reports a grant once).
    assert [(e["status"], e["executor"]) for e in outcomes] == [
        ("ok", TOOL),
        ("ok", "agent:ops-bot"),
    ]


def test_governed_functions_nest_with_parent_links(gateway: Gateway, client: Client) -> None:
    @client.governed("payments.send")
    def pay(to: str, amount: float, currency: str = "EUR") -> str:
        return f"paid {amount}"

    @client.governed(
        "payments.send", args=lambda a: {"to": a["to"], "amount": 1.0, "currency": "EUR"}
    )
    def batch(to: str) -> list[str]:
        return [pay(to, 2.0), pay(to, 3.0)]

    with client.trace("Pay ACME in parts", bounds={}):
        assert batch("acme-supplies") == ["paid 2.0", "paid 3.0"]
    decisions = [e for e in gateway.entries() if e.get("type") == "decision"]
    outer = next(e for e in reversed(decisions) if e["intent"]["args"].get("amount") == 1.0)
    children = [e for e in decisions if e.get("parent_id") == outer["request_id"]]
    assert sorted(e["intent"]["args"]["amount"] for e in children) == [2.0, 3.0]
    assert {e["trace_id"] for e in children} == {outer["trace_id"]}
    ok = gateway.executions(request_id=outer["request_id"], status="ok")
    assert [e["executor"] for e in ok] == [AGENT]  # the client reported its own outcome


def test_evaluate_is_a_dry_run(gateway: Gateway, client: Client) -> None:
    size = len(gateway.entries())
    decision, facts = client.evaluate({"action": "payments.send", "args": payment(900)})
    assert decision.effect == "approval_required"
    assert decision.rule_ids == ["payments-send-large-need-a-human"]
    assert "mandate" in facts
    assert len(gateway.entries()) == size


# -- refusals at the tool: 403, the handler did not run, the refusal is in the log ------


def test_a_direct_call_without_a_grant_is_refused_and_logged(
    gateway: Gateway, tool: ToolService
) -> None:
    before = len(tool.payments())
    response = send(tool, payment(10), {})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "invalid_grant"
    assert len(tool.payments()) == before
    assert refusals(gateway, "no grant presented")


def test_a_grant_for_other_arguments_is_refused_and_logged(
    gateway: Gateway, tool: ToolService, client: Client
) -> None:
    auth = client.authorize({"action": "payments.send", "args": payment(100)})
    before = len(tool.payments())
    response = send(tool, payment(101), grant_headers(auth.grant, auth.intent))
    assert response.status_code == 403
    assert len(tool.payments()) == before
    logged = refusals(gateway, "intent digest mismatch")
    assert logged[-1]["request_id"] == auth.request_id


def test_an_expired_grant_is_refused_and_logged(
    gateway: Gateway, tool: ToolService, client: Client
) -> None:
    auth = client.authorize({"action": "payments.send", "args": payment(42)})
    time.sleep(5.3)  # the gateway's grant_lifetime is 5 s; the tool allows no leeway
    before = len(tool.payments())
    response = send(tool, payment(42), grant_headers(auth.grant, auth.intent))
    assert response.status_code == 403
    assert len(tool.payments()) == before
    assert refusals(gateway, "expired")[-1]["request_id"] == auth.request_id


def test_a_replayed_grant_is_refused_and_logged(
    gateway: Gateway, tool: ToolService, client: Client
) -> None:
    auth = client.authorize({"action": "payments.send", "args": payment(7)})
    headers = grant_headers(auth.grant, auth.intent)
    before = len(tool.payments())
    assert send(tool, payment(7), headers).status_code == 200
    assert send(tool, payment(7), headers).status_code == 403
    assert len(tool.payments()) == before + 1
    assert refusals(gateway, "replayed")[-1]["request_id"] == auth.request_id


# -- the client never runs a body on a reply it cannot verify ---------------------------


class Editing(httpx.BaseTransport):
    """A real HTTP transport whose allow replies to /v1/authorize are edited on the way."""

    def __init__(self, edit: Any) -> None:
        self._inner = httpx.HTTPTransport()
        self._edit = edit
        self.last: bytes | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        if request.url.path != "/v1/authorize":
            return response
        response.read()
        body = response.json()
        if response.status_code == 200:
            body = self._edit(self, body)
        return httpx.Response(response.status_code, json=body, headers={"x-edited": "1"})

    def close(self) -> None:
        self._inner.close()


def _flip_digest(_: Editing, body: dict[str, Any]) -> dict[str, Any]:
    import base64
    import json

    header, payload, signature = body["grant"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["idg"] = "sha256:" + "0" * 64
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return {**body, "grant": f"{header}.{forged}.{signature}"}


def _other_args(_: Editing, body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "intent": {**body["intent"], "args": {**body["intent"]["args"], "amount": 9}}}


def _other_digest(_: Editing, body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "intent_digest": "sha256:" + "1" * 64}


def _replayed(transport: Editing, body: dict[str, Any]) -> dict[str, Any]:
    import json

    if transport.last is None:
        transport.last = json.dumps(body).encode()
        return body
    return dict(json.loads(transport.last))


@pytest.mark.parametrize("edit", [_flip_digest, _other_args, _other_digest, _replayed])
def test_a_tampered_or_replayed_reply_runs_no_body(gateway: Gateway, edit: Any) -> None:
    ran: list[str] = []
    transport = Editing(edit)
    with Client(gateway.url, gateway.keys["agent"], transport=transport) as client:
        if edit is _replayed:  # the first reply is genuine and runs
            with client.clearance({"action": "payments.send", "args": payment(5)}):
                ran.append("first")
        with (
            pytest.raises(InvalidGrant),
            client.clearance({"action": "payments.send", "args": payment(5)}),
        ):
            ran.append("tampered")
    assert ran == (["first"] if edit is _replayed else [])


# -- errors and fail-closed -------------------------------------------------------------


def test_a_wrong_key_is_unauthenticated(gateway: Gateway) -> None:
    ran = []
    with (
        Client(gateway.url, "clk_0000000000000000_wrong") as client,
        pytest.raises(Unauthenticated),
        client.clearance({"action": "payments.send", "args": payment(1)}),
    ):
        ran.append(1)
    assert ran == []


def test_an_approver_key_may_not_authorize(gateway: Gateway) -> None:
    with Client(gateway.url, gateway.keys["approver"]) as client, pytest.raises(NotPermitted):
        client.authorize({"action": "payments.send", "args": payment(1)})


def test_an_unreachable_gateway_denies_and_runs_nothing() -> None:
    ran = []
    with (
        Client(f"http://127.0.0.1:{free_port()}", "clk_0000000000000000_x") as client,
        pytest.raises(Denied) as caught,
        client.clearance({"action": "payments.send", "args": payment(1)}),
    ):
        ran.append(1)
    assert ran == []
    assert caught.value.reasons == ["gateway-unreachable"]


def test_a_policy_denial_carries_its_reasons(client: Client) -> None:
    with pytest.raises(Denied) as caught:
        client.authorize({"action": "payments.send", "args": {"to": "x", "amount": -1}})
    assert caught.value.reasons
    assert caught.value.decision["request_id"]


# -- approvals --------------------------------------------------------------------------


def _vote(gateway: Gateway, amount: float, decision: str, *, delay: float = 0.5) -> None:
    """As the approver key, in another thread: find the pending approval, then vote."""
    headers = {"Authorization": f"Bearer {gateway.keys['approver']}"}
    deadline = time.monotonic() + 30
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=10) as http:
        while time.monotonic() < deadline:
            pending = http.get("/v1/approvals", params={"status": "pending"}).json()
            for item in pending["approvals"]:
                if item["intent"]["args"].get("amount") == amount:
                    time.sleep(delay)
                    vote = {"decision": decision, "reason": f"{decision} by the test"}
                    answer = http.post(f"/v1/approvals/{item['approval_id']}", json=vote)
                    assert answer.status_code == 200, answer.text
                    return
            time.sleep(0.1)
    raise AssertionError(f"no pending approval for {amount}")


def test_waiting_for_an_approval_runs_the_body_once(
    gateway: Gateway, tool: ToolService, client: Client
) -> None:
    voter = threading.Thread(target=_vote, args=(gateway, 900.0, "approve"))
    voter.start()
    ran = []
    before = len(tool.payments())
    started = time.monotonic()
    args = payment(900)
    with client.clearance(
        {"action": "payments.send", "args": args}, wait=timedelta(seconds=30)
    ) as cleared:
        ran.append(cleared.request_id)
        assert send(
            tool, args, grant_headers(cleared.grant, cleared.authorization.intent)
        ).is_success
    voter.join()
    assert len(ran) == 1
    assert len(tool.payments()) == before + 1
    assert time.monotonic() - started < 25  # a long poll, answered when the vote came


def test_without_wait_approval_required_then_resume(gateway: Gateway, client: Client) -> None:
    with (
        pytest.raises(ApprovalRequired) as caught,
        client.clearance({"action": "payments.send", "args": payment(901)}),
    ):
        raise AssertionError("must not run before the approval")
    approval_id = caught.value.approval_id
    # still pending, and no wait
    with pytest.raises(ApprovalRequired), client.resume(approval_id):
        raise AssertionError("must not run while pending")
    voter = threading.Thread(target=_vote, args=(gateway, 901.0, "approve"), kwargs={"delay": 0})
    voter.start()
    with client.resume(approval_id, wait=timedelta(seconds=30)) as cleared:
        assert cleared.authorization.intent.args["amount"] == 901
    voter.join()
    # the one grant was collected
    with pytest.raises(Conflict), client.resume(approval_id):
        raise AssertionError("must not run twice")


def test_a_denied_approval_is_denied(gateway: Gateway, client: Client) -> None:
    voter = threading.Thread(target=_vote, args=(gateway, 902.0, "deny"))
    voter.start()
    with (
        pytest.raises(Denied) as caught,
        client.clearance(
            {"action": "payments.send", "args": payment(902)}, wait=timedelta(seconds=30)
        ),
    ):
        raise AssertionError("must not run")
    voter.join()
    assert caught.value.reasons == ["approval-denied"]
    assert not isinstance(caught.value, ApprovalRequired)


def test_a_wait_that_ends_first_raises_approval_required(client: Client) -> None:
    started = time.monotonic()
    with (
        pytest.raises(ApprovalRequired) as caught,
        client.clearance(
            {"action": "payments.send", "args": payment(903)}, wait=timedelta(seconds=1.5)
        ),
    ):
        raise AssertionError("must not run")
    assert 1.0 <= time.monotonic() - started < 10
    assert caught.value.approval_id
