"""Canonical JSON (RFC 8785, JCS) and the ``sha256:`` digests built on it.

Invariant: :func:`canonical_json` returns exactly the bytes ``rfc8785.dumps``
returns for the same value, or raises :class:`~clearance.errors.InputError`
where ``rfc8785`` raises. The ``rfc8785`` package is the reference; a fast path
serves the common case where a value holds only dicts with ASCII keys, lists,
strings, booleans, ``None`` and integers in the IEEE-754 safe range. For such
values ``orjson`` with sorted keys produces the JCS bytes: compact UTF-8, string
escaping as RFC 8785 §3.2.2.2 prescribes (quotation mark and backslash escaped,
the short escapes, lowercase six-character escapes for the other control
characters, everything else literal), and ASCII keys sort the same by UTF-16
code unit as by code point. It does so about eight times faster than the
standard library's encoder, which matters because every ledger append and
intent digest goes through it.
Anything else (floats, non-ASCII keys, tuples, other types) goes to
``rfc8785``. A hypothesis test pins the equivalence.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import rfc8785

from clearance.errors import InputError

_SAFE_INT = 2**53 - 1
_dumps = orjson.dumps
_SORTED = orjson.OPT_SORT_KEYS


def encode_fast_path(value: Any) -> bytes:
    """The RFC 8785 bytes of a value inside the fast-path domain (see the module docstring).

    The caller guarantees the domain: only dicts with ASCII string keys, lists,
    strings, booleans, ``None`` and integers within ``±(2**53-1)``. Raises
    InputError for a string that is not valid Unicode (a lone surrogate).
    """
    try:
        return _dumps(value, option=_SORTED)
    except orjson.JSONEncodeError as exc:
        raise InputError(f"value is not valid Unicode: {exc}") from None


def _fast_path_ok(value: Any, depth: int = 0) -> bool:
    """True when the fast-path encoder (orjson, sorted keys) yields JCS bytes for ``value``.

    Strings, booleans and ``None`` are checked inline, without a call per value:
    this runs on every ledger append.
    """
    if depth > 64:
        return False
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not key.isascii():
                return False
            item_kind = type(item)
            if item_kind is str or item_kind is bool or item is None:
                continue
            if item_kind is int:
                if not -_SAFE_INT <= item <= _SAFE_INT:
                    return False
            elif not _fast_path_ok(item, depth + 1):
                return False
        return True
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return bool(-_SAFE_INT <= value <= _SAFE_INT)
    if kind is list:
        return all(_fast_path_ok(item, depth + 1) for item in value)
    return False


def _ints_as_doubles(value: Any, depth: int = 0) -> Any:
    """Turn integers beyond 2**53-1 that are a double's JCS text into that double.

    JCS numbers are IEEE-754 doubles (RFC 8785 §3.2.2.3), so ``1e16`` written
    by JCS reads back as the integer ``10000000000000000``; it must canonicalize
    to the same bytes again. Other large integers stay, and are refused.
    """
    if depth > 64:
        return value
    kind = type(value)
    if kind is int and not -_SAFE_INT <= value <= _SAFE_INT:
        try:
            as_float = float(value)
            same = rfc8785.dumps(as_float) == str(value).encode("ascii")
        except (OverflowError, rfc8785.CanonicalizationError):
            return value
        return as_float if same else value
    if kind is dict:
        return {k: _ints_as_doubles(v, depth + 1) for k, v in value.items()}
    if kind is list:
        return [_ints_as_doubles(v, depth + 1) for v in value]
    return value


def canonical_json(value: Any) -> bytes:
    """Return the RFC 8785 canonical UTF-8 bytes of ``value``.

    Raises InputError for values JSON cannot carry canonically (NaN, integers
    beyond 2**53-1 that no double holds exactly, lone surrogates, non-string
    keys, unsupported types). Integers a double holds exactly are serialized as
    that double, so canonical JSON read back re-canonicalizes to the same bytes.
    """
    if _fast_path_ok(value):
        return encode_fast_path(value)
    try:
        return rfc8785.dumps(_ints_as_doubles(value))
    except (rfc8785.CanonicalizationError, TypeError, ValueError, RecursionError) as exc:
        raise InputError(f"value cannot be canonicalized as JSON (RFC 8785): {exc}") from None


def sha256_digest(data: bytes) -> str:
    """Return ``"sha256:" + hex(SHA-256(data))``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def json_digest(value: Any) -> str:
    """Return the ``sha256:`` digest of the RFC 8785 canonical form of ``value``."""
    return sha256_digest(canonical_json(value))
