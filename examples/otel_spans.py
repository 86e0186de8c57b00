"""Decisions as OpenTelemetry spans, offline: run ``python examples/otel_spans.py``.

A fresh home in a temporary directory, the example bundle, and an in-memory exporter in
place of your collector: one allowed read and one denied delete, each inside the agent's
own ``execute_tool`` span, print the ``apply_guardrail`` spans clearance adds as children.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import clearance
from clearance.integrations.otel import instrument


def main() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("example-agent")
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        subprocess.run([sys.executable, "-m", "clearance", "init", str(home)], check=True)
        gate = clearance.open_gate(home, principal="agent:ops-bot")
        undo = instrument(gate, tracer_provider=provider)
        try:
            read = {"action": "read_file", "args": {"path": "reports/q1.txt"}}
            with tracer.start_as_current_span("execute_tool read_file"), gate.clearance(read):
                pass
            with tracer.start_as_current_span("execute_tool delete_file"):
                try:
                    with gate.clearance({"action": "delete_file", "args": {"path": "a.txt"}}):
                        pass
                except clearance.Denied as denied:
                    print(f"denied: {', '.join(denied.reasons)}")
        finally:
            undo()
            gate.close()
    for span in exporter.get_finished_spans():
        if span.name.startswith("apply_guardrail"):
            attributes = span.attributes or {}
            parent = span.parent.span_id if span.parent else None
            print(
                f"{span.name}: decision={attributes.get('gen_ai.security.decision.type')} "
                f"effect={attributes.get('clearance.decision.effect')} "
                f"rules={attributes.get('gen_ai.security.policy.id')} "
                f"request={attributes.get('clearance.request_id')} "
                f"ledger_index={attributes.get('clearance.ledger.index')} parent={parent:#x}"
            )


if __name__ == "__main__":
    main()
