"""A Pydantic AI agent governed by clearance, offline (a scripted ``FunctionModel``).

Run: ``.venv/bin/python examples/pydantic_ai_agent.py``. The scripted model looks up an
order (allowed), tries to delete records (skipped: the model reads the reasons) and asks
for a refund (deferred for approval; a human approves in clearance; ``resolve`` builds
the ``DeferredToolResults`` and the continued run refunds once).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from pydantic_ai import Agent, DeferredToolRequests
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from clearance import init_home, open_gate
from clearance.integrations.pydantic_ai import ClearanceCapability

POLICY = """\
version: 1
strict: true
tools:
  lookup_order: {}
  delete_records: {}
  refund: {}
rules:
  - {id: lookups-allowed, effect: allow, actions: [lookup_order]}
  - {id: no-deletes, effect: deny, actions: [delete_records], message: Agents never delete records}
  - id: refunds-need-a-human
    effect: approval_required
    actions: [refund]
    approvers: ["user:*"]
    message: Refunds need one approval
"""
TASK = "Refund order 42 for Dana if it arrived broken"

SCRIPT = [
    ModelResponse(parts=[ToolCallPart("lookup_order", {"order_id": 42}, tool_call_id="c1")]),
    ModelResponse(parts=[ToolCallPart("delete_records", {"table": "orders"}, tool_call_id="c2")]),
    ModelResponse(
        parts=[ToolCallPart("refund", {"order_id": 42, "amount": 30.0}, tool_call_id="c3")]
    ),
    ModelResponse(parts=[TextPart("Refunded order 42.")]),
]


def scripted(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Stands in for an LLM: replies with the next scripted response."""
    return SCRIPT.pop(0)


async def main() -> None:
    home = Path(tempfile.mkdtemp()) / "home"
    init_home(home, now=time.time())
    for old in (home / "policies").glob("*.yaml"):
        old.unlink()
    (home / "policies" / "support.yaml").write_text(POLICY, encoding="utf-8")

    with open_gate(home, principal="agent:support-bot") as gate:
        clearance = ClearanceCapability(gate)
        agent: Agent[None, str | DeferredToolRequests] = Agent(
            FunctionModel(scripted),
            output_type=[str, DeferredToolRequests],  # lets a run end with deferred calls
            capabilities=[clearance],
        )

        @agent.tool_plain
        def lookup_order(order_id: int) -> str:
            """Look up an order."""
            return f"order {order_id}: arrived broken"

        @agent.tool_plain
        def delete_records(table: str) -> str:
            """Delete records."""
            raise SystemExit("never reached: clearance denies this tool")

        @agent.tool_plain
        def refund(order_id: int, amount: float) -> str:
            """Refund an order."""
            return f"refunded {amount} on order {order_id}"

        result = await agent.run(TASK)  # the prompt is the trace's mandate
        assert isinstance(result.output, DeferredToolRequests)
        [pending] = gate.approvals("pending")
        print(
            "deferred:", [call.tool_name for call in result.output.approvals], pending.approval_id
        )

        # A human decides (here in code; usually `clearance approvals approve` or the console).
        gate.approve(pending.approval_id, approver="user:alice", reason="photo ok")
        result = await agent.run(
            message_history=result.all_messages(),
            deferred_tool_results=await clearance.resolve(result.output),
        )
        for message in result.all_messages():
            for part in message.parts:
                print(
                    f"{part.part_kind}: {getattr(part, 'content', '') or getattr(part, 'args', '')}"
                )


if __name__ == "__main__":
    asyncio.run(main())
