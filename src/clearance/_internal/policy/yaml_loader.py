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
  line. :class:`SourceChecker` gives validators the same: a failure names the
  file, line, path and problem, and values are checked to be plain JSON
  (finite numbers within ±2**53, no dates, sets or bytes; integral floats
  become integers, as RFC 8785 would write them).
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
        raise PolicyError(f"{where}: {problem}") from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"{name}: invalid YAML: {exc}") from None
    except RecursionError:
        raise PolicyError(f"{name}: YAML nesting is too deep") from None
    finally:
        loader.dispose()
    return loaded


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
