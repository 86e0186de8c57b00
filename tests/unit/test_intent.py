"""Intent validation, normalization and the docs/design.md §5 digest (vectors in tests/assets)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from clearance._internal.intent import (
    FIELDS,
    MAX_ARGS_BYTES,
    MAX_INPUT_BYTES,
    MAX_JSON_DEPTH,
    MAX_PURPOSE_CHARS,
    MAX_RESOURCE_CHARS,
    MAX_SAFE_INTEGER,
    Intent,
)
from clearance.errors import InputError

VECTORS = Path(__file__).parent.parent / "assets" / "intent_vectors.json"


def _vectors() -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = json.loads(VECTORS.read_text(encoding="utf-8"))
    return loaded


def _reference_digest(normalized: dict[str, Any]) -> tuple[str, str]:
    """Canonical text and digest computed with rfc8785 + hashlib only."""
    canonical = rfc8785.dumps(normalized)
    return canonical.decode("utf-8"), "sha256:" + hashlib.sha256(canonical).hexdigest()


def _reference_normalize(intent: dict[str, Any]) -> dict[str, Any]:
    """docs/design.md §5 normalization, restated independently of clearance._internal.intent."""
    normalized = {name: intent.get(name) for name in FIELDS}
    if normalized["args"] is None:
        normalized["args"] = {}
    return normalized


def _base(**changes: Any) -> dict[str, Any]:
    return {"principal": "agent:billing-bot", "action": "refund_payment", **changes}


# -- published vectors -----------------------------------------------------------------


def test_vector_file_covers_the_required_cases() -> None:
    descriptions = " ".join(v["description"] for v in _vectors())
    for topic in ("minimal", "all fields", "unicode", "floats", "nested", "empty args"):
        assert topic in descriptions


@pytest.mark.parametrize("vector", _vectors(), ids=lambda v: v["description"][:40])
def test_vectors_match_rfc8785_reference_and_intent(vector: dict[str, Any]) -> None:
    expected_normalized = _reference_normalize(vector["intent"])
    assert vector["normalized"] == expected_normalized
    canonical, digest = _reference_digest(expected_normalized)
    assert vector["canonical"] == canonical
    assert vector["digest"] == digest

    intent = Intent.from_json(vector["intent"])
    assert intent.canonical().decode("utf-8") == canonical
    assert intent.digest == digest
    assert rfc8785.dumps(intent.to_json()) == canonical.encode("utf-8")
    assert list(intent.to_json()) == list(FIELDS)


def test_explicit_nulls_hash_like_absent_fields() -> None:
    by_description = {v["description"][:14]: v["digest"] for v in _vectors()}
    assert by_description["minimal intent"] == by_description["explicit nulls"]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=6), json_values, max_size=5)


@settings(max_examples=150, deadline=None)
@given(
    args=json_objects,
    input_=st.none() | json_objects,
    resource=st.none() | st.text(st.characters(exclude_categories=["Cc", "Cs"]), max_size=40),
    purpose=st.none() | st.text(st.characters(exclude_categories=["Cc", "Cs"]), max_size=40),
)
def test_digest_equals_rfc8785_for_any_valid_intent(
    args: dict[str, Any], input_: dict[str, Any] | None, resource: str | None, purpose: str | None
) -> None:
    sent: dict[str, Any] = {
        "principal": "user:alice@example.com",
        "action": "tool.call",
        "resource": resource,
        "args": args,
        "purpose": purpose,
        "trace_id": "tr-1",
        "input": input_,
    }
    intent = Intent.create(**sent)
    normalized = _reference_normalize(sent)
    canonical, digest = _reference_digest(normalized)
    assert intent.canonical().decode("utf-8") == canonical
    assert intent.digest == digest


# -- from_json strictness --------------------------------------------------------------


def test_unknown_fields_are_rejected_by_name() -> None:
    with pytest.raises(InputError, match=r"unknown intent field\(s\): 'amount', 'tool'"):
        Intent.from_json(_base(tool="x", amount=3))


@pytest.mark.parametrize("missing", ["principal", "action"])
def test_required_fields(missing: str) -> None:
    obj = _base()
    del obj[missing]
    with pytest.raises(InputError, match=f"missing required field.*{missing}"):
        Intent.from_json(obj)


@pytest.mark.parametrize("value", [[], "intent", None, 3])
def test_non_object_intent_is_rejected(value: Any) -> None:
    with pytest.raises(InputError, match="must be a JSON object"):
        Intent.from_json(value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("principal", 7),
        ("action", ["refund"]),
        ("resource", 1),
        ("purpose", {"why": "x"}),
        ("trace_id", 5),
        ("parent_id", True),
        ("args", [1, 2]),
        ("args", "amount=1"),
        ("input", "text"),
    ],
)
def test_wrong_types_are_named(name: str, value: Any) -> None:
    with pytest.raises(InputError, match=f"^{name} must be"):
        Intent.from_json({**_base(), name: value})


# -- identifiers and text --------------------------------------------------------------


@pytest.mark.parametrize(
    "action", ["refund_payment", "a", "stripe.refunds:create", "x-y_z.1", "A" + "b" * 127]
)
def test_valid_action_names(action: str) -> None:
    assert Intent.create(principal="p", action=action).action == action


@pytest.mark.parametrize(
    "action",
    ["", "1refund", "_x", "refund payment", "refund/payment", "réfund", "a\n", "A" + "b" * 128],
)
def test_invalid_action_names(action: str) -> None:
    with pytest.raises(InputError, match=r"^action .* is invalid"):
        Intent.create(principal="p", action=action)


@pytest.mark.parametrize(
    "principal", ["agent:billing-bot", "user:alice@example.com", "svc/a+b", "9", "a" * 256]
)
def test_valid_principals(principal: str) -> None:
    assert Intent.create(principal=principal, action="x").principal == principal


@pytest.mark.parametrize("principal", ["", ":agent", "agent bot", "zoë", "a\x00", "a" * 257])
def test_invalid_principals(principal: str) -> None:
    with pytest.raises(InputError, match=r"^principal .* is invalid"):
        Intent.create(principal=principal, action="x")


@pytest.mark.parametrize("field", ["trace_id", "parent_id"])
@pytest.mark.parametrize("value", ["", "-1", "a b", "a/b", "x" * 129])
def test_invalid_ids(field: str, value: str) -> None:
    with pytest.raises(InputError, match=f"^{field} .* is invalid"):
        Intent.from_json(_base(**{field: value}))


@pytest.mark.parametrize(
    ("field", "limit"), [("resource", MAX_RESOURCE_CHARS), ("purpose", MAX_PURPOSE_CHARS)]
)
def test_text_length_limits(field: str, limit: int) -> None:
    assert Intent.from_json(_base(**{field: "é" * limit})).to_json()[field] == "é" * limit
    with pytest.raises(InputError, match=f"^{field} is {limit + 1} characters long"):
        Intent.from_json(_base(**{field: "é" * (limit + 1)}))


@pytest.mark.parametrize("field", ["resource", "purpose"])
@pytest.mark.parametrize("char", ["\x00", "\n", "\t", "\x1b", "\x7f", "\x85"])
def test_text_rejects_control_characters(field: str, char: str) -> None:
    with pytest.raises(InputError, match=f"^{field} must not contain control characters"):
        Intent.from_json(_base(**{field: f"orders{char}1"}))


def test_text_rejects_lone_surrogates() -> None:
    with pytest.raises(InputError, match=r"^resource contains a lone surrogate"):
        Intent.from_json(_base(resource="a\ud800"))


# -- args and input --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"amount": float("nan")}, r"^args\.amount: NaN and infinity"),
        ({"amount": float("inf")}, r"^args\.amount: NaN and infinity"),
        ({"n": MAX_SAFE_INTEGER + 1}, r"^args\.n: integer outside"),
        ({"n": -MAX_SAFE_INTEGER - 1}, r"^args\.n: integer outside"),
        ({"items": [{"price": 1}, {"price": (1, 2)}]}, r"^args\.items\[1\]\.price: tuple is not"),
        ({"tags": {"a", "b"}}, r"^args\.tags: set is not a JSON value"),
        ({"raw": b"bytes"}, r"^args\.raw: bytes is not a JSON value"),
        ({"a b": {1: "x"}}, r"^args\['a b'\]: object key 1 is not a string"),
        ({"text": "a\udc00"}, r"^args\.text: contains a lone surrogate"),
        ({"\ud800": 1}, r"^args\['\\ud800'\]: contains a lone surrogate"),
    ],
)
def test_args_must_be_json_values(args: dict[Any, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        Intent.create(principal="p", action="x", args=args)


class _Str(str):
    __slots__ = ()


def test_subclasses_of_json_types_are_rejected() -> None:
    with pytest.raises(InputError, match=r"^args\.s: _Str is not a JSON value"):
        Intent.create(principal="p", action="x", args={"s": _Str("x")})


def test_integer_bounds_are_inclusive() -> None:
    args = {"max": MAX_SAFE_INTEGER, "min": -MAX_SAFE_INTEGER, "flag": True}
    assert Intent.create(principal="p", action="x", args=args).to_json()["args"] == args


def _nested(depth: int) -> dict[str, Any]:
    """An object whose container nesting is exactly ``depth`` (the object itself is 1)."""
    value: Any = 0
    for level in range(depth - 1):
        value = [value] if level % 2 == 0 else {"a": value}
    return {"a": value}


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def test_nesting_depth_limit() -> None:
    ok = _nested(MAX_JSON_DEPTH)
    assert _depth(ok) == MAX_JSON_DEPTH
    Intent.create(principal="p", action="x", args=ok, input=ok)
    too_deep = {"a": ok}
    with pytest.raises(InputError, match=f"nested deeper than {MAX_JSON_DEPTH}"):
        Intent.create(principal="p", action="x", args=too_deep)
    with pytest.raises(InputError, match=f"^input.*nested deeper than {MAX_JSON_DEPTH}"):
        Intent.create(principal="p", action="x", input=too_deep)


@pytest.mark.parametrize(("field", "limit"), [("args", MAX_ARGS_BYTES), ("input", MAX_INPUT_BYTES)])
def test_canonical_size_limits(field: str, limit: int) -> None:
    # {"k":"xxx..."} is 8 bytes of framing plus the string.
    fits = {"k": "x" * (limit - 8)}
    assert len(rfc8785.dumps(fits)) == limit
    Intent.from_json(_base(**{field: fits}))
    with pytest.raises(InputError, match=f"^{field} is {limit + 1} bytes in canonical form"):
        Intent.from_json(_base(**{field: {"k": "x" * (limit - 7)}}))


def test_size_is_measured_canonically_not_as_sent() -> None:
    # "\u00e9" escapes take 6 bytes as sent but 2 bytes canonically: this fits.
    value = {"k": "é" * ((MAX_ARGS_BYTES - 8) // 2)}
    assert len(json.dumps(value)) > MAX_ARGS_BYTES
    Intent.from_json(_base(args=value))


# -- immutability, equality, context ---------------------------------------------------


def test_intent_owns_a_copy_of_args_and_input() -> None:
    args: dict[str, Any] = {"amount": 10, "items": [1, 2]}
    context: dict[str, Any] = {"ticket": "T-1"}
    intent = Intent.create(principal="p", action="x", args=args, input=context)
    before = intent.digest
    args["amount"] = 10_000
    args["items"].append(3)
    context["ticket"] = "T-2"
    fresh = Intent.create(principal="p", action="x", args=args, input=context)
    assert intent.args == {"amount": 10, "items": [1, 2]}
    assert intent.input == {"ticket": "T-1"}
    assert (
        Intent.create(principal="p", action="x", args=intent.args, input=intent.input).digest
        == before
    )
    assert fresh.digest != before


def test_to_json_returns_fresh_copies() -> None:
    intent = Intent.create(principal="p", action="x", args={"items": [1]})
    exported = intent.to_json()
    exported["args"]["items"].append(2)
    assert intent.to_json()["args"] == {"items": [1]}
    assert intent.digest == Intent.create(principal="p", action="x", args={"items": [1]}).digest


def test_intent_is_frozen() -> None:
    intent = Intent.create(principal="p", action="x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        intent.action = "y"  # type: ignore[misc]


def test_equality_and_hash_follow_the_digest() -> None:
    one = Intent.create(principal="p", action="x", args={"n": 1})
    one_float = Intent.create(principal="p", action="x", args={"n": 1.0})
    true = Intent.create(principal="p", action="x", args={"n": True})
    assert one == one_float  # RFC 8785 serializes both as 1
    assert hash(one) == hash(one_float)
    assert one != true  # Python says 1 == True; JSON does not
    assert len({one, one_float, true}) == 2


def test_create_constructor_and_from_json_agree() -> None:
    kwargs: dict[str, Any] = {"principal": "p", "action": "x", "resource": "r", "args": {"a": [1]}}
    assert Intent.create(**kwargs) == Intent(**kwargs) == Intent.from_json(kwargs)
    assert Intent.create(principal="p", action="x", args=None).args == {}


def test_constructor_validates() -> None:
    with pytest.raises(InputError, match=r"^action"):
        Intent(principal="p", action="no spaces")


def test_with_context_replaces_only_what_is_given() -> None:
    intent = Intent.create(principal="p", action="x", args={"a": 1}, trace_id="t1", parent_id="r0")
    assert intent.with_context() is intent
    moved = intent.with_context(trace_id="t2")
    assert (moved.trace_id, moved.parent_id, moved.args) == ("t2", "r0", {"a": 1})
    cleared = intent.with_context(parent_id=None)
    assert (cleared.trace_id, cleared.parent_id) == ("t1", None)
    assert len({intent.digest, moved.digest, cleared.digest}) == 3
    with pytest.raises(InputError, match=r"^trace_id"):
        intent.with_context(trace_id="not valid")
    with pytest.raises(InputError, match=r"^parent_id"):
        intent.with_context(parent_id="-bad")


def test_with_context_equals_building_the_intent_afresh() -> None:
    intent = Intent.create(
        principal="p", action="x", resource="r", args={"a": 1.5, "é": [1]}, input={"k": "v"}
    )
    moved = intent.with_context(trace_id="t9", parent_id="r9")
    fresh = Intent.from_json({**intent.to_json(), "trace_id": "t9", "parent_id": "r9"})
    assert moved.canonical() == fresh.canonical()
    assert moved.digest == fresh.digest
    assert moved.to_json() == fresh.to_json()


def test_digest_is_cached() -> None:
    intent = Intent.create(principal="p", action="x", args={"a": 1.5})
    assert intent.digest is intent.digest
    assert intent.digest.startswith("sha256:")
    assert len(intent.digest) == len("sha256:") + 64
