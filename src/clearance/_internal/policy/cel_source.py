"""CEL source analysis and the two rewrites that make conditions cheap to evaluate.

A small tokenizer (strings, bytes and ``//`` comments are opaque tokens) finds
every use of a policy variable and the chain of ``.field`` selections after it.
A chain ends at anything but ``.identifier``: an index (``args.to["x"]``), a
method call (``args.to.contains(..)``), a macro (``trace.actions.exists(..)``),
an operator. The tokenizer never needs to be complete: each rewrite is checked
by compiling its output and confirming that the program reads only the names
the rewrite provides; otherwise the original program is used.

Rewrites (both exact: the rewritten program gives the same result or the same
kind of failure as the original for every input):

* **Folding data** (:func:`fold_data`). ``data`` is constant for a bundle, so
  ``data.payees`` becomes the literal ``(["acme", "globex"])`` and
  ``has(data.limits.eur)`` becomes ``true`` or ``false``. A chain is folded
  only as far as the data defines it (``data.a.missing`` keeps ``.missing``,
  which fails at run time exactly as before).
* **Flattening request variables** (:func:`flatten`). The binding converts
  every map key and value from Python on each decision, at about 2 µs each,
  so ``args.amount`` becomes a variable of its own holding just that value,
  and ``has(args.card.number)`` becomes a variable holding the answer. The
  engine binds such a variable only when the path exists (a missing key
  leaves it unbound, and reading an unbound variable fails, as reading a
  missing key does). The map handed to the helper ``get`` with a plain string
  literal key (``args.get("memo", "")`` or ``get(args.card, "number", "")``)
  becomes a variable holding a map of at most that one entry: ``get`` reads
  nothing else of it, and when the map itself is missing or is not a map the
  variable is unbound, so the rule fails as ``get`` would. A use of the whole
  root (``size(args)``) keeps the root.

Values (:func:`cel_value`, :func:`cel_literal`): every JSON number a condition
sees is a CEL ``double``, whether it is bound, folded from ``data`` or read
through a whole root; see :func:`cel_value` for why.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "FLAT_ROOTS",
    "Binding",
    "Token",
    "binding_values",
    "bound_names",
    "cel_literal",
    "cel_value",
    "flatten",
    "fold_data",
    "in_has",
    "picked_key",
    "root_references",
    "tokenize",
]

MACROS: Final = frozenset({"all", "exists", "exists_one", "map", "filter"})
FLAT_ROOTS: Final = ("principal", "args", "trace", "input", "approval")
"""Map-valued request variables whose selections are flattened into variables of their own."""

_TOKEN: Final = re.compile(
    r"""
      (?P<space>\s+|//[^\n]*)
    | (?P<string>(?:[rR][bB]?|[bB][rR]?)?(?:\"\"\"|'''|"|'))
    | (?P<number>0[xX][0-9a-fA-F]+[uU]?|(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[uU]?)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<quoted>`[^`]*`)
    | (?P<punct>.)
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class Token:
    """One significant token: ``kind`` is ident, string, number, quoted or punct."""

    kind: str
    text: str
    start: int
    end: int

    def is_punct(self, text: str) -> bool:
        """Whether this is the punctuation ``text``."""
        return self.kind == "punct" and self.text == text


def _string_end(source: str, start: int, prefix: str) -> int:
    """Index just past the string literal starting at ``start`` (prefix included)."""
    raw = "r" in prefix.lower()
    pos = start + len(prefix)
    quote = source[pos : pos + 3] if source[pos : pos + 3] in ('"""', "'''") else source[pos]
    pos += len(quote)
    while pos < len(source):
        if not raw and source[pos] == "\\":
            pos += 2
            continue
        if source.startswith(quote, pos):
            return pos + len(quote)
        if len(quote) == 1 and source[pos] == "\n":
            break
        pos += 1
    return len(source)


def tokenize(source: str) -> list[Token]:
    """Significant tokens of ``source``; strings and comments are opaque."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if match is None:  # pragma: no cover - the pattern's last branch matches any char
            break
        kind = match.lastgroup or "punct"
        end = match.end()
        if kind == "string":
            prefix = re.match(r"[rRbB]*", source[pos:])
            end = _string_end(source, pos, prefix.group(0) if prefix else "")
        if kind != "space":
            tokens.append(Token(kind, source[pos:end], pos, end))
        pos = end
    return tokens


def bound_names(tokens: list[Token]) -> set[str]:
    """Names bound by comprehension macros: ``. macro ( name ,``."""
    bound: set[str] = set()
    for i in range(len(tokens) - 4):
        if (
            tokens[i].is_punct(".")
            and tokens[i + 1].kind == "ident"
            and tokens[i + 1].text in MACROS
            and tokens[i + 2].is_punct("(")
            and tokens[i + 3].kind == "ident"
            and tokens[i + 4].is_punct(",")
        ):
            bound.add(tokens[i + 3].text)
    return bound


def root_references(tokens: list[Token], roots: Collection[str]) -> list[tuple[int, list[int]]]:
    """Each use of a root variable: its token index and the token indexes of its field chain.

    The chain is the run of ``.field`` selections that follows the root, ending
    before an index, a method call or any other token.
    """
    found: list[tuple[int, list[int]]] = []
    for i, token in enumerate(tokens):
        if token.kind != "ident" or token.text not in roots:
            continue
        if i > 0 and tokens[i - 1].is_punct("."):
            continue  # a field named like a root, e.g. args.data
        if i + 1 < len(tokens) and tokens[i + 1].is_punct("("):
            continue  # a function call, not a variable
        chain: list[int] = []
        j = i + 1
        while (
            j + 1 < len(tokens)
            and tokens[j].is_punct(".")
            and tokens[j + 1].kind == "ident"
            and not (j + 2 < len(tokens) and tokens[j + 2].is_punct("("))
        ):
            chain.append(j + 1)
            j += 2
        found.append((i, chain))
    return found


def cel_literal(value: Any) -> str:
    """CEL source for a JSON value (strings via JSON escapes, which CEL shares).

    Every number is written as a CEL double (``100`` becomes ``100.0``), so that
    folded ``data`` holds the same values as ``data`` bound whole: see
    :func:`cel_value`.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        number = cel_value(value)
        text = repr(number)  # a finite float's repr always has a "." or an exponent
        if not math.isfinite(number):
            raise ValueError(f"cannot write {text} as a CEL literal")
        return f"({text})" if number < 0 else text
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(cel_literal(item) for item in value) + "]"
    if isinstance(value, Mapping):
        items = (
            f"{json.dumps(str(k), ensure_ascii=False)}: {cel_literal(v)}" for k, v in value.items()
        )
        return "{" + ", ".join(items) + "}"
    raise ValueError(f"cannot write a {type(value).__name__} as a CEL literal")


def _resolve(data: Mapping[str, Any], names: list[str]) -> tuple[Any, int]:
    """Walk ``names`` into ``data`` while maps define them: (value reached, names used)."""
    value: Any = data
    used = 0
    for name in names:
        if not isinstance(value, Mapping) or name not in value:
            break
        value = value[name]
        used += 1
    return value, used


def in_has(tokens: list[Token], index: int, chain: list[int]) -> bool:
    """Whether the reference at ``index`` with ``chain`` is exactly the argument of ``has(...)``."""
    if not chain or index < 2:
        return False
    last = chain[-1]
    return (
        tokens[index - 1].is_punct("(")
        and tokens[index - 2].kind == "ident"
        and tokens[index - 2].text == "has"
        and not (index >= 3 and tokens[index - 3].is_punct("."))
        and last + 1 < len(tokens)
        and tokens[last + 1].is_punct(")")
    )


_PLAIN_STRING: Final = re.compile(r"\"([^\"\\\n]*)\"|'([^'\\\n]*)'")


def picked_key(tokens: list[Token], index: int, chain: list[int]) -> str | None:
    """The key when the reference at ``index`` is the map of ``get(map, "key", ...)``.

    Both call styles count: ``args.card.get("number", d)`` and
    ``get(args.card, "number", d)``. The key must be a plain string literal
    (quoted, no prefix, no escapes); anything else returns None.
    """
    last = chain[-1] if chain else index
    if (
        last + 5 < len(tokens)
        and tokens[last + 1].is_punct(".")
        and tokens[last + 2].kind == "ident"
        and tokens[last + 2].text == "get"
        and tokens[last + 3].is_punct("(")
        and tokens[last + 4].kind == "string"
        and tokens[last + 5].is_punct(",")
    ):
        literal = tokens[last + 4].text
    elif (
        index >= 2
        and tokens[index - 1].is_punct("(")
        and tokens[index - 2].kind == "ident"
        and tokens[index - 2].text == "get"
        and not (index >= 3 and tokens[index - 3].is_punct("."))
        and last + 3 < len(tokens)
        and tokens[last + 1].is_punct(",")
        and tokens[last + 2].kind == "string"
        and tokens[last + 3].is_punct(",")
    ):
        literal = tokens[last + 2].text
    else:
        return None
    plain = _PLAIN_STRING.fullmatch(literal)
    if plain is None:
        return None
    return plain.group(1) if plain.group(1) is not None else plain.group(2)


def fold_data(source: str, tokens: list[Token], data: Mapping[str, Any]) -> str:
    """``source`` with every read of ``data`` replaced by the literal value it reads."""
    pieces: list[str] = []
    cursor = 0
    for index, chain in root_references(tokens, ("data",)):
        names = [tokens[k].text for k in chain]
        testing = in_has(tokens, index, chain)
        if testing:
            parent, used = _resolve(data, names[:-1])
            if used == len(names) - 1 and isinstance(parent, Mapping):
                pieces.append(source[cursor : tokens[index - 2].start])
                pieces.append("true" if names[-1] in parent else "false")
                cursor = tokens[chain[-1] + 1].end
                continue
        value, used = _resolve(data, names[:-1] if testing else names)
        end = tokens[chain[used - 1]].end if used else tokens[index].end
        pieces.append(source[cursor : tokens[index].start])
        pieces.append("(" + cel_literal(value) + ")")
        cursor = end
    pieces.append(source[cursor:])
    return "".join(pieces)


@dataclass(frozen=True)
class Binding:
    """A variable the compiled program reads, and how the engine computes it.

    ``path == ()`` binds the whole root under its own name. Otherwise ``name``
    holds the value at ``path`` inside ``root``; when ``test``, whether the
    last key of ``path`` is present (``has``); when ``pick``, the map at
    ``path`` without its last key, reduced to at most that key's entry (the
    map argument of ``get``).
    """

    name: str
    root: str
    path: tuple[str, ...] = ()
    test: bool = False
    pick: bool = False
    steps: tuple[str, ...] = field(init=False, repr=False, compare=False)
    """The keys to walk before binding: ``path`` without its last key for a test or a pick."""

    def __post_init__(self) -> None:
        # Frozen dataclass: object.__setattr__ is the sanctioned way to cache a derived field.
        object.__setattr__(self, "steps", self.path[:-1] if self.test or self.pick else self.path)

    def describe(self) -> str:
        """The expression this binding stands for, e.g. ``args.card.number``."""
        if self.pick:
            parent = ".".join((self.root, *self.steps))
            return f"{parent}.get({json.dumps(self.path[-1], ensure_ascii=False)})"
        text = ".".join((self.root, *self.path))
        return f"has({text})" if self.test else text


def _flat_name(root: str, path: list[str], kind: str) -> str:
    # Length-prefixed parts keep the encoding injective; users cannot bind "__" names.
    # kind: "v" a value, "h" a has() test, "g" the one-entry map of a get().
    return f"__{kind}_{root}" + "".join(f"_{len(p)}{p}" for p in path)


def flatten(
    source: str, tokens: list[Token], needs: Mapping[str, Any]
) -> tuple[str, tuple[Binding, ...]]:
    """Replace selections from :data:`FLAT_ROOTS` by variables of their own.

    ``needs`` maps each root the source reads to its need tree (``None`` for the
    whole value). Returns the new source and the bindings it reads.
    """
    bindings: dict[str, Binding] = {}
    for root, need in needs.items():
        if root not in FLAT_ROOTS or need is None:
            bindings[root] = Binding(root, root)
    flat = [root for root in FLAT_ROOTS if root in needs and needs[root] is not None]
    pieces: list[str] = []
    cursor = 0
    for index, chain in root_references(tokens, flat):
        root = tokens[index].text
        names = [tokens[k].text for k in chain]
        key = picked_key(tokens, index, chain)
        if key is not None:
            path = (*names, key)
            binding = Binding(_flat_name(root, list(path), "g"), root, path, pick=True)
            start, end = tokens[index].start, tokens[chain[-1] if chain else index].end
        elif not chain:  # cannot happen for a root with a need tree; keep the root to be safe
            bindings[root] = Binding(root, root)
            continue
        elif in_has(tokens, index, chain):
            binding = Binding(_flat_name(root, names, "h"), root, tuple(names), True)
            start, end = tokens[index - 2].start, tokens[chain[-1] + 1].end
        else:
            node = needs[root]
            used = 0
            for name in names:
                used += 1
                node = node.get(name) if isinstance(node, Mapping) else None
                if node is None:
                    break
            path = tuple(names[:used])
            binding = Binding(_flat_name(root, list(path), "v"), root, path)
            start, end = tokens[index].start, tokens[chain[used - 1]].end
        pieces.append(source[cursor:start])
        pieces.append(binding.name)
        cursor = end
        bindings[binding.name] = binding
    pieces.append(source[cursor:])
    return "".join(pieces), tuple(bindings.values())


def cel_value(value: Any) -> Any:
    """The value a condition sees for the JSON value ``value``: every number a CEL double.

    Invariant: two JSON values that RFC 8785 writes alike are converted to the
    same value, type for type. The digest, the grant and the ledger hold a JSON
    number as a number (``60``, ``60.0`` and ``6e1`` are all written ``60``), so
    the policy must not tell them apart either, or a live decision and its
    replay from the ledger could differ. CEL's own JSON convention
    (``google.protobuf.Value``) gives the rule: a JSON number is a ``double``.

    * An ``int`` (never a ``bool``) becomes the ``float`` of the same value. The
      intent and the bundle admit integers within ±(2**53-1) only, and the
      ledger only larger ones that are a double's RFC 8785 text, so the
      conversion is exact.
    * ``-0.0`` becomes ``0.0`` (RFC 8785 writes both as ``0``; CEL's ``1.0 / x``
      would tell them apart).
    * Strings, booleans and ``None`` are kept; dicts and lists (and other
      mappings and sequences) are copied with their items converted, so the
      caller's value is never mutated. Anything else (a ``datetime`` for
      ``now``) is returned as is, for the CEL binding to convert or refuse.
    """
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is float:
        return value + 0.0  # IEEE 754: -0.0 + 0.0 is +0.0; every other float is unchanged
    if kind is int:
        return float(value)
    if kind is dict:
        return _cel_dict(value)
    if kind is list:
        return _cel_list(value)
    return _cel_value_unusual(value)


def _cel_dict(value: Mapping[str, Any]) -> dict[str, Any]:
    # Scalars are converted inline: this runs for every whole-root binding.
    copy: dict[str, Any] = {}
    for key, item in value.items():
        kind = type(item)
        if kind is str or kind is bool or item is None:
            copy[key] = item
        elif kind is float:
            copy[key] = item + 0.0
        elif kind is int:
            copy[key] = float(item)
        else:
            copy[key] = cel_value(item)
    return copy


def _cel_list(value: Collection[Any]) -> list[Any]:
    return [cel_value(item) for item in value]


def _cel_value_unusual(value: Any) -> Any:
    """:func:`cel_value` for types other than the exact JSON ones (subclasses, tuples)."""
    if isinstance(value, bool):  # pragma: no cover - bool cannot be subclassed
        return bool(value)
    if isinstance(value, int):
        return float(value)
    if isinstance(value, float):
        return float(value) + 0.0
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return _cel_dict(value)
    if isinstance(value, list | tuple):
        return _cel_list(value)
    return value


def binding_values(bindings: Collection[Binding], roots: Mapping[str, Any]) -> dict[str, Any]:
    """The variables to give the program: only bindings whose path exists are bound.

    A missing key, or a step into something that is not a map, leaves the
    binding unbound, so reading it fails as reading the missing key would; a
    presence test of a key in something that is not a map fails too, as
    ``has()`` does in the binding, and so does a ``get`` from something that is
    not a map, as the helper does. Every bound value goes through
    :func:`cel_value` once, so numbers are doubles at every depth whether a
    condition reads a flattened path or a whole root.
    """
    values: dict[str, Any] = {}
    for binding in bindings:
        value: Any = roots.get(binding.root)
        try:
            for name in binding.steps:
                # JSON values: only a map can be indexed by a string key; a list or a
                # string raises TypeError, a missing key KeyError.
                value = value[name]
        except (KeyError, TypeError, IndexError):
            continue
        kind = type(value)
        if binding.test or binding.pick:
            if kind is dict or (
                kind is not str and kind is not list and isinstance(value, Mapping)
            ):
                key = binding.path[-1]
                if binding.test:
                    values[binding.name] = key in value
                else:
                    values[binding.name] = {key: cel_value(value[key])} if key in value else {}
            continue
        if kind is str or kind is bool or value is None:
            values[binding.name] = value
        elif kind is float:
            values[binding.name] = value + 0.0
        else:
            values[binding.name] = cel_value(value)
    return values
