"""Decisions as OpenTelemetry ``apply_guardrail`` spans, read back from the SDK's exporter."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from clearance import ApprovalRequired, Denied, Gate, init_home, open_gate
from clearance.integrations.otel import instrument

SPAN_NAME = "apply_guardrail clearance"

BUNDLE = """\
version: 1
rules:
  - id: reads-allowed
    effect: allow
    actions: [read_file]
    message: Reading is allowed
  - id: no-deletes
    effect: deny
    actions: [delete_file]
    message: Agents never delete files
  - id: big-payments-need-approval
    effect: approval_required
    actions: [pay_invoice]
    message: Payments need a human approval
"""


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Gate]:
    home = tmp_path / "home"
    init_home(home, now=time.time(), example_policies=False)
    (home / "policies" / "rules.yaml").write_text(BUNDLE, encoding="utf-8")
    with open_gate(home, principal="agent:ops-bot") as opened:
        yield opened


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def guardrail_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == SPAN_NAME]


def test_allow_is_a_child_of_the_enclosing_execute_tool_span(
    gate: Gate, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    instrument(gate, tracer_provider=provider)
    tracer = provider.get_tracer("agent")
    with tracer.start_as_current_span("execute_tool read_file") as tool_span:
        tool_span.set_attribute("gen_ai.operation.name", "execute_tool")
        with gate.clearance({"action": "read_file", "args": {"path": "a.txt"}}) as cleared:
            request_id = cleared.request_id
            index = cleared.authorization.decision_index
    (span,) = guardrail_spans(exporter)
    assert span.kind is SpanKind.INTERNAL
    assert span.parent is not None
    assert span.parent.span_id == tool_span.get_span_context().span_id
    assert span.context.trace_id == tool_span.get_span_context().trace_id
    attrs = dict(span.attributes or {})
    assert attrs["gen_ai.operation.name"] == "apply_guardrail"
    assert attrs["gen_ai.security.decision.type"] == "allow"
    assert attrs["gen_ai.security.target.type"] == "tool_call"
    assert attrs["gen_ai.security.target.id"] == request_id
    assert attrs["clearance.request_id"] == request_id
    assert attrs["clearance.ledger.index"] == index
    assert attrs["gen_ai.security.policy.id"] == "reads-allowed"
    assert attrs["gen_ai.security.policy.version"] == gate.engine.digest
    assert attrs["gen_ai.tool.name"] == "read_file"
    assert span.status.status_code is StatusCode.UNSET
    # The ledger entry the span names is the decision itself.
    (found,) = gate.ledger.find("decision", request_id)
    assert found.index == index


def test_deny_and_approval_required_spans_carry_the_reasons(
    gate: Gate, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    instrument(gate, tracer_provider=provider)
    with pytest.raises(Denied) as denied:
        gate.authorize({"action": "delete_file", "args": {"path": "a.txt"}})
    with pytest.raises(ApprovalRequired) as pending:
        gate.authorize({"action": "pay_invoice", "args": {"amount": 900}})
    deny_span, approval_span = guardrail_spans(exporter)
    deny = dict(deny_span.attributes or {})
    assert deny["gen_ai.security.decision.type"] == "deny"
    assert deny["clearance.decision.effect"] == "deny"
    assert deny["gen_ai.security.policy.id"] == "no-deletes"
    assert deny["gen_ai.security.decision.reason"] == "Agents never delete files"
    assert deny["clearance.request_id"] == denied.value.decision["request_id"]
    assert deny["clearance.ledger.index"] == denied.value.decision["index"]
    assert deny_span.parent is None  # no enclosing span: a root span
    approval = dict(approval_span.attributes or {})
    assert approval["gen_ai.security.decision.type"] == "deny"  # halted: spec value
    assert approval["clearance.decision.effect"] == "approval_required"
    assert approval["clearance.approval_id"] == pending.value.approval_id
    assert approval["clearance.decision.rules"] == ("big-payments-need-approval",)


def test_no_span_when_not_instrumented_or_after_undo(
    gate: Gate, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    tracer = provider.get_tracer("agent")
    with tracer.start_as_current_span("execute_tool read_file"):
        gate.authorize({"action": "read_file", "args": {"path": "a.txt"}})
    assert guardrail_spans(exporter) == []
    undo = instrument(gate, tracer_provider=provider)
    gate.authorize({"action": "read_file", "args": {"path": "b.txt"}})
    undo()
    gate.authorize({"action": "read_file", "args": {"path": "c.txt"}})
    assert len(guardrail_spans(exporter)) == 1


def test_a_failing_observer_never_changes_the_decision(gate: Gate) -> None:
    def broken(event: object) -> None:
        raise RuntimeError("telemetry backend down")

    gate.observe_decisions(broken)
    allowed = gate.authorize({"action": "read_file", "args": {"path": "a.txt"}})
    assert allowed.decision.effect == "allow"
    assert allowed.grant
    with pytest.raises(Denied):
        gate.authorize({"action": "delete_file", "args": {"path": "a.txt"}})
