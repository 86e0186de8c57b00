"""A LangChain agent governed by clearance, offline: a scripted model, a temporary home.

Run: ``.venv/bin/python examples/langchain_agent.py``. The scripted model looks up an
order (allowed), tries to delete records (denied: it reads the reasons), and asks for a
refund (approval required: the graph interrupts; a human approves; the graph resumes and
the refund runs once).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from clearance import init_home, open_gate
from clearance.integrations.langchain import ClearanceMiddleware

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


class ScriptedModel(BaseChatModel):
    """Stands in for an LLM: replies with the next scripted message."""

    script: list[AIMessage]

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self.script.pop(0))])

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedModel:
        return self


def ask(name: str, **args: Any) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": f"call-{name}"}])


@tool
def lookup_order(order_id: int) -> str:
    """Look up an order."""
    return f"order {order_id}: arrived broken"


@tool
def delete_records(table: str) -> str:
    """Delete records."""
    raise SystemExit("never reached: clearance denies this tool")


@tool
def refund(order_id: int, amount: float) -> str:
    """Refund an order."""
    return f"refunded {amount} on order {order_id}"


def main() -> None:
    home = Path(tempfile.mkdtemp()) / "home"
    init_home(home, now=time.time())
    for old in (home / "policies").glob("*.yaml"):
        old.unlink()
    (home / "policies" / "support.yaml").write_text(POLICY, encoding="utf-8")

    with open_gate(home, principal="agent:support-bot") as gate:
        model = ScriptedModel(
            script=[
                ask("lookup_order", order_id=42),
                ask("delete_records", table="orders"),
                ask("refund", order_id=42, amount=30.0),
                AIMessage(content="Refunded order 42."),
            ]
        )
        agent = create_agent(
            model,
            [lookup_order, delete_records, refund],
            middleware=[ClearanceMiddleware(gate)],
            checkpointer=InMemorySaver(),  # interrupts need one
        )
        thread: RunnableConfig = {"configurable": {"thread_id": "dana-42"}}
        result = agent.invoke(
            {"messages": [HumanMessage("Refund order 42 for Dana if it arrived broken")]}, thread
        )
        pending = result["__interrupt__"][0].value
        print("interrupted for approval", pending["clearance_approval_id"], pending["tool"])

        # A human decides (here in code; usually `clearance approvals approve` or the console).
        gate.approve(pending["clearance_approval_id"], approver="user:alice", reason="photo ok")
        result = agent.invoke(Command(resume="decided"), thread)
        for message in result["messages"]:
            print(f"{message.type:>5}: {message.content or message.tool_calls}")


if __name__ == "__main__":
    main()
