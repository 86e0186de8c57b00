"""Policy-author traps in a bundle that loads: the checks behind ``clearance policy lint``.

A bundle that loads is valid, not necessarily safe. :func:`lint_bundle` looks
for a few mistakes that load cleanly and then quietly weaken a rule. Invariants:

* Linting is pure and advisory. It reads a loaded :class:`Bundle` and returns
  warnings; it never changes the bundle, its canonical document, its digest or
  any decision. A gate logs the warnings when it loads a bundle
  (:mod:`clearance._internal.policy.reload`) and runs the bundle regardless.
* Warnings come in rule order; within a rule, the totals reads in order of
  first appearance, then the rule's actions in order. A repeated read or
  action gives one warning.

Codes
-----

``totals-negative``
    A rule reads ``trace.totals.<action>.<arg>`` while ``<arg>`` may be a
    negative number: a negative amount would lower the running total and
    reopen the cap. ``<arg>`` may be negative unless its property schema in
    the tool's ``args_schema`` (``properties.<arg>``, else
    ``additionalProperties`` when there are no ``patternProperties``) is
    ``false``, has a ``type`` without
    ``number``/``integer``, has a ``const``/``enum`` with no negative number,
    or has ``minimum >= 0`` or ``exclusiveMinimum >= 0``. A tool without
    ``args_schema``, a property the schema does not constrain and, with
    ``strict: false``, an action that is not a declared tool all allow
    negatives. Bounds expressed through ``allOf``, ``$ref`` and other keywords
    are not interpreted: put ``minimum: 0`` on the property itself. Under
    ``strict: true`` a read of an undeclared action is skipped (such a call is
    denied before any rule runs, so its totals stay empty).
``totals-sensitive``
    ``<arg>`` of such a read is listed in the tool's ``sensitive`` paths.
    Sensitive values are stored as salted digests and never count toward
    totals (:mod:`clearance._internal.gate.facts`), so the total stays 0 and the cap never
    binds. This replaces ``totals-negative`` for the same read.
``action-lookalike``
    With ``strict: false``, a rule names an action that is not a declared tool
    but differs from one only by ASCII case or ``-``/``_`` (``Pay-Invoice``
    while the tool is ``pay_invoice``). Actions match exactly, so the rule
    never applies to the tool, and an agent calling the look-alike name is not
    covered by the tool's ``args_schema``, ``sensitive`` or
    ``untrusted_output`` settings.
``action-undeclared``
    With ``strict: false`` in a bundle that declares tools, a rule names an
    action that is neither a declared tool nor a look-alike of one: calls to
    it run without any of the tool settings. (A bundle without a ``tools``
    section is not told about each of its actions.)
``provenance-unmarked``
    A rule calls ``from_untrusted`` while no tool is marked ``untrusted_output``,
    or ``carries_sensitive`` while none is marked ``sensitive_output``: no result
    is ever fingerprinted for it, so the helper always answers false.

How totals reads are found: the rule's ``when`` is tokenized with
:func:`clearance._internal.policy.cel_source.tokenize` (string literals and comments are
opaque, so text inside them never counts), and each use of the root ``trace``
is followed through selections ``.name`` and ``["name"]`` (a string literal
without escape sequences). So ``trace.totals.pay.amount``,
``trace.totals["pay-out"]["amount"]`` and mixtures are found, as is a read
inside ``has(...)``. A computed key (``trace.totals[args.kind]``) or a totals
map handed whole to a function is not: the lint is a net, not a proof.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from clearance._internal.policy.cel_source import Token, tokenize

if TYPE_CHECKING:  # bundle.py must stay importable without this module (no cycle)
    from clearance._internal.policy.bundle import Bundle, Rule, Tool

__all__ = ["CODES", "LintWarning", "lint_bundle", "totals_reads"]

CODES: Final = (
    "totals-negative",
    "totals-sensitive",
    "action-lookalike",
    "action-undeclared",
    "provenance-unmarked",
)
"""Every warning code, in the order the checks run."""


@dataclass(frozen=True)
class LintWarning:
    """One trap found in a bundle; ``rule`` is the rule's id (None for the bundle as a whole)."""

    code: str
    rule: str | None
    message: str

    def render(self) -> str:
        """``warning[CODE] rule ID: message``, the line ``clearance policy lint`` prints."""
        where = f" rule {self.rule}" if self.rule is not None else ""
        return f"warning[{self.code}]{where}: {self.message}"


def _string_value(text: str) -> str | None:
    """The value of a CEL string literal token, or None for bytes, escapes or no end quote."""
    prefix_len = len(text) - len(text.lstrip("rRbB"))
    prefix, body = text[:prefix_len], text[prefix_len:]
    if "b" in prefix.lower():
        return None
    quote = body[:3] if body[:3] in ('"""', "'''") else body[:1]
    if len(body) < 2 * len(quote) or not body.endswith(quote):
        return None
    value = body[len(quote) : len(body) - len(quote)]
    if "r" not in prefix.lower() and "\\" in value:
        return None  # an escape could spell anything; do not guess
    return value


def _selections(tokens: list[Token], root: int) -> list[str]:
    """The keys selected after ``tokens[root]``: ``.name`` and ``["name"]``, until anything else."""
    keys: list[str] = []
    j = root + 1
    while j + 1 < len(tokens):
        if tokens[j].is_punct(".") and tokens[j + 1].kind == "ident":
            if j + 2 < len(tokens) and tokens[j + 2].is_punct("("):
                break  # a method call such as .exists(...), not a field
            keys.append(tokens[j + 1].text)
            j += 2
        elif (
            tokens[j].is_punct("[")
            and tokens[j + 1].kind == "string"
            and j + 2 < len(tokens)
            and tokens[j + 2].is_punct("]")
        ):
            key = _string_value(tokens[j + 1].text)
            if key is None:
                break
            keys.append(key)
            j += 3
        else:
            break
    return keys


def totals_reads(source: str) -> list[tuple[str, str]]:
    """The ``(action, arg)`` pairs of ``trace.totals.<action>.<arg>`` read by a CEL condition.

    In order of first appearance, without duplicates; see the module docstring
    for which spellings are found.
    """
    tokens = tokenize(source)
    found: dict[tuple[str, str], None] = {}
    for i, token in enumerate(tokens):
        if token.kind != "ident" or token.text != "trace":
            continue
        if i > 0 and tokens[i - 1].is_punct("."):
            continue  # a field named trace, e.g. args.trace
        keys = _selections(tokens, i)
        if len(keys) >= 3 and keys[0] == "totals":
            found[(keys[1], keys[2])] = None
    return list(found)


def _negative_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value < 0


def _property_schema(schema: Mapping[str, Any], arg: str) -> Any:
    """The schema ``args.<arg>`` must satisfy; ``True`` when nothing constrains it."""
    properties = schema.get("properties")
    if isinstance(properties, Mapping) and arg in properties:
        return properties[arg]
    if "patternProperties" in schema:
        return True  # a pattern may admit the arg past additionalProperties: assume anything
    return schema.get("additionalProperties", True)


def _may_be_negative(prop: Any) -> bool:
    """Whether a value accepted by the property schema ``prop`` may be a negative number."""
    if prop is False:
        return False
    if not isinstance(prop, Mapping):
        return True
    kind = prop.get("type")
    if kind is not None:
        kinds = set(kind) if isinstance(kind, list) else {kind}
        if not kinds & {"number", "integer"}:
            return False  # facts total numbers only, so a non-number never counts
    if "const" in prop:
        return _negative_number(prop["const"])
    enum = prop.get("enum")
    if isinstance(enum, list):
        return any(_negative_number(option) for option in enum)
    for key in ("minimum", "exclusiveMinimum"):
        bound = prop.get(key)
        if isinstance(bound, int | float) and not isinstance(bound, bool) and bound >= 0:
            return False
    return True


def _check_totals(bundle: Bundle, rule: Rule) -> list[LintWarning]:
    warnings: list[LintWarning] = []
    for action, arg in totals_reads(rule.when):
        read = f"trace.totals.{action}.{arg}"
        tool: Tool | None = bundle.tools.get(action)
        if tool is None and bundle.strict:
            continue
        if tool is not None and arg in tool.sensitive:
            warnings.append(
                LintWarning(
                    "totals-sensitive",
                    rule.id,
                    f"reads {read}, but {arg!r} is listed in tools.{action}.sensitive: "
                    "sensitive values are stored as salted digests and never count toward "
                    "totals, so the total stays 0 and the cap never binds",
                )
            )
            continue
        if tool is None:
            why = f"{action!r} is not a declared tool, so nothing checks its arguments"
        elif tool.schema is None:
            why = f"tools.{action} has no args_schema"
        elif _may_be_negative(_property_schema(tool.schema.schema, arg)):
            why = f"tools.{action}.args_schema lets {arg!r} be negative"
        else:
            continue
        warnings.append(
            LintWarning(
                "totals-negative",
                rule.id,
                f"reads {read}, but {why}: a negative amount would lower the running total "
                f"and reopen the cap (give properties.{arg} minimum: 0)",
            )
        )
    return warnings


def _action_key(name: str) -> str:
    # Action names are ASCII (ACTION_PATTERN), so lower() folds ASCII case only.
    return name.lower().replace("-", "_")


def _check_actions(bundle: Bundle, rule: Rule) -> list[LintWarning]:
    if bundle.strict:
        return []  # strict bundles refuse undeclared rule actions at load
    by_key: dict[str, list[str]] = {}
    for name in bundle.tools:
        by_key.setdefault(_action_key(name), []).append(name)
    warnings: list[LintWarning] = []
    for action in dict.fromkeys(rule.actions):
        if action == "*" or action in bundle.tools:
            continue
        twins = by_key.get(_action_key(action))
        if twins:
            named = " or ".join(repr(name) for name in twins)
            warnings.append(
                LintWarning(
                    "action-lookalike",
                    rule.id,
                    f"names action {action!r}, which is not a declared tool but differs from "
                    f"{named} only by case or -/_: actions match exactly, so this rule never "
                    f"applies to {named}, and with strict: false an agent calling {action!r} "
                    "is not covered by that tool's args_schema, sensitive or untrusted_output "
                    "settings",
                )
            )
        elif bundle.tools:
            warnings.append(
                LintWarning(
                    "action-undeclared",
                    rule.id,
                    f"names action {action!r}, which is not under tools: with strict: false "
                    "a call to it runs without args_schema, sensitive or untrusted_output "
                    "settings (declare it, or set strict: true)",
                )
            )
    return warnings


_MARKS: Final = (("from_untrusted", "untrusted_output"), ("carries_sensitive", "sensitive_output"))


def _check_provenance(bundle: Bundle, rule: Rule) -> list[LintWarning]:
    warnings: list[LintWarning] = []
    for helper, mark in _MARKS:
        if helper in rule.condition.helpers and not any(
            getattr(tool, mark) for tool in bundle.tools.values()
        ):
            warnings.append(
                LintWarning(
                    "provenance-unmarked",
                    rule.id,
                    f"calls {helper}(), but no tool is marked {mark}: no result is ever "
                    "fingerprinted for it, so it always answers false",
                )
            )
    return warnings


def lint_bundle(bundle: Bundle) -> list[LintWarning]:
    """Every warning for ``bundle``, in rule order; empty when it lints clean."""
    warnings: list[LintWarning] = []
    for rule in bundle.rules:
        warnings.extend(_check_totals(bundle, rule))
        warnings.extend(_check_actions(bundle, rule))
        warnings.extend(_check_provenance(bundle, rule))
    return warnings
