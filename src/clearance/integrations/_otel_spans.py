"""The implementation of :mod:`clearance.integrations.otel` (read its docstring)."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from clearance._internal.gate.observers import DecisionEvent

try:
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as missing:  # pragma: no cover - exercised without the extra only
    raise ImportError(
        "clearance.integrations.otel needs OpenTelemetry: pip install 'clearance[otel]'"
    ) from missing

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from clearance._internal.gate.core import Gate

GUARDIAN = "clearance"
"""``gen_ai.guardian.name`` and ``gen_ai.guardian.provider.name`` of every span."""
SPAN_NAME = f"apply_guardrail {GUARDIAN}"
"""The name of every decision span (``apply_guardrail {gen_ai.guardian.name}``)."""

_DECISION_TYPE = {"allow": "allow", "deny": "deny", "approval_required": "deny"}


def _clearance_version() -> str:
    try:
        return version("clearance")
    except PackageNotFoundError:  # pragma: no cover - a source checkout without metadata
        return "unknown"


def _nanoseconds(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


def span_attributes(event: DecisionEvent) -> dict[str, str | int | list[str]]:
    """The attributes of the span of ``event`` (see the module docstring)."""
    attributes: dict[str, str | int | list[str]] = {
        "gen_ai.operation.name": "apply_guardrail",
        "gen_ai.security.target.type": "tool_call",
        "gen_ai.security.decision.type": _DECISION_TYPE.get(event.effect, "deny"),
        "gen_ai.guardian.name": GUARDIAN,
        "gen_ai.guardian.provider.name": GUARDIAN,
        "gen_ai.guardian.version": _clearance_version(),
        "gen_ai.tool.name": event.action,
        "clearance.decision.effect": event.effect,
        "clearance.decision.rules": list(event.rule_ids),
    }
    if event.reasons:
        attributes["gen_ai.security.policy.id"] = ",".join(event.rule_ids)
        attributes["gen_ai.security.decision.reason"] = "; ".join(m for _, m in event.reasons)
    if event.policy_digest is not None:
        attributes["gen_ai.security.policy.version"] = event.policy_digest
    if event.request_id is not None:
        attributes["gen_ai.security.target.id"] = event.request_id
        attributes["clearance.request_id"] = event.request_id
    if event.ledger_index is not None:
        attributes["clearance.ledger.index"] = event.ledger_index
    if event.trace_id is not None:
        attributes["clearance.trace_id"] = event.trace_id
    if event.approval_id is not None:
        attributes["clearance.approval_id"] = event.approval_id
    if event.failure is not None:
        attributes["error.type"] = event.failure
    return attributes


def instrument(gate: Gate, *, tracer_provider: TracerProvider | None = None) -> Callable[[], None]:
    """Make every decision of ``gate`` an ``apply_guardrail`` span; returns the undo.

    Spans go to ``tracer_provider`` (default: the global one,
    ``opentelemetry.trace.get_tracer_provider()``), each a child of the span current
    where ``gate.authorize`` / ``gate.clearance`` was called. Calling the returned
    function stops it (spans already ended stay exported).
    """
    tracer = trace.get_tracer(
        "clearance.integrations.otel", _clearance_version(), tracer_provider=tracer_provider
    )

    def record(event: DecisionEvent) -> None:
        span = tracer.start_span(
            SPAN_NAME,
            kind=SpanKind.INTERNAL,
            attributes=span_attributes(event),
            start_time=_nanoseconds(event.started),
        )
        if event.failure is not None:
            span.set_status(Status(StatusCode.ERROR, event.failure))
        span.end(end_time=_nanoseconds(max(event.ended, event.started)))

    return gate.observe_decisions(record)
