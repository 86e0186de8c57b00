"""Checking one stored leaf: JSON, a ledger entry, and RFC 8785 canonical.

Invariants:

* :func:`parse_leaf` answers exactly ``canonical_json(json.loads(leaf)) == leaf`` (the
  definition), on a fast path for the common leaf; a property test pins the two
  against each other.
* Nothing here raises for crafted bytes: a leaf that is not JSON, is nested too
  deeply or holds a lone surrogate is reported (:func:`leaf_problem`), never raised.
"""

from __future__ import annotations

import json
from typing import Any

from clearance._internal.canonical import canonical_json, encode_fast_path
from clearance._internal.ledger.layout import entry_problem
from clearance.errors import Error, InputError

# Leaf check. ``canonical_json(json.loads(leaf)) == leaf`` is the definition, but
# canonical_json first walks the whole value to pick its fast path, which made it
# most of an audit's time. For the common leaf (ASCII bytes, no float, no integer
# beyond 2**53-1) the parsed value is exactly in canonical_json's fast-path domain
# (dicts with ASCII keys, lists, strings, booleans, null, safe integers: a key
# written with a non-ASCII escape re-encodes as raw UTF-8 and so fails the
# comparison, as it must), where canonical_json *is* encode_fast_path. Everything
# else takes the definition. A property test pins the two against each other.
_SAFE_INT = 2**53 - 1


class _NotFastPath(Exception):
    """The leaf holds a float, a large integer or a NaN-like constant."""


def _not_fast(_: str) -> Any:
    raise _NotFastPath


def _safe_int(text: str) -> int:
    value = int(text)
    if not -_SAFE_INT <= value <= _SAFE_INT:
        raise _NotFastPath
    return value


_DECODE = json.JSONDecoder(
    parse_float=_not_fast, parse_int=_safe_int, parse_constant=_not_fast
).decode


def parse_leaf(leaf: bytes) -> tuple[Any, bool]:
    """Parse a stored leaf; returns the value and whether ``leaf`` is its RFC 8785 form.

    Raises ValueError when the leaf is not JSON (also when it is nested too deeply
    for the parser: a RecursionError never escapes).
    """
    try:
        return _parse_leaf(leaf)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _parse_leaf(leaf: bytes) -> tuple[Any, bool]:
    if leaf.isascii():
        try:
            value = _DECODE(leaf.decode("ascii"))
        except _NotFastPath:
            pass
        else:
            try:
                return value, encode_fast_path(value) == leaf
            except InputError:  # an escaped lone surrogate: not canonical JSON
                return value, False
    value = json.loads(leaf)
    try:
        return value, canonical_json(value) == leaf
    except Error:
        return value, False


def leaf_problem(leaf: bytes) -> tuple[Any, str | None]:
    """The parsed leaf (None when it is not JSON) and what is wrong with it, if anything."""
    try:
        value, canonical = parse_leaf(leaf)
    except ValueError as exc:
        return None, "is not valid JSON" + (" (nested too deeply)" if "deeply" in str(exc) else "")
    shape = entry_problem(value)
    if shape is not None:
        return value, f"is not a ledger entry ({shape})"
    if not canonical:
        return value, "is not in RFC 8785 canonical form"
    return value, None
