"""Compiling and statically checking one rule condition (a CEL ``when`` expression).

Every condition is compiled when its bundle loads, so a syntax error refuses the
bundle (fail-closed rule 2) instead of failing requests later. The check also
rejects, at load time:

* a variable other than the policy roots (:data:`ROOTS`) or the names bound by
  the comprehension macros ``all``, ``exists``, ``exists_one``, ``map`` and
  ``filter`` (``args.items.all(x, x.price < 10)`` binds ``x``);
* a comprehension variable that shadows a root (``.all(args, ...)``), which
  would make every static statement about ``args`` wrong;
* a function that is neither a CEL builtin of the binding (:data:`BUILTINS`) nor
  one of our helpers (:mod:`clearance._internal.policy.functions`). Namespaced functions
  such as ``math.greatest`` are unknown to the binding and fail as the unknown
  variable ``math``.

The program's own reference list (``Program.variables()``) is authoritative for
which names are used; the tokenizer of :mod:`clearance._internal.policy.cel_source` adds
what the list cannot say: which names a macro binds, and which field paths of a
root a condition reads. ``args.amount < 10 && trace.mandate.text == ""`` reads
the paths ``amount`` of ``args`` and ``mandate.text`` of ``trace``; a bare root
(``size(args)``) is read whole. The compiled program is then rewritten for speed
(data folded into literals, request paths flattened into variables), and the
rewrite is used only when the rewritten program provably reads nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import cel

from clearance._internal.policy.cel_source import (
    FLAT_ROOTS,
    Binding,
    Token,
    bound_names,
    flatten,
    fold_data,
    in_has,
    picked_key,
    root_references,
    tokenize,
)

__all__ = [
    "BUILTINS",
    "ROOTS",
    "Condition",
    "ConditionError",
    "Need",
    "compile_condition",
]

ROOTS: Final[tuple[str, ...]] = (
    "principal",
    "action",
    "resource",
    "args",
    "purpose",
    "input",
    "trace",
    "data",
    "now",
    "approval",
)
"""The variables a condition may read (docs/design.md §3)."""

BUILTINS: Final[frozenset[str]] = frozenset(
    {
        "contains",
        "size",
        "startsWith",
        "endsWith",
        "matches",
        "string",
        "bytes",
        "double",
        "int",
        "uint",
        "duration",
        "timestamp",
        "getFullYear",
        "getMonth",
        "getDayOfYear",
        "getDayOfMonth",
        "getDate",
        "getDayOfWeek",
        "getHours",
        "getMinutes",
        "getSeconds",
        "getMilliseconds",
        "dyn",
        "type",
    }
)
"""Named functions the CEL binding (common-expression-language 0.10) provides natively.

Operators (``_+_``, ``@in``, ``_[_]``, ...) and the macros ``has``, ``all``,
``exists``, ``exists_one``, ``map`` and ``filter`` are always available; a test
pins this list against the binding.
"""

_IDENT: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


Need: TypeAlias = "Mapping[str, Need] | None"
"""What a condition reads of a value: ``None`` for all of it, else field name → Need.

``{"mandate": {"text": None}, "depth": None}`` reads ``trace.mandate.text`` and
``trace.depth`` and nothing else of ``trace``.
"""


class ConditionError(ValueError):
    """A condition does not compile or references something it may not."""


@dataclass(frozen=True)
class Condition:
    """A compiled condition and what it reads.

    ``fields`` maps each root the source reads (``data`` included) to its
    :data:`Need`: the tree of field paths whose values it reads, or ``None`` for
    the whole value. ``program`` is the compiled, rewritten program and
    ``bindings`` the variables it reads (see :mod:`clearance._internal.policy.cel_source`).
    ``data_need`` is ``fields["data"]`` (``{}`` when absent), checked against the
    bundle's data at load. ``helpers`` names the helper functions it calls.
    """

    source: str
    program: cel.Program
    fields: Mapping[str, Need]
    bindings: tuple[Binding, ...]
    data_need: Need
    helpers: frozenset[str]

    @property
    def roots(self) -> frozenset[str]:
        """The root variables the source reads."""
        return frozenset(self.fields)


def _insert(tree: dict[str, Need], path: list[str]) -> None:
    """Record that ``path`` (non-empty) is read whole; a whole node absorbs deeper paths."""
    node: Need = tree
    for depth, name in enumerate(path):
        if node is None:
            return
        if depth == len(path) - 1:
            node[name] = None  # type: ignore[index]
            return
        child = node.get(name, {})
        if child is None:
            return
        node[name] = child  # type: ignore[index]
        node = child


def _needs(tokens: list[Token], roots: Collection[str]) -> dict[str, Need]:
    """For each root, the tree of field paths the condition reads the value of.

    A chain that is the argument of ``has(...)`` tests presence and reads no
    value, so it adds nothing to the tree (the root still appears). The map of
    a request variable handed to ``get`` with a literal key reads only that
    key's value. ``data.get("x", d)`` reads ``data`` whole, so a key it asks for
    need not exist (``get`` is for optional keys), unlike ``data.x``.
    """
    found: dict[str, Need] = {}
    for index, chain in root_references(tokens, roots):
        root = tokens[index].text
        tree = found.get(root, {})
        if tree is None:
            continue
        key = picked_key(tokens, index, chain) if root in FLAT_ROOTS else None
        if not chain and key is None:
            found[root] = None
            continue
        mutable = dict(tree)
        if key is not None:
            _insert(mutable, [*(tokens[k].text for k in chain), key])
        elif not in_has(tokens, index, chain):
            _insert(mutable, [tokens[k].text for k in chain])
        found[root] = mutable
    return found


def _cel_message(exc: Exception) -> str:
    text = str(exc).strip()
    return text.replace("Failed to parse expression", "syntax error in", 1)


def _compile(source: str) -> tuple[cel.Program, set[str], set[str]]:
    try:
        program = cel.compile(source)
        return program, set(program.variables()), set(program.functions())
    except Exception as exc:  # the binding raises ValueError; wrap whatever it raises
        raise ConditionError(_cel_message(exc)) from None


def _rewrite(
    source: str, fields: Mapping[str, Need], data: Mapping[str, Any] | None, bound: set[str]
) -> tuple[cel.Program, tuple[Binding, ...]] | None:
    """Fold data and flatten request variables; None when the result is not provably safe."""
    try:
        text = source
        if data is not None and "data" in fields:
            text = fold_data(text, tokenize(text), data)
        needs = {root: need for root, need in fields.items() if root != "data"}
        if "data" in fields and data is None:
            needs["data"] = None
        text, bindings = flatten(text, tokenize(text), needs)
        program, variables, _ = _compile(text)
    except (ConditionError, ValueError):
        return None
    provided = {binding.name for binding in bindings}
    if not variables <= provided | bound:
        return None
    return program, bindings


def compile_condition(
    source: str, *, helpers: Collection[str], data: Mapping[str, Any] | None = None
) -> Condition:
    """Compile ``source`` and check its references; raises ConditionError with the reason.

    With ``data`` (the bundle's data), reads of ``data`` are folded into CEL
    literals; reads of request variables are flattened into variables of their
    own (see :mod:`clearance._internal.policy.cel_source`). If either rewrite cannot be
    confirmed, the original program is used with whole variables.
    """
    program, variables, functions = _compile(source)
    tokens = tokenize(source)
    bound = bound_names(tokens)
    shadowing = sorted(bound & set(ROOTS))
    if shadowing:
        raise ConditionError(
            f"comprehension variable {shadowing[0]!r} shadows a policy variable; rename it"
        )
    reserved = sorted(name for name in bound if name.startswith("__"))
    if reserved:
        raise ConditionError(f"comprehension variable {reserved[0]!r} may not start with '__'")
    problems: list[str] = []
    unknown_vars = sorted(variables - set(ROOTS) - bound)
    if unknown_vars:
        problems.append(
            f"unknown variable(s) {', '.join(unknown_vars)} (allowed: {', '.join(ROOTS)})"
        )
    named = {name for name in functions if _IDENT.fullmatch(name)}
    unknown_funcs = sorted(named - BUILTINS - set(helpers))
    if unknown_funcs:
        problems.append(
            f"unknown function(s) {', '.join(unknown_funcs)} "
            f"(helpers: {', '.join(sorted(helpers))}; CEL builtins: {', '.join(sorted(BUILTINS))})"
        )
    if problems:
        raise ConditionError("; ".join(problems))
    used_roots = variables & set(ROOTS)
    selected = _needs(tokens, used_roots)
    fields = {root: selected.get(root) for root in sorted(used_roots)}
    rewritten = _rewrite(source, fields, data, bound)
    if rewritten is None:
        program_used, bindings = program, tuple(Binding(root, root) for root in fields)
    else:
        program_used, bindings = rewritten
    return Condition(
        source=source,
        program=program_used,
        fields=fields,
        bindings=bindings,
        data_need=fields.get("data", {}),
        helpers=frozenset(named & set(helpers)),
    )
