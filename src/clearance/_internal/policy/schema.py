"""Argument schemas: JSON Schema Draft 2020-12 checks of a tool's ``args``.

A bundle's ``tools.<action>.args_schema`` is checked with ``check_schema`` when
the bundle loads, and the arguments of every intent for that action are checked
against it before any rule runs; a violation denies with reason ``args-schema``.

``jsonschema`` is the reference validator, but it costs about 40 µs per call,
most of a decision's budget. Schemas that use only the common keywords listed in
:data:`FAST_KEYWORDS` are therefore also compiled into a plain Python checker.
Invariant: the fast checker accepts an instance only if ``jsonschema`` accepts
it (a hypothesis test compares both on generated schemas and instances). The
fast checker only ever says "valid"; whenever it says "invalid", ``jsonschema``
decides and describes the error, so the two can never disagree in the allowing
direction, and a schema with any other keyword simply always uses ``jsonschema``.

Error messages name the argument path and the violated keyword but never quote
the argument's value: arguments may be sensitive (card numbers), and the message
is written into the ledger.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import jsonschema
import jsonschema.exceptions

__all__ = ["FAST_KEYWORDS", "ArgsSchema", "SchemaDefinitionError"]

_ANNOTATIONS: Final = frozenset(
    {
        "$schema",
        "$comment",
        "title",
        "description",
        "default",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
        "format",  # an annotation only in Draft 2020-12 unless a format checker is enabled
    }
)
FAST_KEYWORDS: Final = _ANNOTATIONS | {
    "type",
    "enum",
    "const",
    "properties",
    "required",
    "additionalProperties",
    "minProperties",
    "maxProperties",
    "items",
    "minItems",
    "maxItems",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
}
"""Keywords the fast checker implements; other keywords leave the schema to jsonschema alone."""

_MAX_MESSAGE: Final = 300


class SchemaDefinitionError(ValueError):
    """An ``args_schema`` is not a valid Draft 2020-12 schema."""


def _json_equal(one: Any, two: Any) -> bool:
    """JSON equality as JSON Schema has it: ``true`` differs from ``1``, ``1`` equals ``1.0``."""
    if isinstance(one, str) or isinstance(two, str):
        return bool(one == two)
    if isinstance(one, bool) or isinstance(two, bool):
        return isinstance(one, bool) and isinstance(two, bool) and one == two
    if isinstance(one, dict) and isinstance(two, dict):
        return one.keys() == two.keys() and all(_json_equal(one[k], two[k]) for k in one)
    if isinstance(one, list) and isinstance(two, list):
        return len(one) == len(two) and all(
            _json_equal(a, b) for a, b in zip(one, two, strict=True)
        )
    if isinstance(one, (dict, list)) or isinstance(two, (dict, list)):
        return False
    return bool(one == two)


class _Unsupported(Exception):
    """The schema uses something the fast checker does not implement."""


def _type_ok(types: frozenset[str], value: Any) -> bool:
    """Draft 2020-12 ``type`` for plain JSON values; False for anything unusual."""
    kind = type(value)
    if kind is str:
        return "string" in types
    if kind is bool:
        return "boolean" in types
    if kind is int:
        return "integer" in types or "number" in types
    if kind is float:
        return "number" in types or ("integer" in types and value.is_integer())
    if kind is dict:
        return "object" in types
    if kind is list:
        return "array" in types
    if value is None:
        return "null" in types
    return False


class _Node:
    """One compiled schema node. ``check`` returns True only for instances jsonschema accepts."""

    __slots__ = (
        "additional",
        "const",
        "enum",
        "enum_strings",
        "items",
        "known",
        "max_items",
        "max_length",
        "max_props",
        "min_items",
        "min_length",
        "min_props",
        "numeric",
        "pattern",
        "properties",
        "required",
        "types",
        "verdict",
    )

    def __init__(self, schema: Any) -> None:
        self.verdict: bool | None = schema if isinstance(schema, bool) else None
        if self.verdict is not None:
            return
        if not isinstance(schema, dict) or set(schema) - FAST_KEYWORDS:
            raise _Unsupported
        kind = schema.get("type")
        self.types = None if kind is None else frozenset(kind if isinstance(kind, list) else [kind])
        self.enum: list[Any] | None = list(schema["enum"]) if "enum" in schema else None
        self.enum_strings: frozenset[str] | None = None
        if self.enum is not None and all(isinstance(option, str) for option in self.enum):
            self.enum_strings = frozenset(self.enum)
        self.const = (schema["const"],) if "const" in schema else None
        self.properties = [(name, _Node(sub)) for name, sub in schema.get("properties", {}).items()]
        self.known = frozenset(schema.get("properties", {}))
        self.required: list[str] = list(schema.get("required", ()))
        extra = schema.get("additionalProperties")
        self.additional = None if extra is None else _Node(extra)
        self.min_props = schema.get("minProperties")
        self.max_props = schema.get("maxProperties")
        self.items = _Node(schema["items"]) if "items" in schema else None
        self.min_items = schema.get("minItems")
        self.max_items = schema.get("maxItems")
        keys = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
        bounds = tuple(schema.get(key) for key in keys)
        self.numeric = None if all(bound is None for bound in bounds) else bounds
        self.min_length = schema.get("minLength")
        self.max_length = schema.get("maxLength")
        self.pattern = re.compile(schema["pattern"]) if "pattern" in schema else None

    def check(self, value: Any) -> bool:
        """True only when ``value`` satisfies this node (False may also mean "not sure")."""
        if self.verdict is not None:
            return self.verdict
        if self.types is not None and not _type_ok(self.types, value):
            return False
        if self.enum_strings is not None:
            if type(value) is not str or value not in self.enum_strings:
                return False
        elif self.enum is not None and not any(_json_equal(value, o) for o in self.enum):
            return False
        if self.const is not None and not _json_equal(value, self.const[0]):
            return False
        kind = type(value)
        if kind is dict:
            return self._check_object(value)
        if kind is list:
            return self._check_array(value)
        if kind is str:
            return self._check_string(value)
        if (kind is int or kind is float) and self.numeric is not None:
            return self._check_number(value)
        return True

    def _check_object(self, value: dict[str, Any]) -> bool:
        for name in self.required:
            if name not in value:
                return False
        for name, node in self.properties:
            if name in value and not node.check(value[name]):
                return False
        if self.additional is not None:
            for key, item in value.items():
                if key not in self.known and not self.additional.check(item):
                    return False
        if self.min_props is not None and len(value) < self.min_props:
            return False
        return self.max_props is None or len(value) <= self.max_props

    def _check_array(self, value: list[Any]) -> bool:
        if self.min_items is not None and len(value) < self.min_items:
            return False
        if self.max_items is not None and len(value) > self.max_items:
            return False
        return self.items is None or all(self.items.check(item) for item in value)

    def _check_string(self, value: str) -> bool:
        if self.min_length is not None and len(value) < self.min_length:
            return False
        if self.max_length is not None and len(value) > self.max_length:
            return False
        return self.pattern is None or self.pattern.search(value) is not None

    def _check_number(self, value: float) -> bool:
        low, high, low_x, high_x = self.numeric or (None, None, None, None)
        return (
            (low is None or value >= low)
            and (high is None or value <= high)
            and (low_x is None or value > low_x)
            and (high_x is None or value < high_x)
        )


def _render_path(parts: Sequence[Any]) -> str:
    text = "args"
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _short_json(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return text if len(text) <= 120 else text[:117] + "..."


def _describe(error: jsonschema.exceptions.ValidationError) -> str:
    """A message naming the path and the violated keyword, never the argument's value."""
    path = _render_path(list(error.absolute_path))
    keyword, expected = error.validator, error.validator_value
    instance = error.instance
    if keyword == "type":
        detail = f"must be of type {_short_json(expected)}"
    elif keyword == "required" and isinstance(instance, dict):
        names = expected if isinstance(expected, list) else []
        missing = [name for name in names if name not in instance]
        detail = f"missing required property {_short_json(missing[0] if missing else expected)}"
    elif keyword == "additionalProperties" and isinstance(instance, dict):
        known = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
        extras = sorted(str(key) for key in instance if key not in known)
        detail = f"unexpected property {_short_json(extras[0] if extras else '?')}"
    elif keyword in ("enum", "const"):
        detail = f"must be {'one of' if keyword == 'enum' else 'equal to'} {_short_json(expected)}"
    elif keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        symbol = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">"}.get(keyword, "<")
        detail = f"must be {symbol} {expected}"
    elif keyword in ("minLength", "maxLength"):
        detail = f"must be at {'least' if keyword == 'minLength' else 'most'} {expected} characters"
    elif keyword == "pattern":
        detail = f"must match the pattern {_short_json(expected)}"
    else:
        detail = f"fails the {keyword!r} constraint {_short_json(expected)}"
    message = f"{path} {detail}"
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 3] + "..."


@dataclass(frozen=True)
class ArgsSchema:
    """A checked ``args_schema`` ready to validate arguments."""

    schema: Mapping[str, Any]
    _validator: jsonschema.protocols.Validator
    _fast: _Node | None

    @classmethod
    def build(cls, schema: Mapping[str, Any]) -> ArgsSchema:
        """Check ``schema`` against the Draft 2020-12 metaschema and compile it."""
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.exceptions.SchemaError as exc:
            where = "/".join(str(part) for part in exc.absolute_path) or "(root)"
            raise SchemaDefinitionError(f"invalid JSON Schema at {where}: {exc.message}") from None
        try:
            validator = jsonschema.Draft202012Validator(schema)
        except Exception as exc:  # referencing errors, bad regexes, ...
            raise SchemaDefinitionError(f"invalid JSON Schema: {exc}") from None
        try:
            fast: _Node | None = _Node(dict(schema))
        except _Unsupported:
            fast = None
        except re.error as exc:
            raise SchemaDefinitionError(f"invalid pattern in JSON Schema: {exc}") from None
        return cls(schema, validator, fast)

    @property
    def fast(self) -> bool:
        """Whether this schema uses the fast checker."""
        return self._fast is not None

    def violation(self, args: Mapping[str, Any], *, unseen: Sequence[str] = ()) -> str | None:
        """Return a description of the first violation of ``args``, or None when valid.

        ``unseen`` lists dot paths of ``args`` whose values replay cannot see (the
        ledger holds them as salted digests): violations inside them are not reported,
        every other one is. A live decision always checks everything.
        """
        instance = args if isinstance(args, dict) else dict(args)
        if self._fast is not None and self._fast.check(instance):
            return None
        hidden = [tuple(path.split(".")) for path in unseen]
        try:
            errors = (
                error
                for error in self._validator.iter_errors(instance)
                if not any(tuple(error.absolute_path)[: len(h)] == h for h in hidden)
            )
            error = jsonschema.exceptions.best_match(errors)
        except Exception as exc:  # a foreign failure must not become "valid"
            return f"args could not be checked against the schema: {type(exc).__name__}"
        return None if error is None else _describe(error)
