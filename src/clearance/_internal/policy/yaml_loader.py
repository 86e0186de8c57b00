"""Safe, strict YAML loading for policy files, with line numbers for error messages.

Invariants:

* Only ``yaml.SafeLoader`` constructors run: no Python objects, no code.
* A file larger than :data:`MAX_FILE_BYTES` is refused before parsing, and
  aliases (``*name``) are refused outright. An alias copies a subtree by
  reference, so a 1 KiB file of nested aliases ("billion laughs") expands to
  gigabytes once serialized for the digest; repeating a value by hand is cheap.
* A mapping with a duplicate key is refused (PyYAML would keep the last one
  silently, and a policy that says two things must not load).
* Scalars follow JSON more closely than YAML 1.1 does: only ``true``/``false``
  (any case) are booleans, so ``country: NO`` stays the string ``"NO"``, and
  dates stay strings (``expires_at: 2026-02-01T00:00:00Z`` is the string as
  written), because a policy document must be plain JSON.
* Every error is a :class:`~clearance.errors.PolicyError` naming the file and
  line. A syntax error inside a value also names the key and the enclosing rule
  (``rules[].id``) or test case (``cases[].name``) when the text shows them, and
  says how to write the value: a CEL expression such as ``a ? b : c`` or
  ``!has(x)`` is not a plain YAML scalar (``: `` starts a mapping, a leading
  ``!`` a tag), so it must be quoted or written as a folded block (``when: >``).
  :class:`SourceChecker` gives validators the same: a failure names the file,
  line, path and problem, and values are checked to be plain JSON (finite
  numbers within ±2**53, no dates, sets or bytes; integral floats become
  integers, as RFC 8785 would write them). The policy engine reads every
  number as a CEL double anyway (:func:`clearance._internal.policy.cel_source.cel_value`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NoReturn

import yaml

from clearance.errors import PolicyError

__all__ = [
    "MAX_FILE_BYTES",
    "LoadedFile",
    "SourceChecker",
    "describe_kind",
    "load_yaml_file",
    "parse_yaml",
]

MAX_FILE_BYTES: Final[int] = 1024 * 1024
"""Largest policy file accepted, in bytes."""

_MAX_DEPTH: Final = 64
_SAFE: Final = 2**53 - 1
_BOOL: Final = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_KEY_LINE: Final = re.compile(r"^( *)(?:- +)*([A-Za-z_][\w.-]*) *:(?: |$)")
_FLOW_KEY: Final = re.compile(r"([A-Za-z_][\w.-]*) *: ")
_ITEM_LINE: Final = re.compile(r"^( *)-(?: |$)")
_TOP_KEY: Final = re.compile(r"^([A-Za-z_][\w.-]*) *:")
_ITEM_NAMES: Final = {"rules": ("rule", "id"), "cases": ("case", "name")}
_CEL_KEYS: Final = frozenset({"when"})


@dataclass
class LoadedFile:
    """A parsed YAML document and where each of its containers and keys came from.

    ``lines`` maps ``id(container)`` to the 1-based line of the container, and
    ``key_lines`` maps ``(id(mapping), key)`` / ``(id(sequence), index)`` to the
    line of that key or item. Ids stay valid while ``value`` is alive.
    """

    name: str
    value: Any
    lines: dict[int, int] = field(default_factory=dict)
    key_lines: dict[tuple[int, object], int] = field(default_factory=dict)

    def line_of(self, container: object, key: object = None) -> int | None:
        """The line of ``container[key]`` (or of ``container`` itself), when known."""
        if key is not None:
            found = self.key_lines.get((id(container), key))
            if found is not None:
                return found
        return self.lines.get(id(container))


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader without aliases, duplicate keys, YAML 1.1 booleans or timestamps."""

    def __init__(self, stream: str, loaded: LoadedFile) -> None:
        super().__init__(stream)
        self.loaded = loaded

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None,
                None,
                f"YAML aliases (*{event.anchor}) are not allowed in policy files; "
                "repeat the value instead",
                event.start_mark,
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, yaml.MappingNode):  # pragma: no cover - PyYAML calls it for maps
            return super().construct_mapping(node, deep=deep)
        self.flatten_mapping(node)
        mapping: dict[Any, Any] = {}
        self.loaded.lines[id(mapping)] = node.start_mark.line + 1
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"keys must be strings, found {type(key).__name__} {key!r}",
                    key_node.start_mark,
                )
            if key in mapping:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"duplicate key {key!r}",
                    key_node.start_mark,
                )
            mapping[key] = self.construct_object(value_node, deep=True)
            self.loaded.key_lines[(id(mapping), key)] = key_node.start_mark.line + 1
        return mapping

    def construct_sequence(self, node: Any, deep: bool = False) -> list[Any]:
        items = [self.construct_object(child, deep=True) for child in node.value]
        self.loaded.lines[id(items)] = node.start_mark.line + 1
        for index, child in enumerate(node.value):
            self.loaded.key_lines[(id(items), index)] = child.start_mark.line + 1
        return items


def _construct_map(loader: _StrictLoader, node: Any) -> Any:
    return loader.construct_mapping(node)


def _construct_seq(loader: _StrictLoader, node: Any) -> Any:
    return loader.construct_sequence(node)


_StrictLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_StrictLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def _refuse(loader: _StrictLoader, node: Any) -> Any:
    raise yaml.constructor.ConstructorError(
        None,
        None,
        f"the tag {node.tag} is not allowed: policy values must be JSON",
        node.start_mark,
    )


# Explicit tags that produce non-JSON values (binary, sets, ordered maps, timestamps).
for _tag in ("binary", "set", "omap", "pairs", "timestamp"):
    _StrictLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _refuse)
_StrictLoader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:bool", _BOOL, list("tTfF"))


def parse_yaml(text: str, name: str) -> LoadedFile:
    """Parse one YAML document; raises PolicyError naming ``name`` and the line."""
    loaded = LoadedFile(name=name, value=None)
    loader = _StrictLoader(text, loaded)
    try:
        loaded.value = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        problem = exc.problem or exc.context or "invalid YAML"
        hint = _syntax_hint(text, mark.line, mark.column, problem) if mark else ""
        raise PolicyError(f"{where}: {problem}{hint}") from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"{name}: invalid YAML: {exc}") from None
    except RecursionError:
        raise PolicyError(f"{name}: YAML nesting is too deep") from None
    finally:
        loader.dispose()
    return loaded


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _significant(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _key_of(lines: list[str], row: int, column: int) -> tuple[str, int] | None:
    """The key whose value holds the error at (row, column), and the row of that key.

    In a flow mapping (``{id: x, when: ...}``) it is the last key before the
    column on the same line; otherwise the nearest key line at or above ``row``
    that is indented no deeper than ``row`` (a plain scalar's continuation lines
    are indented below their key).
    """
    flow_keys = _FLOW_KEY.findall(lines[row][:column])
    if "{" in lines[row][:column] and flow_keys:
        return flow_keys[-1], row
    depth = _indent(lines[row])
    for index in range(row, -1, -1):
        line = lines[index]
        if not _significant(line):
            continue
        match = _KEY_LINE.match(line)
        if match and _indent(line) <= depth:
            return match.group(2), index
        if _indent(line) < depth and not match:
            return None
    return None


def _item_label(lines: list[str], row: int) -> str:
    """``rule 'id'`` (or ``case 'name'``) for the list item around ``row``, if the text shows it."""
    start = None
    for index in range(row, -1, -1):
        item = _ITEM_LINE.match(lines[index])
        if item and _indent(lines[index]) <= _indent(lines[row]):
            start = index
            break
    if start is None:
        return ""
    top = next((ln for ln in reversed(lines[:start]) if _TOP_KEY.match(ln)), None)
    section = _TOP_KEY.match(top) if top is not None else None
    if section is None or section.group(1) not in _ITEM_NAMES:
        return ""
    kind, field_name = _ITEM_NAMES[section.group(1)]
    level = _indent(lines[start])
    found = re.compile(rf"(?:^|[\s{{,])(?:- +)?{field_name} *: *[\"']?([^\"',}}#\s]+)")
    for index in range(start, len(lines)):
        line = lines[index]
        if index > start and _significant(line) and _indent(line) <= level:
            break
        match = found.search(line)
        if match:
            return f"{kind} {match.group(1)!r}"
    return ""


def _syntax_hint(text: str, row: int, column: int, problem: str) -> str:
    """Advice for a YAML syntax error inside a value, or ``""`` when there is none to give."""
    lines = text.splitlines()
    if row >= len(lines):
        return ""
    found = _key_of(lines, row, column)
    if found is None:
        return ""
    key, key_row = found
    if key not in _CEL_KEYS and problem != "mapping values are not allowed here":
        return ""
    label = _item_label(lines, key_row)
    where = f" ({label}, in {key!r})" if label else f" (in {key!r})"
    if key in _CEL_KEYS:
        return (
            f'{where}: quote the expression ({key}: "...") or write it as a folded block '
            f"({key}: >, then the expression on the next lines, indented); in a plain YAML "
            "value ': ' starts a new key, ' #' a comment and a leading '!' a tag"
        )
    return (
        f"{where}: quote the value ({key}: \"...\"); YAML reads ': ' inside a plain value "
        "as a new key"
    )


def load_yaml_file(path: Path) -> LoadedFile:
    """Read and parse one policy file, enforcing :data:`MAX_FILE_BYTES` and UTF-8."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read policy file: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise PolicyError(f"{path}: policy file is larger than {MAX_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{path}: policy file is not UTF-8 (byte {exc.start})") from None
    return parse_yaml(text, str(path))


class SourceChecker:
    """Validation helpers for one file (or logged document) that point at the offending line."""

    def __init__(self, loaded: LoadedFile) -> None:
        self.loaded = loaded
        self.name = loaded.name

    def where(self, container: object = None, key: object = None) -> str:
        """``file:line`` of ``container[key]`` (or just the file when the line is unknown)."""
        line = None if container is None else self.loaded.line_of(container, key)
        return f"{self.name}:{line}" if line else self.name

    def fail(
        self, path: str, message: str, container: object = None, key: object = None
    ) -> NoReturn:
        """Raise PolicyError naming the location, the path and the problem."""
        raise PolicyError(f"{self.where(container, key)}: {path}: {message}")

    def mapping(
        self, value: Any, path: str, allowed: tuple[str, ...] | None = None
    ) -> dict[str, Any]:
        """``value`` as a mapping (``None`` counts as empty) with only ``allowed`` keys."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(path, f"must be a mapping, found {describe_kind(value)}")
        if allowed is not None:
            for key in value:
                if key not in allowed:
                    self.fail(
                        path,
                        f"unknown key {key!r} (allowed: {', '.join(allowed)})",
                        value,
                        key,
                    )
        return value

    def json(self, value: Any, path: str, container: object, key: object, depth: int = 0) -> Any:
        """A JSON copy of ``value`` with integral floats as ints; refuses anything else."""
        if depth > _MAX_DEPTH:
            self.fail(path, f"nesting deeper than {_MAX_DEPTH} levels", container, key)
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, int):
            if abs(value) > _SAFE:
                self.fail(path, "integer beyond ±2**53-1 cannot be exact in JSON", container, key)
            return value
        if isinstance(value, float):
            if not math.isfinite(value) or abs(value) > _SAFE:
                self.fail(path, f"number {value!r} is not representable in JSON", container, key)
            return int(value) if value.is_integer() else value
        if isinstance(value, dict):
            return {k: self.json(v, f"{path}.{k}", value, k, depth + 1) for k, v in value.items()}
        if isinstance(value, list):
            return [self.json(v, f"{path}[{i}]", value, i, depth + 1) for i, v in enumerate(value)]
        return self.fail(path, f"{describe_kind(value)} is not a JSON value", container, key)


def describe_kind(value: Any) -> str:
    """How an error message names the kind of ``value`` ("a mapping", "null", ...)."""
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), f"a {type(value).__name__}")
