"""Numbers in policies: every JSON number a condition sees is a CEL double.

The digest, the grant and the ledger hold a JSON number as a number (RFC 8785
writes ``60.0`` as ``60``), so a condition must not be able to tell ``60`` from
``60.0`` or ``6e1``: otherwise a live decision and its replay can differ, and a
decision depends on how a model happened to write a number.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import cel
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from clearance._internal.canonical import canonical_json
from clearance._internal.policy.cel_engine import CelPolicyEngine
from clearance._internal.policy.cel_source import Binding, binding_values, cel_literal, cel_value
from clearance._internal.policy.engine import Decision

from .support import engine_from, request, trace

ARITHMETIC = """\
version: 1
principals:
  "agent:billing-bot": {max_payment: 100}
data:
  limit: 100
  limits: {eur: 100}
rules:
  - id: small
    effect: allow
    actions: [pay]
    when: args.amount + 1.5 <= 100.0
  - id: too-much
    effect: deny
    actions: [pay]
    when: args.amount + 1.5 > 100.0
  - id: attrs
    effect: allow
    actions: [attrs]
    when: args.amount + 0.5 <= principal.attrs.max_payment + 0.0
  - id: folded-data
    effect: allow
    actions: [folded]
    when: args.amount + 0.5 <= data.limit + 0.0 && data.limits.eur * 1.0 == 100.0
  - id: trace-facts
    effect: allow
    actions: [facts]
    when: >
      trace.count + 1.0 <= 3.0 && trace.depth * 2.0 < 10.0 &&
      trace.totals.pay.amount + args.amount <= double(trace.mandate.bounds.spend_cap) &&
      trace.mandate.bounds.spend_cap - 1.0 > 0.0
  - id: input-and-approval
    effect: allow
    actions: [other]
    when: input.n + 0.5 > 1.0 && approval.count + 1.0 >= 2.0
  - id: whole-root
    effect: allow
    actions: [whole]
    when: size(args) > 0 && args["amount"] + 1.5 <= 100.0 && args.items.all(i, i + 0.5 < 9.0)
  - id: negative-zero
    effect: allow
    actions: [divide]
    when: 1.0 / args.x > 0.0
"""


@pytest.fixture
def engine(tmp_path: Path) -> CelPolicyEngine:
    return engine_from(tmp_path, ARITHMETIC)


def summary(decision: Decision) -> tuple[str, list[str]]:
    return decision.effect, decision.rule_ids


@pytest.mark.parametrize("amount", [60, 60.0, json.loads("6e1"), json.loads("60.000")])
def test_an_integral_number_is_the_same_value_however_it_is_written(
    engine: CelPolicyEngine, amount: float
) -> None:
    decision = engine.evaluate(request("pay", {"amount": amount}))
    assert summary(decision) == ("allow", ["small"])


@pytest.mark.parametrize("amount", [99, 99.0])
def test_the_deny_rule_matches_however_the_number_is_written(
    engine: CelPolicyEngine, amount: float
) -> None:
    assert summary(engine.evaluate(request("pay", {"amount": amount}))) == ("deny", ["too-much"])


def test_principal_attributes_and_folded_data_are_doubles(engine: CelPolicyEngine) -> None:
    assert engine.evaluate(request("attrs", {"amount": 60})).effect == "allow"
    assert engine.evaluate(request("folded", {"amount": 60})).effect == "allow"


def test_trace_facts_are_doubles(engine: CelPolicyEngine) -> None:
    facts = trace(
        count=2,
        depth=1,
        totals={"pay": {"amount": 40}},
        mandate={"text": "", "bounds": {"spend_cap": 100}},
    )
    assert summary(engine.evaluate(request("facts", {"amount": 60}, facts=facts))) == (
        "allow",
        ["trace-facts"],
    )


def test_input_and_approval_are_doubles(engine: CelPolicyEngine) -> None:
    decision = engine.evaluate(request("other", input={"n": 1}, approval={"count": 1}))
    assert decision.effect == "allow"


def test_a_root_bound_whole_holds_doubles_at_every_depth(engine: CelPolicyEngine) -> None:
    decision = engine.evaluate(request("whole", {"amount": 60, "items": [1, 2.0, 8]}))
    assert summary(decision) == ("allow", ["whole-root"])


def test_negative_zero_is_zero(engine: CelPolicyEngine) -> None:
    # RFC 8785 writes -0.0 as 0, so the ledger cannot tell them apart; neither may a rule.
    for x in (0, 0.0, -0.0):
        assert engine.evaluate(request("divide", {"x": x})).effect == "allow"


def test_arithmetic_with_an_integer_literal_fails_whatever_the_number(tmp_path: Path) -> None:
    engine = engine_from(
        tmp_path,
        """\
        version: 1
        rules:
          - {id: int-literal, effect: allow, when: args.amount + 1 <= 100.0}
        """,
    )
    for amount in (60, 60.0):
        decision = engine.evaluate(request("pay", {"amount": amount}))
        assert decision.effect == "deny"
        message = decision.reasons[0].message
        assert "double + int" in message
        assert "1.0" in message  # the hint: write the literal with a decimal point


def test_a_non_boolean_result_is_named_with_its_cel_type(tmp_path: Path) -> None:
    engine = engine_from(tmp_path, "version: 1\nrules: [{id: r, effect: allow, when: args.n}]\n")
    decision = engine.evaluate(request("pay", {"n": 5}))
    assert "returned double instead of a bool" in decision.reasons[0].message


def test_bools_stay_bools(tmp_path: Path) -> None:
    engine = engine_from(
        tmp_path,
        """\
        version: 1
        data: {on: true}
        rules:
          - {id: r, effect: allow, when: "args.flag == true && data.on && args.flag != 1.0"}
        """,
    )
    assert engine.evaluate(request("pay", {"flag": True})).effect == "allow"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (60, 60.0),
        (-0.0, 0.0),
        (True, True),
        (None, None),
        ("60", "60"),
        ({"a": [1, {"b": 2}], "c": False}, {"a": [1.0, {"b": 2.0}], "c": False}),
    ],
)
def test_cel_value(value: Any, expected: Any) -> None:
    converted = cel_value(value)
    assert converted == expected
    assert json.dumps(converted) == json.dumps(expected)  # types too: 1.0 is not 1 here
    if isinstance(converted, float):
        assert math.copysign(1.0, converted) == 1.0


def test_cel_literal_writes_numbers_as_doubles() -> None:
    assert cel_literal(60) == "60.0"
    assert cel_literal(-3) == "(-3.0)"
    assert cel_literal(True) == "true"
    assert cel_literal([1, {"a": 2}]) == '[1.0, {"a": 2.0}]'
    assert cel_literal(-0.0) == "0.0"


def test_every_binding_kind_converts_numbers() -> None:
    roots: dict[str, Any] = {"args": {"n": 1, "m": {"k": 2}}, "data": {"x": 3}}
    values = binding_values(
        (
            Binding("__v", "args", ("n",)),
            Binding("__m", "args", ("m",)),
            Binding("args", "args"),
            Binding("data", "data"),
        ),
        roots,
    )
    assert json.dumps(values, sort_keys=True) == json.dumps(
        {"__m": {"k": 2.0}, "__v": 1.0, "args": {"m": {"k": 2.0}, "n": 1.0}, "data": {"x": 3.0}},
        sort_keys=True,
    )
    assert roots == {"args": {"n": 1, "m": {"k": 2}}, "data": {"x": 3}}  # never mutated
    assert type(roots["args"]["n"]) is int


# --- property: live values and their JSON round trip decide alike ------------------------

PATHS = (
    "args.a",
    "args.b.c",
    "args.b.d",
    "args.e",
    "input.a",
    "trace.count",
    "trace.totals.pay.amount",
    "data.limit",
    "principal.attrs.cap",
)
LISTS = ("args.items", "args.b.items")
DOUBLES = st.sampled_from(["0.0", "1.0", "1.5", "-2.5", "60.0", "100.0", "1e3"])
INTS = st.sampled_from(["0", "1", "60", "-3", "100"])
STRINGS = st.sampled_from(['"x"', '"60"', '""'])


@st.composite
def atoms(draw: st.DrawFn) -> str:
    path = draw(st.sampled_from(PATHS))
    kind = draw(st.integers(0, 9))
    literal = draw(DOUBLES | INTS)
    if kind == 0:
        return f"has({path})"
    if kind == 1:
        return f"{path} {draw(st.sampled_from(['<', '<=', '>', '>=', '==', '!=']))} {literal}"
    if kind == 2:
        op = draw(st.sampled_from(["+", "-", "*", "/"]))
        bound = draw(DOUBLES)
        return f"{path} {op} {draw(DOUBLES | INTS)} <= {bound}"
    if kind == 3:
        return f"{literal} in {draw(st.sampled_from(LISTS))}"
    if kind == 4:
        return f"{path} in [{literal}, {draw(DOUBLES | INTS | STRINGS)}]"
    if kind == 5:
        return f"size({draw(st.sampled_from(LISTS))}) {draw(st.sampled_from(['<', '==']))} 2"
    if kind == 6:
        return f"{path} == {draw(STRINGS)}"
    if kind == 7:
        items = draw(st.sampled_from(LISTS))
        return f"{items}.exists(x, x + {draw(DOUBLES)} > {draw(DOUBLES)})"
    if kind == 8:
        return f"double({path}) * 2.0 == {draw(DOUBLES)}"
    return f"int({path}) == {draw(INTS)}"


@st.composite
def conditions(draw: st.DrawFn) -> str:
    parts = draw(st.lists(atoms(), min_size=1, max_size=3))
    joined = parts[0]
    for part in parts[1:]:
        joined = f"({joined}) {draw(st.sampled_from(['&&', '||']))} {part}"
    return f"!({joined})" if draw(st.booleans()) else joined


def numbers() -> st.SearchStrategy[Any]:
    # Integers within ±(2**53-1), as intents allow; integral floats too, since a
    # model writes 60.0 as often as 60.
    integral = st.integers(-200, 200)
    return (
        integral
        | integral.map(float)
        | st.floats(-1e3, 1e3, allow_nan=False)
        | st.sampled_from([-0.0, 2**53 - 1, float(2**53 - 1), 1e16, 0.1, 1e300])
    )


json_leaves = numbers() | st.booleans() | st.none() | st.sampled_from(["x", "60", ""])
args_strategy = st.fixed_dictionaries(
    {},
    optional={
        "a": json_leaves,
        "b": st.fixed_dictionaries(
            {},
            optional={"c": json_leaves, "d": json_leaves, "items": st.lists(numbers(), max_size=3)},
        )
        | json_leaves,
        "e": json_leaves,
        "items": st.lists(numbers() | json_leaves, max_size=3),
    },
)


def replayed(value: Any) -> Any:
    """What decision replay reads back from the ledger for ``value``."""
    return json.loads(canonical_json(value))


def rewritten(value: Any) -> Any:
    """``value`` with every integral number written the other way (60 <-> 60.0)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) <= 2**53 - 1 else value
    if isinstance(value, dict):
        return {k: rewritten(v) for k, v in value.items()}
    return [rewritten(v) for v in value]


def bundle(conditions: list[str]) -> CelPolicyEngine:
    rules = [
        {"id": f"r{i}", "effect": effect, "when": when}
        for i, (effect, when) in enumerate(
            zip(["allow", "deny", "approval_required"], conditions, strict=False)
        )
    ]
    # args.e must be an integer at most 100 (JSON Schema: 60.0 is an integer too).
    schema = {"type": "object", "properties": {"e": {"type": "integer", "maximum": 100}}}
    return CelPolicyEngine.from_document(
        {
            "version": 1,
            "strict": False,
            "principals": {"agent:billing-bot": {"cap": 50}},
            "tools": {"pay": {"args_schema": schema, "untrusted_output": False, "sensitive": []}},
            "data": {"limit": 100, "ratio": 0.5},
            "rules": rules,
        }
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sources=st.lists(conditions(), min_size=1, max_size=3),
    args=args_strategy,
    input=st.none() | args_strategy,
    count=st.integers(0, 5),
    total=numbers(),
)
def test_a_decision_equals_the_decision_on_its_json_round_trip(
    sources: list[str], args: dict[str, Any], input: Any, count: int, total: float
) -> None:
    engine = bundle(sources)
    facts = trace(count=count, totals={"pay": {"amount": total}})
    live = engine.evaluate(request("pay", args, input=input, facts=facts))
    replay = engine.evaluate(
        request("pay", replayed(args), input=replayed(input), facts=replayed(facts))
    )
    assert summary(live) == summary(replay)
    other = engine.evaluate(
        request("pay", rewritten(args), input=rewritten(input), facts=rewritten(facts))
    )
    assert summary(live) == summary(other)


@settings(max_examples=100, deadline=None)
@given(args=args_strategy)
def test_bound_values_equal_their_json_round_trip(args: dict[str, Any]) -> None:
    # The engine sees exactly what replay sees: the converted live value and the
    # converted round-tripped value are the same JSON, type for type.
    assume(args)
    live, replay = cel_value(args), cel_value(replayed(args))
    assert json.dumps(live, sort_keys=True) == json.dumps(replay, sort_keys=True)
    assert cel.compile("a == b").execute({"a": live, "b": replay}) is True
