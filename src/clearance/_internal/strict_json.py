"""Strict JSON parsing for untrusted input: one value, one reading.

Python's ``json`` keeps the *last* of repeated object members and accepts the
non-JSON constants ``NaN``, ``Infinity`` and ``-Infinity``. Both let two parsers
read the same bytes differently (RFC 8259 §4 leaves duplicate names to the
implementation; RFC 7515 §4 lets a JWS verifier refuse them), so every parser of
untrusted JSON in clearance goes through :func:`loads`, which refuses both.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NoReturn


class DuplicateMember(ValueError):
    """A JSON object repeats the member ``name`` (at any depth)."""

    def __init__(self, name: str) -> None:
        shown = repr(name) if len(name) <= 60 else repr(name[:57] + "...")
        super().__init__(f"duplicate member name {shown}")
        self.name = name


def no_duplicate_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` that refuses a repeated member name."""
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise DuplicateMember(name)
            seen.add(name)
    return result


def no_constant(name: str) -> NoReturn:
    """``parse_constant`` that refuses ``NaN``, ``Infinity`` and ``-Infinity``."""
    raise ValueError(f"{name} is not JSON")


def loads(text: str | bytes, *, parse_int: Callable[[str], Any] | None = None) -> Any:
    """Parse ``text`` (bytes must be UTF-8) strictly.

    Raises ValueError (``json.JSONDecodeError`` for syntax, :class:`DuplicateMember`,
    or a refused constant), UnicodeDecodeError for bytes that are not UTF-8, and
    RecursionError for nesting deeper than the interpreter allows.
    """
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8")
    return json.loads(
        text,
        object_pairs_hook=no_duplicate_members,
        parse_constant=no_constant,
        parse_int=parse_int,
    )
