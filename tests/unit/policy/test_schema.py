"""Argument schemas: the fast checker never accepts what jsonschema rejects."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearance._internal.policy.schema import ArgsSchema, SchemaDefinitionError

TYPES = ["object", "array", "string", "number", "integer", "boolean", "null"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-5, max_value=5)
    | st.sampled_from([0.0, 1.0, 1.5, -2.5, 3.0])
    | st.sampled_from(["", "a", "ab", "abc", "USD", "x1"])
)
instances = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "c", "amount"]), children, max_size=3)
    ),
    max_leaves=8,
)


def schema_nodes(depth: int) -> st.SearchStrategy[Any]:
    leaf_keywords: dict[str, st.SearchStrategy[Any]] = {
        "type": st.sampled_from(TYPES)
        | st.lists(st.sampled_from(TYPES), min_size=1, max_size=3, unique=True),
        "enum": st.lists(scalars, min_size=1, max_size=3),
        "const": scalars,
        "minimum": st.integers(-3, 3) | st.sampled_from([0.5, 1.5]),
        "maximum": st.integers(-3, 3) | st.sampled_from([0.5, 1.5]),
        "exclusiveMinimum": st.integers(-3, 3),
        "exclusiveMaximum": st.integers(-3, 3),
        "minLength": st.integers(0, 3),
        "maxLength": st.integers(0, 3),
        "pattern": st.sampled_from(["^a", "b$", "[0-9]", "^$"]),
        "minItems": st.integers(0, 2),
        "maxItems": st.integers(0, 2),
        "minProperties": st.integers(0, 2),
        "maxProperties": st.integers(0, 2),
        "required": st.lists(st.sampled_from(["a", "b", "amount"]), max_size=2, unique=True),
        "description": st.text(max_size=5),
        "format": st.sampled_from(["email", "date-time"]),
    }
    if depth > 0:
        child = schema_nodes(depth - 1)
        leaf_keywords["properties"] = st.dictionaries(
            st.sampled_from(["a", "b", "amount"]), child, max_size=2
        )
        leaf_keywords["items"] = child
        leaf_keywords["additionalProperties"] = child
    node = st.fixed_dictionaries({}, optional=leaf_keywords)
    return st.booleans() | node


@settings(max_examples=400, deadline=None)
@given(schema_nodes(2), instances)
def test_fast_checker_never_accepts_what_jsonschema_rejects(schema: Any, instance: Any) -> None:
    if isinstance(schema, bool):
        schema = {"items": schema}
    built = ArgsSchema.build(schema)
    assert built.fast
    validator = jsonschema.Draft202012Validator(schema)
    fast = built._fast
    assert fast is not None
    if fast.check(instance):
        assert validator.is_valid(instance), (schema, instance)
    # and the public answer always agrees with jsonschema
    if isinstance(instance, dict):
        assert (built.violation(instance) is None) == validator.is_valid(instance)


REFUND = {
    "type": "object",
    "required": ["amount", "currency"],
    "additionalProperties": False,
    "properties": {
        "amount": {"type": "number", "exclusiveMinimum": 0},
        "currency": {"enum": ["USD", "EUR"]},
        "card": {
            "type": "object",
            "properties": {"number": {"type": "string", "pattern": "^[0-9]+$"}},
        },
    },
}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"amount": 5, "currency": "USD"}, None),
        ({"currency": "USD"}, 'args missing required property "amount"'),
        ({"amount": "5", "currency": "USD"}, 'args.amount must be of type "number"'),
        ({"amount": 0, "currency": "USD"}, "args.amount must be > 0"),
        ({"amount": 5, "currency": "GBP"}, 'args.currency must be one of ["USD", "EUR"]'),
        ({"amount": 5, "currency": "USD", "x": 1}, 'args unexpected property "x"'),
        (
            {"amount": 5, "currency": "USD", "card": {"number": "4111-1111"}},
            'args.card.number must match the pattern "^[0-9]+$"',
        ),
    ],
)
def test_violation_names_the_path_and_the_rule(args: dict[str, Any], message: str | None) -> None:
    assert ArgsSchema.build(REFUND).violation(args) == message


def test_violation_never_quotes_the_value() -> None:
    secret = "4111-1111-1111-1111"
    schema = ArgsSchema.build(REFUND)
    message = schema.violation({"amount": secret, "currency": "USD", "card": {"number": secret}})
    assert message is not None
    assert secret not in message


def test_schema_outside_the_fast_subset_uses_jsonschema() -> None:
    schema = ArgsSchema.build(
        {"type": "object", "oneOf": [{"required": ["a"]}, {"required": ["b"]}]}
    )
    assert not schema.fast
    assert schema.violation({"a": 1}) is None
    assert (
        schema.violation({"a": 1, "b": 2})
        == 'args fails the \'oneOf\' constraint [{"required": ["a"]}, {"required": ["b"]}]'
    )


def test_invalid_schema_is_refused() -> None:
    with pytest.raises(SchemaDefinitionError, match="invalid JSON Schema at properties/a/type"):
        ArgsSchema.build({"properties": {"a": {"type": "money"}}})
