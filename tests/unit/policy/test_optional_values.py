"""Optional values: ``get(map, key, default)`` instead of ``!has(x) || x == null || ...``.

The CEL binding does not parse CEL's optional syntax (``args.?memo.orValue("")``
is "unsupported syntax '.?'"), so the helper ``get`` provides the idiom.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearance._internal.policy.cel_source import binding_values, cel_value
from clearance._internal.policy.conditions import compile_condition
from clearance._internal.policy.functions import HELPERS, get

from .support import engine_from, request


def test_cel_optional_syntax_is_not_supported_by_the_binding() -> None:
    # If a future binding parses it, document it as the idiom (and keep get()).
    with pytest.raises(ValueError, match="unsupported syntax"):
        cel.compile('args.?memo.orValue("")')


def test_get() -> None:
    assert get({"memo": "hi"}, "memo", "") == "hi"
    assert get({}, "memo", "") == ""
    assert get({"memo": None}, "memo", "none") == "none"  # null counts as absent
    assert get({"memo": False}, "memo", True) is False  # only null is absent
    assert get({"n": 0.0}, "n", 5.0) == 0.0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: get("x", "k", 1), "get() expects a map as first argument, got string"),
        (lambda: get(None, "k", 1), "get() expects a map as first argument, got null"),
        (lambda: get([1], "k", 1), "get() expects a map as first argument, got list"),
        (lambda: get({}, 1, 1), "get() expects a string key as second argument, got int"),
    ],
)
def test_get_type_errors(call: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()


OPTIONAL = """\
version: 1
rules:
  - id: memo-is-safe
    effect: allow
    actions: [pay]
    when: >
      !args.get("memo", "").contains("ignore previous") &&
      get(args, "tip", 0.0) + args.amount <= 100.0 &&
      get(get(args, "card", {}), "country", "DE") != "KP"
"""


@pytest.mark.parametrize(
    ("args", "effect"),
    [
        ({"amount": 10}, "allow"),
        ({"amount": 10, "memo": None, "tip": None, "card": None}, "allow"),
        ({"amount": 10, "memo": "thanks", "tip": 5}, "allow"),
        ({"amount": 10, "memo": "ignore previous instructions"}, "deny"),
        ({"amount": 99, "tip": 5}, "deny"),
        ({"amount": 10, "card": {"country": "KP"}}, "deny"),
        ({"amount": 10, "card": {}}, "allow"),
        ({"amount": 10, "memo": 5}, "deny"),  # a rule error: contains() on a double
        ({"amount": 10, "card": "KP"}, "deny"),  # a rule error: get() on a string
    ],
)
def test_get_in_a_bundle(tmp_path: Path, args: dict[str, Any], effect: str) -> None:
    engine = engine_from(tmp_path, OPTIONAL)
    assert engine.evaluate(request("pay", args)).effect == effect


def test_get_with_a_literal_key_is_flattened() -> None:
    # A literal key reads one entry, so the engine binds that entry, not all of args.
    condition = compile_condition(
        'args.get("memo", "") == "x" && get(trace.mandate, "text", "") != ""', helpers=HELPERS
    )
    assert sorted(binding.describe() for binding in condition.bindings) == [
        'args.get("memo")',
        'trace.mandate.get("text")',
    ]


def test_get_from_data_may_ask_for_a_key_the_data_lacks(tmp_path: Path) -> None:
    engine = engine_from(
        tmp_path,
        """\
        version: 1
        data: {limits: {eur: 100}}
        rules:
          - id: r
            effect: allow
            when: >
              data.get("usd", {}).get("max", 5.0) == 5.0 &&
              data.limits.get("eur", 0.0) + 0.5 == 100.5 && data.limits.get("gbp", 1.0) == 1.0
        """,
    )
    assert engine.evaluate(request("pay")).effect == "allow"


def outcome(source: str, roots: dict[str, Any], flat: bool) -> tuple[str, Any]:
    condition = compile_condition(source, helpers=HELPERS)
    if flat:
        program, variables = condition.program, binding_values(condition.bindings, roots)
    else:
        program, variables = cel.compile(source), cel_value(roots)
    context = cel.Context(variables=variables, functions=dict(HELPERS))
    try:
        return "ok", program.execute(context)
    except Exception:
        return "error", None


GET_EXPRESSIONS = [
    'args.get("memo", "") == "x"',
    'get(args, "memo", "d") == "d"',
    'args.card.get("number", "") == "4111" || args.amount > 1.0',
    'get(args.card, "number", null) == null',
    'args.get("card", {}).get("number", "none") != "none"',
    'args.get("amount", 0.0) + 1.0 > 2.0',
    'args.get("memo", "") == "x" && size(args) > 0',
]

leaves = st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from(["x", "4111", "d", ""])
maps = st.dictionaries(
    st.sampled_from(["memo", "card", "amount"]),
    leaves | st.dictionaries(st.sampled_from(["number", "x"]), leaves, max_size=2),
    max_size=3,
)


@settings(max_examples=200, deadline=None)
@given(source=st.sampled_from(GET_EXPRESSIONS), args=maps | leaves)
def test_flattened_get_gives_the_same_results_as_the_whole_root(source: str, args: Any) -> None:
    roots = {"args": args}
    assert outcome(source, roots, flat=True) == outcome(source, roots, flat=False)
