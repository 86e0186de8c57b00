"""The default policy engine: CEL conditions over a validated bundle.

Invariants (in addition to those of :mod:`clearance._internal.policy.engine`):

* Order of checks: a strict bundle denies an action missing from ``tools``
  (``unknown-action``); then the tool's ``args_schema`` is checked
  (``args-schema``); only then are rules evaluated. Nothing matching, or no
  rules at all, denies with ``default-deny`` (fail-closed rule 1).
* Combining (docs/design.md §3): deny rules are evaluated first; any that matches
  decides ``deny``. Otherwise every remaining candidate is evaluated, so that a
  failing rule of any effect is seen; then ``approval_required`` beats ``allow``.
  The reasons list every matching rule of the winning effect, in bundle order.
* A rule that raises, or returns anything but a bool, makes the decision
  ``deny`` with the reason ``{rule: <id>, message: "rule <id> failed: ..."}``
  (fail-closed rule 3). Errors of helper functions count the same way.
* Indexing: rules are grouped by action when the engine is built; an action's
  candidates are its own rules plus the ``*`` rules, in bundle order. A rule for
  another action is never evaluated, so its cost and its failures never touch
  this action.

Variables (docs/design.md §3): ``principal`` is ``{"id": <id>, "attrs": <registry
attributes, or {} for an unregistered principal>}``; ``action``; ``resource``,
``purpose``, ``input`` and ``approval`` (``null`` when absent); ``args``;
``trace`` (the gate's facts, as given); ``data`` (the bundle's); ``now`` (a
timezone-aware time, a CEL timestamp; a naive time is a PolicyError). The
helpers ``from_untrusted`` and ``carries_sensitive`` are bound, per decision, to
the request's :attr:`~clearance._internal.policy.engine.EvaluationInput.provenance`
(:mod:`clearance._internal.policy.provenance`).

Numbers: every JSON number a condition sees is a CEL ``double`` (CEL's own JSON
convention), in ``args``, ``input``, ``trace``, ``principal.attrs``, ``data``
and ``approval``; booleans stay booleans
(:func:`clearance._internal.policy.cel_source.cel_value`). The intent digest,
the grant and the ledger hold a JSON number as a number (RFC 8785 writes
``60.0`` as ``60``), so ``60``, ``60.0`` and ``6e1`` decide alike and a live
decision equals its replay from the ledger. Rule literals stay as written:
comparisons across ``int`` and ``double`` work (``args.n == 3``,
``args.n < 5``), arithmetic does not (``args.n + 1`` fails the rule with
"Unsupported operation: double + int"), so write numeric literals with a
decimal point in arithmetic (``args.n + 1.0``) or convert with ``double()`` /
``int()``; index a list with ``int(args.i)``.

Performance (common-expression-language 0.10, measured): converting a Python
value into CEL costs 1.5-2.5 µs per string, map key or map (the binding tries
several failed conversions first); a context copies every variable it holds
before the first evaluation after a change; selecting a field copies the
field's value. So the engine never keeps ``data`` or whole request maps in a
context:

* the bundle's ``data`` is folded into each condition as CEL literals at load,
  and ``args.amount`` or ``trace.mandate.text`` become variables of their own
  (:mod:`clearance._internal.policy.cel_source`; both rewrites are exact and checked);
* per decision the engine builds one fresh context holding exactly the values
  the action's rules read (about a dozen scalars for a realistic
  action), so contexts are never shared between threads or decisions and no
  stale value can leak from one decision into the next;
* the tool's argument schema uses a compiled checker for the common keywords
  (:mod:`clearance._internal.policy.schema`).

:func:`clearance._bench.policy.decision_benchmark` measures the result.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import cel

from clearance._internal.canonical import json_digest
from clearance._internal.policy.bundle import (
    EMPTY_DOCUMENT,
    Bundle,
    Rule,
    bundle_from_document,
    load_bundle,
)
from clearance._internal.policy.cel_source import Binding, binding_values
from clearance._internal.policy.engine import Decision, Effect, EvaluationInput, Reason, ToolSpec
from clearance._internal.policy.functions import HELPERS, PROVENANCE_HELPERS
from clearance.errors import PolicyError

__all__ = ["DENY_ALL_DIGEST", "CelPolicyEngine", "DenyAllEngine"]

DENY_ALL_DIGEST: Final[str] = json_digest(dict(EMPTY_DOCUMENT))
"""Digest of the empty canonical document: the policy in force when nothing is loaded.

The document's RFC 8785 bytes are
``{"data":{},"principals":{},"rules":[],"strict":false,"tools":{},"version":1}``
and the digest is
``sha256:ccfb7d1817eca5c48ee1d175bb84cc2b9100b9c583916b8fc6800b39ac451eaa``
(a test pins both).
"""

_DEFAULT_DENY: Final = Reason("default-deny", "no rule allows this action")
_CANDIDATE_CACHE_LIMIT: Final = 4096
_UNDEFINED: Final = re.compile(r"Undefined variable or function: '([^']+)'")
_OPERATION: Final = re.compile(r"Unsupported operation: (\w+) (\S+) (\w+)")
_CEL_TYPE_NAMES: Final = {"float": "double", "str": "string", "dict": "map", "NoneType": "null"}
_NUMBER_HINT: Final = (
    " (every number a policy reads is a double: write numeric literals with a decimal "
    "point, 1.0 not 1, or convert with double() or int())"
)


@dataclass(frozen=True)
class _Plan:
    """Everything precomputed for one action: its rules, their variables and helpers."""

    rules: tuple[Rule, ...]
    bindings: tuple[Binding, ...]
    names: Mapping[str, Binding]
    functions: dict[str, Callable[..., Any]]
    provenance: bool
    """Some rule calls a provenance helper: bind them to the request's view."""


def _make_plan(rules: tuple[Rule, ...]) -> _Plan:
    names: dict[str, Binding] = {}
    for rule in rules:
        for binding in rule.condition.bindings:
            names.setdefault(binding.name, binding)
    helpers = sorted({h for rule in rules for h in rule.condition.helpers})
    functions = {name: HELPERS[name] for name in helpers}
    provenance = any(name in PROVENANCE_HELPERS for name in helpers)
    return _Plan(rules, tuple(names.values()), names, functions, provenance)


def _cel_type_name(value: object) -> str:
    name = type(value).__name__
    return _CEL_TYPE_NAMES.get(name, name)


def _describe_error(exc: Exception, plan: _Plan) -> str:
    if isinstance(exc, KeyError):
        return f"no such key: {exc.args[0] if exc.args else '?'}"
    text = str(exc).strip() or type(exc).__name__
    undefined = _UNDEFINED.search(text)
    if undefined and undefined.group(1) in plan.names:
        binding = plan.names[undefined.group(1)]
        if binding.test:
            return (
                f"cannot evaluate {binding.describe()}: a step of the path is missing or not a map"
            )
        return f"no value at {binding.describe()} (missing key, or a step is not a map)"
    for noise in (". Check ", ". CEL does not coerce", ". Convert explicitly"):
        cut = text.find(noise)
        if cut > 0:
            text = text[:cut]
    # The binding names operand types as Python does; policy authors read CEL.
    operation = _OPERATION.match(text)
    if operation:
        left, right = (_CEL_TYPE_NAMES.get(t, t) for t in operation.group(1, 3))
        text = f"Unsupported operation: {left} {operation.group(2)} {right}"
        if {left, right} in ({"double", "int"}, {"double", "uint"}):
            text += _NUMBER_HINT
    elif text.startswith("No such overload") or "got 'double', want 'int" in text:
        text += _NUMBER_HINT
    return text


class CelPolicyEngine:
    """A :class:`~clearance._internal.policy.engine.PolicyEngine` over one validated bundle."""

    def __init__(self, bundle: Bundle) -> None:
        """Index ``bundle``'s rules by action; prefer the ``from_*`` constructors."""
        self._bundle = bundle
        wildcard = tuple(rule for rule in bundle.rules if "*" in rule.actions)
        actions = {a for rule in bundle.rules for a in rule.actions if a != "*"} | set(bundle.tools)
        self._plans: dict[str, _Plan] = {}
        for action in sorted(actions):
            rules = tuple(r for r in bundle.rules if "*" in r.actions or action in r.actions)
            self._plans[action] = _make_plan(rules)
        self._other = _make_plan(wildcard)
        self._tool_specs = {name: tool.spec() for name, tool in bundle.tools.items()}
        self._candidates: dict[tuple[str, str], tuple[tuple[Rule, ...], tuple[Rule, ...]]] = {}

    @classmethod
    def from_directory(cls, path: str | Path) -> CelPolicyEngine:
        """Load the YAML bundle at ``path`` (a directory or one file)."""
        return cls(load_bundle(path))

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> CelPolicyEngine:
        """Rebuild the engine from a canonical document, e.g. one logged in a ``policy`` entry."""
        return cls(bundle_from_document(document))

    @property
    def bundle(self) -> Bundle:
        """The validated bundle this engine evaluates."""
        return self._bundle

    @property
    def digest(self) -> str:
        """``sha256:`` digest of the bundle's canonical document."""
        return self._bundle.digest

    def document(self) -> dict[str, Any]:
        """A copy of the canonical document (what the digest covers)."""
        return _document_copy(self._bundle.document)

    def tool(self, action: str) -> ToolSpec | None:
        """The registry entry for ``action``, or None when the bundle does not list it."""
        return self._tool_specs.get(action)

    def principal_attributes(self, principal: str) -> Mapping[str, Any]:
        """Trusted attributes of ``principal`` from the bundle's registry (empty if unknown)."""
        return self._bundle.principals.get(principal, {})

    def _split(self, action: str, principal: str) -> tuple[tuple[Rule, ...], tuple[Rule, ...]]:
        """The candidate rules for (action, principal): deny rules, then the others."""
        key = (action, principal)
        found = self._candidates.get(key)
        if found is None:
            plan = self._plans.get(action, self._other)
            matching = [rule for rule in plan.rules if rule.matches_principal(principal)]
            found = (
                tuple(rule for rule in matching if rule.effect == "deny"),
                tuple(rule for rule in matching if rule.effect != "deny"),
            )
            if len(self._candidates) >= _CANDIDATE_CACHE_LIMIT:
                self._candidates.clear()
            self._candidates[key] = found
        return found

    def _context(self, plan: _Plan, request: EvaluationInput) -> cel.Context:
        """A fresh CEL context holding exactly the variables ``plan``'s rules read."""
        roots = {
            "principal": {
                "id": request.principal,
                "attrs": self._bundle.principals.get(request.principal, {}),
            },
            "action": request.action,
            "resource": request.resource,
            "args": request.args,
            "purpose": request.purpose,
            "input": request.input,
            "trace": request.trace,
            "now": request.now,
            "approval": request.approval,
            "data": self._bundle.data,
        }
        functions = plan.functions
        if plan.provenance:
            # Bound per decision: the helpers answer from this request's view only.
            functions = {**functions, **request.provenance.helpers()}
        try:
            return cel.Context(variables=binding_values(plan.bindings, roots), functions=functions)
        except (ValueError, TypeError, OverflowError) as exc:
            raise PolicyError(f"cannot pass the request to CEL: {exc}") from None

    def evaluate(self, request: EvaluationInput) -> Decision:
        """Decide ``request``; see the module invariants."""
        if request.now.tzinfo is None or request.now.utcoffset() is None:
            raise PolicyError("evaluation time must be timezone-aware")
        bundle = self._bundle
        action = request.action
        tool = bundle.tools.get(action)
        if tool is None and bundle.strict:
            reason = Reason(
                "unknown-action", f"action {action!r} is not listed under tools (strict)"
            )
            return Decision("deny", (reason,), bundle.digest)
        if tool is not None and tool.schema is not None:
            violation = tool.schema.violation(request.args, unseen=request.redacted)
            if violation is not None:
                return Decision("deny", (Reason("args-schema", violation),), bundle.digest)
        denies, others = self._split(action, request.principal)
        if not denies and not others:
            return Decision("deny", (_DEFAULT_DENY,), bundle.digest)
        plan = self._plans.get(action, self._other)
        context = self._context(plan, request)
        failures: list[Reason] = []
        denied = _run(denies, context, plan, failures)
        if denied or failures:
            return Decision("deny", tuple(_matched(denied) + failures), bundle.digest)
        matched = _run(others, context, plan, failures)
        if failures:
            return Decision("deny", tuple(failures), bundle.digest)
        effects: tuple[Effect, ...] = ("approval_required", "allow")
        for effect in effects:
            winners = [rule for rule in matched if rule.effect == effect]
            if winners:
                return Decision(effect, tuple(_matched(winners)), bundle.digest)
        return Decision("deny", (_DEFAULT_DENY,), bundle.digest)


def _run(
    rules: tuple[Rule, ...], context: cel.Context, plan: _Plan, failures: list[Reason]
) -> list[Rule]:
    matched: list[Rule] = []
    for rule in rules:
        if rule.when == "true":
            matched.append(rule)
            continue
        try:
            result = rule.condition.program.execute(context)
        except Exception as exc:  # any failure of a rule denies (fail-closed rule 3)
            failures.append(Reason(rule.id, f"rule {rule.id} failed: {_describe_error(exc, plan)}"))
            continue
        except BaseException as exc:
            # A Rust panic in the binding surfaces as pyo3's PanicException, which
            # derives from BaseException; it is a rule failure too, not a crash.
            if type(exc).__name__ != "PanicException":
                raise
            failures.append(Reason(rule.id, f"rule {rule.id} failed: internal CEL error"))
            continue
        if result is True:
            matched.append(rule)
        elif result is not False:
            kind = _cel_type_name(result)
            failures.append(
                Reason(rule.id, f"rule {rule.id} failed: returned {kind} instead of a bool")
            )
    return matched


def _matched(rules: list[Rule]) -> list[Reason]:
    return [Reason(rule.id, rule.message or f"matched rule {rule.id}") for rule in rules]


def _json_copy(value: Any) -> Any:
    """A deep copy of a JSON value (dicts and lists copied; scalars shared)."""
    if isinstance(value, Mapping):
        return {key: _json_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_copy(item) for item in value]
    return value


def _document_copy(document: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _json_copy(value) for key, value in document.items()}


class DenyAllEngine:
    """The engine in force when no bundle is loaded: every decision is ``default-deny``.

    Its digest is :data:`DENY_ALL_DIGEST`, the digest of the empty canonical
    document ``{"version": 1, "strict": false, "principals": {}, "tools": {},
    "data": {}, "rules": []}`` (fail-closed rule 1). A loaded bundle with no
    rules at all has the same document, the same digest and the same behaviour.
    """

    @property
    def digest(self) -> str:
        """:data:`DENY_ALL_DIGEST`."""
        return DENY_ALL_DIGEST

    def document(self) -> dict[str, Any]:
        """The empty canonical document."""
        return _document_copy(EMPTY_DOCUMENT)

    def tool(self, action: str) -> ToolSpec | None:
        """Always None: nothing is registered."""
        return None

    def principal_attributes(self, principal: str) -> Mapping[str, Any]:
        """Always empty."""
        return {}

    def evaluate(self, request: EvaluationInput) -> Decision:
        """Deny, with the reason ``default-deny``."""
        return Decision("deny", (_DEFAULT_DENY,), DENY_ALL_DIGEST)
