"""A Google ADK agent governed by clearance, offline (a scripted ``BaseLlm``).

Run: ``.venv/bin/python examples/google_adk_agent.py``. The scripted model looks up an
order (allowed), tries to delete records (refused: the model reads the reasons) and asks
for a refund (paused with ADK's tool confirmation; a human approves in clearance, the
client confirms in ADK, and the refund runs once under the approval's grant).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import AsyncGenerator
from pathlib import Path

from google.adk.agents import LlmAgent
from google.adk.apps import App
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.runners import InMemoryRunner
from google.genai import types

from clearance import init_home, open_gate
from clearance.integrations.google_adk import ClearancePlugin

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


def call(name: str, **args: object) -> LlmResponse:
    part = types.Part(function_call=types.FunctionCall(name=name, args=args, id=f"call-{name}"))
    return LlmResponse(content=types.Content(role="model", parts=[part]))


SCRIPT = [
    call("lookup_order", order_id=42),
    call("delete_records", table="orders"),
    call("refund", order_id=42, amount=30.0),
    LlmResponse(content=types.Content(role="model", parts=[types.Part(text="Refunded.")])),
]


class ScriptedModel(BaseLlm):
    """Stands in for Gemini: replies with the next scripted response (ADK's model API)."""

    model: str = "scripted"

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        yield SCRIPT.pop(0)


def lookup_order(order_id: int) -> str:
    """Look up an order."""
    return f"order {order_id}: arrived broken"


def delete_records(table: str) -> str:
    """Delete records."""
    raise SystemExit("never reached: clearance denies this tool")


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
        agent = LlmAgent(
            name="support", model=ScriptedModel(), tools=[lookup_order, delete_records, refund]
        )
        app = App(name="support", root_agent=agent, plugins=[ClearancePlugin(gate)])
        runner = InMemoryRunner(app=app)
        session = await runner.session_service.create_session(app_name="support", user_id="dana")

        async def send(message: types.Content) -> list[types.FunctionCall]:
            """Run one turn; print what happened; return ADK's confirmation requests."""
            requests = []
            async for event in runner.run_async(
                user_id="dana", session_id=session.id, new_message=message
            ):
                for part in event.content.parts if event.content and event.content.parts else ():
                    if part.function_call and part.function_call.name == "adk_request_confirmation":
                        requests.append(part.function_call)
                    elif part.function_response:
                        print(f"{part.function_response.name}: {part.function_response.response}")
                    elif part.text:
                        print(f"model: {part.text}")
            return requests

        # The session's first user message is the trace's mandate.
        [request] = await send(types.Content(role="user", parts=[types.Part(text=TASK)]))

        # A human decides (here in code; usually `clearance approvals approve` or the console).
        [pending] = gate.approvals("pending")
        gate.approve(pending.approval_id, approver="user:alice", reason="photo ok")

        # The client confirms the paused call in ADK; clearance's approval lets it run once.
        answer = types.FunctionResponse(
            name="adk_request_confirmation", id=request.id, response={"confirmed": True}
        )
        await send(types.Content(role="user", parts=[types.Part(function_response=answer)]))


if __name__ == "__main__":
    asyncio.run(main())
