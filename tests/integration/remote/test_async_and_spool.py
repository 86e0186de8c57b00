"""AsyncClient, nested governed calls, and outcomes that outlive a stopped gateway.

Its own `clearance serve` process, which the spool tests stop and start again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from clearance import AsyncClient, Client, OutcomeUnrecorded, grant_headers
from clearance._internal.remote.settings import RemoteSettings
from tests.integration.remote.conftest import (
    AGENT,
    APPROVER,
    Gateway,
    ToolService,
    start_tool_service,
)

FAST = RemoteSettings(report_attempts=2, report_backoff=0.05, timeout=5.0)


def payment(amount: float) -> dict[str, Any]:
    return {"to": "acme-supplies", "amount": amount, "currency": "EUR"}


@pytest.fixture(scope="module")
def tool(module_tmp: Path, gateway: Gateway) -> Iterator[ToolService]:
    started = start_tool_service(module_tmp, gateway, leeway=2.0)
    yield started
    started.process.stop()


def test_async_governed_calls_nest_across_tasks(gateway: Gateway) -> None:
    async def main() -> tuple[str, list[str]]:
        async with AsyncClient(gateway.url, gateway.keys["agent"]) as client:

            @client.governed("payments.send")
            async def pay(to: str, amount: float, currency: str = "EUR") -> float:
                await anyio.sleep(0)
                return amount

            @client.governed("payments.send", args=lambda a: payment(a["total"]))
            async def split(total: float) -> list[float]:
                results: list[float] = []

                async def one(amount: float) -> None:
                    results.append(await pay("acme-supplies", amount))

                async with anyio.create_task_group() as group:  # tasks inherit the context
                    group.start_soon(one, 10.0)
                    group.start_soon(one, 20.0)
                return sorted(results)

            async with client.trace("Split ACME's payment", bounds={}) as trace:
                assert await split(30.0) == [10.0, 20.0]
            return trace.trace_id, []

    trace_id, _ = anyio.run(main)
    decisions = [
        e for e in gateway.entries() if e.get("type") == "decision" and e["trace_id"] == trace_id
    ]
    outer = next(e for e in decisions if e["intent"]["args"]["amount"] == 30.0)
    children = sorted(
        e["intent"]["args"]["amount"] for e in decisions if e["parent_id"] == outer["request_id"]
    )
    assert children == [10.0, 20.0]
    for entry in decisions:
        assert [e["executor"] for e in gateway.executions(request_id=entry["request_id"])] == [
            AGENT
        ]


def test_async_client_calls_a_guarded_tool(gateway: Gateway, tool: ToolService) -> None:
    before = len(tool.payments())

    async def main() -> None:
        async with (
            AsyncClient(gateway.url, gateway.keys["agent"]) as client,
            httpx.AsyncClient() as http,
        ):
            args = payment(77)
            async with client.clearance({"action": "payments.send", "args": args}) as cleared:
                headers = grant_headers(cleared.grant, cleared.authorization.intent)
                answer = await http.post(f"{tool.url}/pay", json=args, headers=headers)
                assert answer.status_code == 200
                cleared.record_result(answer.json())

    anyio.run(main)
    assert len(tool.payments()) == before + 1


def test_async_wait_for_an_approval(gateway: Gateway) -> None:
    def approve() -> None:
        headers = {"Authorization": f"Bearer {gateway.keys['approver']}"}
        with httpx.Client(base_url=gateway.url, headers=headers, timeout=10) as http:
            for _ in range(300):
                for item in http.get("/v1/approvals", params={"status": "pending"}).json()[
                    "approvals"
                ]:
                    if item["intent"]["args"]["amount"] == 950:
                        http.post(
                            f"/v1/approvals/{item['approval_id']}",
                            json={"decision": "approve", "reason": f"{APPROVER} checked it"},
                        ).raise_for_status()
                        return
                time.sleep(0.1)

    voter = threading.Thread(target=approve)
    voter.start()
    ran: list[str] = []

    async def main() -> None:
        intent = {"action": "payments.send", "args": payment(950)}
        async with (
            AsyncClient(gateway.url, gateway.keys["agent"]) as client,
            client.clearance(intent, wait=timedelta(seconds=30)) as cleared,
        ):
            ran.append(cleared.request_id)

    anyio.run(main)
    voter.join()
    assert len(ran) == 1


def test_a_body_that_raises_is_recorded_as_an_error(gateway: Gateway) -> None:
    with (
        Client(gateway.url, gateway.keys["agent"]) as client,
        pytest.raises(ZeroDivisionError),
        client.clearance({"action": "payments.send", "args": payment(3)}) as cleared,
    ):
        _ = 1 / 0
    [entry] = gateway.executions(request_id=cleared.request_id)
    assert (entry["status"], entry["error_type"]) == ("error", "ZeroDivisionError")


def test_sync_client_governs_a_coroutine_function(gateway: Gateway) -> None:
    with Client(gateway.url, gateway.keys["agent"]) as client:

        @client.governed("payments.send")
        async def pay(to: str, amount: float, currency: str = "EUR") -> dict[str, Any]:
            return {"paid": amount}

        assert anyio.run(pay, "acme-supplies", 4.0) == {"paid": 4.0}
    [decision] = [
        e
        for e in gateway.entries()
        if e.get("type") == "decision" and e["intent"]["args"].get("amount") == 4.0
    ]
    [outcome] = gateway.executions(request_id=decision["request_id"])
    assert outcome["status"] == "ok"
    assert outcome["result_digest"]


def test_async_governed_refuses_plain_functions(gateway: Gateway) -> None:
    client = AsyncClient(gateway.url, gateway.keys["agent"])
    with pytest.raises(TypeError, match="coroutine"):
        client.governed("payments.send")(lambda: None)  # type: ignore[arg-type, return-value]
    anyio.run(client.aclose)


# -- the gateway goes away mid-call: last in this module -----------------------------


def test_an_outcome_is_spooled_while_the_gateway_is_down_and_sent_after_restart(
    gateway: Gateway, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = tmp_path / "spool"
    ran: list[str] = []

    async def run_while_the_gateway_stops() -> str:
        async with AsyncClient(
            gateway.url, gateway.keys["agent"], spool_dir=spool, settings=FAST
        ) as client:
            async with client.clearance(
                {"action": "payments.send", "args": payment(11)}
            ) as cleared:
                await anyio.to_thread.run_sync(gateway.process.stop)
                ran.append(cleared.request_id)
                cleared.record_result({"paid": 11})
            assert client.spool_depth == 1
            return cleared.request_id

    with caplog.at_level(logging.WARNING, logger="clearance.client"):
        request_id = anyio.run(run_while_the_gateway_stops)
    assert ran == [request_id]  # the body ran and the caller got no error
    assert any("spooled" in r.getMessage() for r in caplog.records)
    assert len(list((spool).rglob("o-*.json"))) == 1

    gateway.process.start()

    async def next_start() -> int:
        async with AsyncClient(
            gateway.url, gateway.keys["agent"], spool_dir=spool, settings=FAST
        ) as client:
            assert client.spool_depth == 1
            await client.evaluate({"action": "payments.send", "args": payment(1)})  # succeeds
            return client.spool_depth

    assert anyio.run(next_start) == 0
    [entry] = gateway.executions(request_id=request_id)
    assert (entry["status"], entry["executor"]) == ("ok", AGENT)
    assert entry["result_digest"].startswith("sha256:")


def test_without_a_spool_an_undeliverable_outcome_raises_after_the_body(
    gateway: Gateway, tmp_path: Path
) -> None:
    ran: list[str] = []
    with (
        Client(gateway.url, gateway.keys["agent"], settings=FAST) as client,
        pytest.raises(OutcomeUnrecorded) as caught,
        client.clearance({"action": "payments.send", "args": payment(12)}) as cleared,
    ):
        gateway.process.stop()
        ran.append(cleared.request_id)
    assert ran == [caught.value.request_id]
    gateway.process.start()
    spool = tmp_path / "spool"
    with Client(gateway.url, gateway.keys["agent"], spool_dir=spool, settings=FAST) as client:
        with client.clearance({"action": "payments.send", "args": payment(13)}) as cleared:
            gateway.process.stop()
        assert client.spool_depth == 1
        gateway.process.start()
        assert client.flush() == 1
        assert client.spool_depth == 0
    assert [e["status"] for e in gateway.executions(request_id=cleared.request_id)] == ["ok"]
