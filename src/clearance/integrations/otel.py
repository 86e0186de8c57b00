"""OpenTelemetry: every gate decision as an ``apply_guardrail`` span (``clearance[otel]``).

``instrument(gate)`` registers a decision observer
(:meth:`clearance.Gate.observe_decisions`); the core never imports OpenTelemetry, and
an uninstrumented gate makes no span and pays nothing. Each decision of
``gate.authorize`` / ``gate.clearance`` (allow, deny, approval required, and a gate
failure) becomes one span, so a decision is found from a trace in the observability
stack already in use, and from the span the ledger entry (request id, ledger index).

Conventions followed: OpenTelemetry semantic conventions for GenAI security operations,
"Apply guardrail" span (``span.gen_ai.apply_guardrail.internal``, status Development;
https://github.com/open-telemetry/semantic-conventions/blob/main/docs/gen-ai/gen-ai-security.md):

* span name ``apply_guardrail clearance`` (``apply_guardrail {gen_ai.guardian.name}``),
  kind ``INTERNAL``, parented on the caller's current span: guardian spans SHOULD be
  children of the operation they protect, here the caller's ``execute_tool`` span when
  there is one (the observer runs in the caller's context);
* ``gen_ai.operation.name`` = ``apply_guardrail``; ``gen_ai.security.target.type`` =
  ``tool_call``; ``gen_ai.security.target.id`` = the clearance request id;
  ``gen_ai.guardian.name`` / ``gen_ai.guardian.provider.name`` = ``clearance``,
  ``gen_ai.guardian.version`` = the installed clearance version;
* ``gen_ai.security.decision.type``: the spec's well-known values MUST be used when one
  applies, so ``allow`` is ``allow`` and both ``deny`` and ``approval_required`` are
  ``deny`` ("request denied and operation halted": an action waiting for a human does
  not run now). The precise effect is kept in ``clearance.decision.effect``;
* ``gen_ai.security.decision.reason``: the deciding rules' messages (policy text, never
  the intent's arguments: the spec says it MUST NOT carry user content);
  ``gen_ai.security.policy.id``: the deciding rule ids (comma-separated);
  ``gen_ai.security.policy.version``: the bundle digest (``sha256:…``);
* ``error.type`` and span status ``ERROR`` only when the gate itself failed
  (``ledger-unavailable``, ``gate-error``): a policy denial is a decision, not an error.

clearance's own attributes: ``clearance.request_id``, ``clearance.ledger.index``,
``clearance.decision.effect``, ``clearance.decision.rules`` (a string array),
``clearance.trace_id``, ``clearance.approval_id`` and ``gen_ai.tool.name`` (the action,
as the ``execute_tool`` span names it).
"""

from clearance.integrations._otel_spans import instrument, span_attributes

__all__ = ["instrument", "span_attributes"]
