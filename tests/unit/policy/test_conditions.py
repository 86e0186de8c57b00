"""Compiling conditions: reference checks, field-path analysis, data folding, builtins."""

from __future__ import annotations

from typing import Any

import cel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearance._internal.policy.cel_source import binding_values, cel_literal, cel_value
from clearance._internal.policy.conditions import (
    BUILTINS,
    ConditionError,
    compile_condition,
)
from clearance._internal.policy.functions import HELPERS


def compile_(source: str, data: dict[str, Any] | None = None) -> Any:
    return compile_condition(source, helpers=HELPERS, data=data)


def test_builtins_list_matches_the_binding() -> None:
    probes = ['{n}("a")', "{n}(1)", '"a".{n}("a")', '"a".{n}()', "[1].{n}()"]
    probes.append('timestamp("2020-01-01T00:00:00Z").{n}()')
    for name in sorted(BUILTINS | {"lowerAscii", "max", "trim"}):
        known = False
        for probe in probes:
            try:
                cel.compile(probe.format(n=name)).execute({})
                known = True
            except Exception as exc:
                known = known or "Undefined variable or function" not in str(exc)
        assert known is (name in BUILTINS), name


def test_comprehension_variables_are_allowed() -> None:
    condition = compile_("args.items.all(x, x.price < 10) && [1].exists_one(y, y == 1)")
    assert condition.roots == {"args"}


def test_unknown_variable_is_rejected_with_the_allowed_list() -> None:
    with pytest.raises(ConditionError, match=r"unknown variable\(s\) user \(allowed: principal"):
        compile_("user.id == 1")


def test_unknown_function_is_rejected() -> None:
    with pytest.raises(ConditionError, match=r"unknown function\(s\) lowerAscii"):
        compile_('args.to.lowerAscii() == "x"')


def test_namespaced_function_is_rejected() -> None:
    with pytest.raises(ConditionError, match=r"unknown variable\(s\) math"):
        compile_("math.greatest(1, 2) > 1")


def test_comprehension_variable_may_not_shadow_a_root() -> None:
    with pytest.raises(ConditionError, match="'args' shadows a policy variable"):
        compile_("args.items.all(args, args > 1)")


def test_syntax_error_shows_the_cel_error() -> None:
    with pytest.raises(ConditionError, match=r"syntax error in 'args\.x <'.*Syntax error"):
        compile_("args.x <")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("args.amount < 1 && args.to == 'x'", {"args": {"amount": None, "to": None}}),
        (
            "trace.mandate.text.contains(args.to)",
            {"args": {"to": None}, "trace": {"mandate": {"text": None}}},
        ),
        ("size(args) > 1", {"args": None}),
        ('args["to"] == "x"', {"args": None}),
        ("args.all(k, k == 'x')", {"args": None}),
        ("has(args.card.number)", {"args": {}}),
        ("trace.mandate.text == '' && size(trace.mandate) > 0", {"trace": {"mandate": None}}),
        ("trace.actions.exists(a, a == 'x')", {"trace": {"actions": None}}),
        ("'args.secret' == args . to // args.other\n", {"args": {"to": None}}),
        ("args.data == 1", {"args": {"data": None}}),
        ("now < timestamp('2030-01-01T00:00:00Z')", {"now": None}),
    ],
)
def test_field_paths(source: str, expected: dict[str, Any]) -> None:
    assert dict(compile_(source).fields) == expected


DATA = {
    "payees": ["acme", "globex"],
    "limits": {"eur": {"max": 500}, "usd": 200.5},
    "neg": -3,
    "flag": True,
    "nothing": None,
    "text": 'quote " and \\ and\nnewline é 😀',
}

EXPRESSIONS = [
    "args.to in data.payees",
    "data.payees.exists(p, p == args.to)",
    "has(data.limits.eur) && data.limits.eur.max > data.neg",
    "has(data.limits.gbp)",
    "data.limits.gbp == 1",
    "data.limits.usd + 0.5 == 201.0",
    '"payees" in data && size(data) == 6',
    'data["limits"]["eur"].max == 500',
    "data.flag && data.nothing == null",
    "data.text.contains(args.to)",
    "data.payees[1] == args.to",
    "-data.neg == 3",
    "data.limits.eur.max + 0.5 == 500.5 && data.neg * 2.0 == -6.0",
    "data.payees.size() + 1 == 3",
    "has(data.limits.eur.max) && !has(data.limits.eur.min)",
    "has(data.payees.x)",
    "has(data.limits.usd.x)",
]


def outcome(program: cel.Program, variables: dict[str, Any]) -> tuple[str, Any]:
    """The result of a program, or the fact that it failed (failures all deny)."""
    try:
        return ("ok", program.execute(variables))
    except Exception:
        return ("error", None)


def rewritten_outcome(source: str, roots: dict[str, Any]) -> tuple[str, Any]:
    condition = compile_(source, data=DATA)
    return outcome(condition.program, binding_values(condition.bindings, roots))


@pytest.mark.parametrize("source", EXPRESSIONS)
@pytest.mark.parametrize("to", ["acme", "zeta", 'quote "'])
def test_folding_data_gives_the_same_results_as_a_data_variable(source: str, to: str) -> None:
    folded = compile_(source, data=DATA)
    assert all(binding.root != "data" for binding in folded.bindings)
    roots = {"args": {"to": to}, "data": DATA}
    assert rewritten_outcome(source, roots) == outcome(cel.compile(source), cel_value(roots))


FLAT_EXPRESSIONS = [
    "args.amount <= 200.0 && args.currency == 'USD'",
    "has(args.card) && has(args.card.number)",
    "has(args.card.number) && args.card.number.size() > 2",
    "args.card.number == '4111' || args.amount > 1",
    "size(args) >= 1 && args.amount != null",
    "args.amount == null",
    "trace.untrusted && !(args.to in data.payees || trace.mandate.text.contains(args.to))",
    "has(trace.mandate.bounds.cap) && trace.mandate.bounds.cap > 1 && size(trace.mandate) > 0",
    "trace.actions.exists(a, a == 'pay') && trace.count < 3",
    "args.items.all(i, i.price < 10)",
    "args['amount'] == 5 || args.amount == 6",
    "principal.attrs.team == 'finance' && principal.id.startsWith('agent:')",
    "input == null || input.ticket == 'T-1'",
    "has(input.ticket)",
    "approval != null && approval.count >= 2",
    "args.amount + 0.5 > 1.0 || trace.count * 2.0 > 3.0",
    "args.items.exists(i, i.price - 1.0 < 0.0)",
]

leaves = (
    st.none()
    | st.booleans()
    | st.integers(-3, 300)
    | st.sampled_from([0.5, 250.0])
    | st.sampled_from(["USD", "acme", "4111", "pay", ""])
)
values = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["number", "price", "cap", "x"]), children, max_size=2)
    ),
    max_leaves=6,
)
maps = st.dictionaries(
    st.sampled_from(["amount", "currency", "card", "to", "items", "ticket", "count"]),
    values,
    max_size=4,
)


@settings(max_examples=150, deadline=None)
@given(
    source=st.sampled_from(FLAT_EXPRESSIONS),
    args=maps,
    facts=st.fixed_dictionaries(
        {},
        optional={
            "untrusted": st.booleans() | leaves,
            "count": leaves,
            "actions": st.lists(st.sampled_from(["pay", "read"]), max_size=2) | leaves,
            "mandate": st.fixed_dictionaries({}, optional={"text": leaves, "bounds": maps | leaves})
            | leaves,
        },
    ),
    attrs=maps,
    input=st.none() | maps,
    approval=st.none() | maps,
)
def test_flattening_gives_the_same_results_as_whole_variables(
    source: str,
    args: dict[str, Any],
    facts: dict[str, Any],
    attrs: dict[str, Any],
    input: dict[str, Any] | None,
    approval: dict[str, Any] | None,
) -> None:
    roots = {
        "args": args,
        "trace": facts,
        "principal": {"id": "agent:x", "attrs": attrs},
        "input": input,
        "approval": approval,
        "data": DATA,
    }
    # The reference binds whole roots holding what a condition sees: numbers as doubles.
    assert rewritten_outcome(source, roots) == outcome(cel.compile(source), cel_value(roots))


def test_flattening_binds_paths_not_roots() -> None:
    condition = compile_("args.amount <= 200.0 && has(args.card.number) && size(trace.actions) > 0")
    assert sorted(binding.describe() for binding in condition.bindings) == [
        "args.amount",
        "has(args.card.number)",
        "trace.actions",
    ]


def test_comprehension_variables_may_not_look_like_bindings() -> None:
    with pytest.raises(ConditionError, match="'__v_args_2to' may not start with '__'"):
        compile_("[1].all(__v_args_2to, __v_args_2to > 0)")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)


@given(json_values)
def test_cel_literal_denotes_the_value(value: Any) -> None:
    assert cel.compile(f"({cel_literal(value)}) == v").execute({"v": value}) is True
