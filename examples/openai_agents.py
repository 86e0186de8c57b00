"""An OpenAI Agents SDK agent governed by clearance, offline (the SDK's ScriptedModel).

Run: ``.venv/bin/python examples/openai_agents.py``. The scripted model looks up an order
(allowed), tries to delete records (the guardrail rejects it with the reasons) and asks
for a refund (``needs_approval`` interrupts the run; a human approves in clearance;
``guard.resolve`` applies that to the run state and the refund runs once).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from agents import Agent, RunConfig, Runner, function_tool
from agents.testing import ScriptedModel, assistant_message, function_call

from clearance import init_home, open_gate
from clearance.integrations.openai_agents import ClearanceGuard

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


@function_tool
def lookup_order(order_id: int) -> str:
    """Look up an order."""
    return f"order {order_id}: arrived broken"


@function_tool
def delete_records(table: str) -> str:
    """Delete records."""
    raise SystemExit("never reached: clearance denies this tool")


@function_tool
def refund(order_id: int, amount: float) -> str:
    """Refund an order."""
    return f"refunded {amount} on order {order_id}"


async def main() -> None:
    home = Path(tempfile.mkdtemp()) / "home"
    init_home(home, now=time.time())
    for old in (home / "policies").glob("*.yaml"):
        old.unlink()
    (home / "policies" / "support.yaml").write_text(POLICY, encoding="utf-8")

    with open_gate(home, principal="agent:support-bot") as gate:
        guard = ClearanceGuard(gate)
        model = ScriptedModel(
            [
                [function_call("lookup_order", {"order_id": 42}, call_id="c1")],
                [function_call("delete_records", {"table": "orders"}, call_id="c2")],
                [function_call("refund", {"order_id": 42, "amount": 30.0}, call_id="c3")],
                [assistant_message("Refunded order 42.")],
            ]
        )
        agent = Agent(
            name="support",
            model=model,
            tools=guard.govern([lookup_order, delete_records, refund]),
        )
        offline = RunConfig(tracing_disabled=True)
        with gate.trace(TASK):  # the user's task is the trace's mandate
            result = await Runner.run(agent, TASK, run_config=offline)
            [pending] = gate.approvals("pending")
            print("interrupted:", [item.name for item in result.interruptions], pending.approval_id)

            # A human decides (here in code; usually `clearance approvals approve` or the console).
            gate.approve(pending.approval_id, approver="user:alice", reason="photo ok")
            state = await guard.resolve(result)
            result = await Runner.run(agent, state, run_config=offline)
        for item in result.new_items:
            print(f"{item.type}: {getattr(item, 'output', '')}")
        print("final:", result.final_output)


if __name__ == "__main__":
    asyncio.run(main())
