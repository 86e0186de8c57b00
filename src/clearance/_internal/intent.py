"""The :class:`Intent` model: what an agent asks to do, validated and digested.

Contract (docs/design.md §5, "Intent digest"): the digest is ``"sha256:"`` + the hex
SHA-256 of the RFC 8785 (JCS) canonical JSON of the *normalized* intent, an
object with exactly the keys ``principal``, ``action``, ``resource``,
``args``, ``purpose``, ``trace_id``, ``parent_id`` and ``input``. An absent
optional value is ``null``, except ``args``, whose absent (or ``null``) value
is ``{}``. ``args`` and ``input`` are hashed exactly as given: no key is
dropped, no number is rewritten (RFC 8785 §3.2.2.3 decides how a number is
serialized, so ``1`` and ``1.0`` hash alike, as JCS says they must). The
vectors in ``tests/assets/intent_vectors.json`` pin the format for other
implementations.

Invariants:

* Every :class:`Intent` instance is valid: the constructor validates (docs/design.md §4
  fail-closed rule 8), so there is no way to hold a malformed one.
* An intent owns a private deep copy of ``args`` and ``input`` taken at
  construction, so later changes to the caller's dicts cannot change what was
  digested (and what a grant is bound to). Their canonical bytes, and so the
  digest, are fixed at construction. Treat ``args`` and ``input`` as read-only
  (they stay plain dicts so tools and policy engines can consume them
  directly); :meth:`Intent.to_json` hands out fresh copies.
* Equality and hashing follow the digest: two intents are equal exactly when
  their normalized canonical forms are.
* Limits are the typed constants below; every rejection is an
  :class:`~clearance.errors.InputError` whose message names the field.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from json.encoder import encode_basestring
from typing import Any, Final

from clearance._internal.canonical import canonical_json, sha256_digest
from clearance.errors import InputError

MAX_ARGS_BYTES: Final[int] = 64 * 1024
"""Largest RFC 8785 canonical form of ``args``, in bytes."""
MAX_INPUT_BYTES: Final[int] = 64 * 1024
"""Largest RFC 8785 canonical form of ``input``, in bytes."""
MAX_JSON_DEPTH: Final[int] = 32
"""Deepest container nesting in ``args`` / ``input``; the top-level object is depth 1."""
MAX_RESOURCE_CHARS: Final[int] = 1024
"""Longest ``resource``, in code points."""
MAX_PURPOSE_CHARS: Final[int] = 2048
"""Longest ``purpose``, in code points."""
MAX_SAFE_INTEGER: Final[int] = 2**53 - 1
"""Integers in ``args`` / ``input`` must lie within ``±MAX_SAFE_INTEGER`` (IEEE-754 exact)."""

FIELDS: Final[tuple[str, ...]] = (
    "principal",
    "action",
    "resource",
    "args",
    "purpose",
    "trace_id",
    "parent_id",
    "input",
)
"""The keys of a normalized intent, in declaration order."""

ACTION_PATTERN: Final = re.compile(r"[A-Za-z][A-Za-z0-9_.:-]{0,127}")
PRINCIPAL_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@/+-]{0,255}")
ID_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
"""Patterns are matched with ``fullmatch``; trace and parent ids share ``ID_PATTERN``."""

_FIELD_SET: Final = frozenset(FIELDS)
# C0 controls, DEL and C1 controls (Unicode category Cc).
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_IDENTIFIER_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Keep(enum.Enum):
    """Sentinel type for "leave this field as it is" in :meth:`Intent.with_context`."""

    KEEP = enum.auto()


KEEP: Final = _Keep.KEEP


class _BadValue(Exception):
    """Internal: a JSON value failed validation; ``path`` is collected while unwinding."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.path: list[str] = []


def _render_path(root: str, parts: list[str]) -> str:
    return root + "".join(reversed(parts))


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_unicode(text: str) -> None:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise _BadValue("contains a lone surrogate (not valid Unicode)") from None


def _copy_json(value: Any, depth: int) -> Any:
    """Validate one JSON value and return a private deep copy of it.

    ``depth`` is the nesting level a container found here would have.
    Exact type checks (not isinstance) keep subclasses with custom ``__str__``
    or ``__iter__`` from smuggling in a different serialization.
    """
    kind = type(value)
    if kind is str:
        _check_unicode(value)
        return value
    if kind is int:
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise _BadValue("integer outside ±(2**53-1); send it as a string")
        return value
    if kind is float:
        if not math.isfinite(value):
            raise _BadValue("NaN and infinity are not JSON numbers")
        return value
    if kind is bool or value is None:
        return value
    if kind is dict:
        if depth > MAX_JSON_DEPTH:
            raise _BadValue(f"nested deeper than {MAX_JSON_DEPTH} levels")
        copy: dict[str, Any] = {}
        for key, item in value.items():
            if type(key) is not str:
                raise _BadValue(f"object key {_short(key)} is not a string")
            try:
                _check_unicode(key)
                copy[key] = _copy_json(item, depth + 1)
            except _BadValue as exc:
                exc.path.append(f".{key}" if _IDENTIFIER_KEY.fullmatch(key) else f"[{key!r}]")
                raise
        return copy
    if kind is list:
        if depth > MAX_JSON_DEPTH:
            raise _BadValue(f"nested deeper than {MAX_JSON_DEPTH} levels")
        items: list[Any] = []
        for index, item in enumerate(value):
            try:
                items.append(_copy_json(item, depth + 1))
            except _BadValue as exc:
                exc.path.append(f"[{index}]")
                raise
        return items
    raise _BadValue(
        f"{kind.__name__} is not a JSON value (use dict, list, str, int, float, bool or None)"
    )


def _json_object(name: str, value: object, limit: int) -> tuple[dict[str, Any], bytes]:
    """Validate ``args`` / ``input``: a JSON object within ``limit`` canonical bytes.

    Returns the private copy and its RFC 8785 canonical bytes.
    """
    if type(value) is not dict:
        raise InputError(f"{name} must be a JSON object, got {type(value).__name__}")
    try:
        copy: dict[str, Any] = _copy_json(value, 1)
    except _BadValue as exc:
        raise InputError(f"{_render_path(name, exc.path)}: {exc.message}") from None
    canonical = canonical_json(copy)
    if len(canonical) > limit:
        raise InputError(
            f"{name} is {len(canonical)} bytes in canonical form; the limit is {limit}"
        )
    return copy, canonical


def _identifier(name: str, value: object, pattern: re.Pattern[str], rule: str) -> None:
    if type(value) is not str:
        raise InputError(f"{name} must be a string, got {type(value).__name__}")
    if pattern.fullmatch(value) is None:
        raise InputError(f"{name} {_short(value)} is invalid: {rule}")


def _text(name: str, value: object, limit: int) -> None:
    if type(value) is not str:
        raise InputError(f"{name} must be a string or null, got {type(value).__name__}")
    if len(value) > limit:
        raise InputError(f"{name} is {len(value)} characters long; the limit is {limit}")
    if _CONTROL.search(value) is not None:
        raise InputError(f"{name} must not contain control characters")
    try:
        _check_unicode(value)
    except _BadValue as exc:
        raise InputError(f"{name} {exc.message}") from None


def _canonical_text(value: str | None) -> bytes:
    """RFC 8785 form of a validated string field (or null).

    JCS escapes strings exactly as the standard library's non-ASCII-preserving
    encoder does (RFC 8785 §3.2.2.2), and every string field here was checked
    for valid Unicode at construction, so the C string encoder is exact.
    """
    if value is None:
        return b"null"
    return encode_basestring(value).encode("utf-8")


_ACTION_RULE: Final = "use 1-128 of A-Z a-z 0-9 _ . : - starting with a letter"
_PRINCIPAL_RULE: Final = "use 1-256 of A-Z a-z 0-9 _ . : @ / + - starting with a letter or digit"
_ID_RULE: Final = "use 1-128 of A-Z a-z 0-9 _ . : - starting with a letter or digit"


@dataclass(frozen=True, eq=False)
class Intent:
    """One request to perform ``action`` as ``principal``; always valid once constructed.

    Build one with :meth:`create` (keywords), :meth:`from_json` (an untrusted
    JSON object) or the constructor; all three validate the same way.
    """

    principal: str
    action: str
    resource: str | None = None
    args: Mapping[str, Any] = field(default_factory=dict)
    purpose: str | None = None
    trace_id: str | None = None
    parent_id: str | None = None
    input: Mapping[str, Any] | None = None
    _args_canonical: bytes = field(init=False, repr=False, compare=False)
    _input_canonical: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _identifier("principal", self.principal, PRINCIPAL_PATTERN, _PRINCIPAL_RULE)
        _identifier("action", self.action, ACTION_PATTERN, _ACTION_RULE)
        if self.resource is not None:
            _text("resource", self.resource, MAX_RESOURCE_CHARS)
        if self.purpose is not None:
            _text("purpose", self.purpose, MAX_PURPOSE_CHARS)
        if self.trace_id is not None:
            _identifier("trace_id", self.trace_id, ID_PATTERN, _ID_RULE)
        if self.parent_id is not None:
            _identifier("parent_id", self.parent_id, ID_PATTERN, _ID_RULE)
        args, args_canonical = _json_object("args", self.args, MAX_ARGS_BYTES)
        input_canonical = b"null"
        if self.input is not None:
            input_copy, input_canonical = _json_object("input", self.input, MAX_INPUT_BYTES)
            object.__setattr__(self, "input", input_copy)
        # Frozen dataclass: object.__setattr__ is the sanctioned way to store the copies.
        object.__setattr__(self, "args", args)
        object.__setattr__(self, "_args_canonical", args_canonical)
        object.__setattr__(self, "_input_canonical", input_canonical)

    @classmethod
    def create(
        cls,
        *,
        principal: str,
        action: str,
        resource: str | None = None,
        args: Mapping[str, Any] | None = None,
        purpose: str | None = None,
        trace_id: str | None = None,
        parent_id: str | None = None,
        input: Mapping[str, Any] | None = None,
    ) -> Intent:
        """Build and validate an intent from keywords; ``args=None`` means ``{}``."""
        return cls(
            principal=principal,
            action=action,
            resource=resource,
            args={} if args is None else args,
            purpose=purpose,
            trace_id=trace_id,
            parent_id=parent_id,
            input=input,
        )

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Intent:
        """Parse an untrusted JSON object (strict: unknown fields are rejected by name).

        ``principal`` and ``action`` are required; every other field may be
        absent or ``null``.
        """
        if not isinstance(obj, Mapping):
            raise InputError(f"an intent must be a JSON object, got {type(obj).__name__}")
        unknown = [key for key in obj if key not in _FIELD_SET]
        if unknown:
            names = ", ".join(sorted(_short(key) for key in unknown))
            raise InputError(f"unknown intent field(s): {names}; allowed: {', '.join(FIELDS)}")
        missing = [name for name in ("principal", "action") if obj.get(name) is None]
        if missing:
            raise InputError(f"intent is missing required field(s): {', '.join(missing)}")
        get = obj.get
        args = get("args")
        return cls(
            principal=obj["principal"],
            action=obj["action"],
            resource=get("resource"),
            args={} if args is None else args,
            purpose=get("purpose"),
            trace_id=get("trace_id"),
            parent_id=get("parent_id"),
            input=get("input"),
        )

    def with_context(
        self,
        *,
        trace_id: str | _Keep | None = KEEP,
        parent_id: str | _Keep | None = KEEP,
    ) -> Intent:
        """A copy with ``trace_id`` and/or ``parent_id`` replaced (omitted ones are kept)."""
        if isinstance(trace_id, _Keep) and isinstance(parent_id, _Keep):
            return self
        new_trace = self.trace_id if isinstance(trace_id, _Keep) else trace_id
        new_parent = self.parent_id if isinstance(parent_id, _Keep) else parent_id
        if new_trace is not None:
            _identifier("trace_id", new_trace, ID_PATTERN, _ID_RULE)
        if new_parent is not None:
            _identifier("parent_id", new_parent, ID_PATTERN, _ID_RULE)
        # Everything else was validated when ``self`` was built, and ``args``/``input``
        # are private copies no one mutates, so the clone may share them. Skipping the
        # re-validation keeps this off the governed call's hot path.
        state = {name: self.__dict__[name] for name in _ALL_ATTRIBUTES}  # not the cached digest
        state["trace_id"] = new_trace
        state["parent_id"] = new_parent
        clone = object.__new__(Intent)
        object.__setattr__(clone, "__dict__", state)
        return clone

    def to_json(self) -> dict[str, Any]:
        """The normalized intent (docs/design.md §5): all eight keys, absent optionals as ``None``.

        The returned dict and its nested values are fresh copies; mutating them
        does not affect this intent.
        """
        return {
            **self.members(),
            "args": _copy_json(self.args, 1),
            "input": None if self.input is None else _copy_json(self.input, 1),
        }

    def members(self) -> dict[str, Any]:
        """The normalized intent like :meth:`to_json`, but sharing ``args`` and ``input``.

        For serializing at once (the gate's ledger entries) without copying the
        arguments; the caller must not mutate the nested values.
        """
        return {
            "principal": self.principal,
            "action": self.action,
            "resource": self.resource,
            "args": self.args,
            "purpose": self.purpose,
            "trace_id": self.trace_id,
            "parent_id": self.parent_id,
            "input": self.input,
        }

    def canonical(self) -> bytes:
        """The RFC 8785 canonical JSON bytes of :meth:`to_json` (what :attr:`digest` hashes).

        Assembled from the members' canonical forms: RFC 8785 §3.2.3 orders
        members by name (here eight fixed ASCII names, listed below in that
        order) and serializes each value independently (§3.2.2), so splicing
        the canonical values between the fixed names yields exactly
        ``rfc8785.dumps(self.to_json())``. ``args`` and ``input`` were
        canonicalized once during validation (for the size limit); reusing
        those bytes keeps a float-bearing intent off a second trip through the
        pure-Python ``rfc8785`` encoder. Pinned by the published vectors and a
        property test against ``rfc8785`` directly.
        """
        return b"".join(
            (
                b'{"action":',
                _canonical_text(self.action),
                b',"args":',
                self._args_canonical,
                b',"input":',
                self._input_canonical,
                b',"parent_id":',
                _canonical_text(self.parent_id),
                b',"principal":',
                _canonical_text(self.principal),
                b',"purpose":',
                _canonical_text(self.purpose),
                b',"resource":',
                _canonical_text(self.resource),
                b',"trace_id":',
                _canonical_text(self.trace_id),
                b"}",
            )
        )

    @cached_property
    def digest(self) -> str:
        """``"sha256:" + hex`` of SHA-256 over :meth:`canonical` (docs/design.md §5)."""
        return sha256_digest(self.canonical())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Intent):
            return NotImplemented
        return self.digest == other.digest

    def __hash__(self) -> int:
        return hash(self.digest)


_ALL_ATTRIBUTES: Final = (*FIELDS, "_args_canonical", "_input_canonical")
