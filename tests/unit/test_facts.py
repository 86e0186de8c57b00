"""The trace-facts fold (clearance._internal.gate.facts): definitions and invariants.

Each definition in the module docstring has a test here; the two invariants
(constant size, ledger domain) have properties.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from clearance._internal.canonical import canonical_json
from clearance._internal.gate import facts
from clearance._internal.gate.facts import (
    EMPTY_MANDATE,
    STATE_KEYS,
    advance,
    for_request,
    initial_state,
    ledger_number,
    state_of,
)

MANDATE = {"text": "pay the March invoices", "bounds": {"spend_cap": 600}}


def decision(
    action: str,
    effect: str = "allow",
    args: dict[str, Any] | None = None,
    *,
    untrusted_output: bool = False,
) -> dict[str, Any]:
    """The parts of a decision entry that advance() reads."""
    return {
        "effect": effect,
        "intent": {"action": action, "args": args if args is not None else {}},
        "untrusted_output": untrusted_output,
    }


def fold(*decisions: dict[str, Any]) -> dict[str, Any]:
    state = initial_state("t-1", MANDATE)
    for entry in decisions:
        state = advance(state, entry)
    return state


# --- initial_state ------------------------------------------------------------------


def test_initial_state_is_empty_and_holds_the_mandate() -> None:
    state = initial_state("t-1", MANDATE)
    assert state == {
        "id": "t-1",
        "count": 0,
        "actions": [],
        "untrusted": False,
        "totals": {},
        "mandate": MANDATE,
        "provenance_index": None,
    }
    assert tuple(state) == STATE_KEYS


def test_initial_state_normalizes_the_mandate() -> None:
    # Missing parts become the narrowest mandate; bounds None means no bounds.
    assert initial_state("t", {})["mandate"] == EMPTY_MANDATE
    assert initial_state("t", {"text": "x", "bounds": None})["mandate"] == {
        "text": "x",
        "bounds": {},
    }
    assert initial_state("t", EMPTY_MANDATE)["mandate"] == {"text": "", "bounds": {}}


def test_initial_state_copies_the_bounds() -> None:
    bounds = {"spend_cap": 600}
    state = initial_state("t", {"text": "", "bounds": bounds})
    bounds["spend_cap"] = 10**9
    assert state["mandate"]["bounds"] == {"spend_cap": 600}


# --- advance ----------------------------------------------------------------------------


def test_allow_counts_records_the_action_and_sums_numbers() -> None:
    state = fold(decision("pay_invoice", args={"amount": 120, "vendor": "acme"}))
    assert state["count"] == 1
    assert state["actions"] == ["pay_invoice"]
    assert state["totals"] == {"pay_invoice": {"amount": 120}}
    assert state["untrusted"] is False


def test_actions_are_distinct_in_first_allowed_order() -> None:
    state = fold(
        decision("search"),
        decision("pay_invoice", args={"amount": 1}),
        decision("search"),
        decision("send_email"),
        decision("pay_invoice", args={"amount": 2}),
    )
    assert state["actions"] == ["search", "pay_invoice", "send_email"]
    assert state["count"] == 5
    assert state["totals"] == {"pay_invoice": {"amount": 3}}


def test_deny_and_other_effects_count_but_change_nothing_else() -> None:
    before = fold(decision("pay_invoice", args={"amount": 100}))
    for effect in ("deny", "require_approval", "anything-else"):
        after = advance(before, decision("pay_invoice", effect, {"amount": 500}))
        assert after["count"] == before["count"] + 1
        assert {k: v for k, v in after.items() if k != "count"} == {
            k: v for k, v in before.items() if k != "count"
        }


def test_a_denied_untrusted_tool_does_not_taint_the_trace() -> None:
    state = fold(decision("fetch_url", "deny", untrusted_output=True))
    assert state["untrusted"] is False


def test_untrusted_is_sticky_once_an_untrusted_tool_is_allowed() -> None:
    state = fold(decision("fetch_url", untrusted_output=True))
    assert state["untrusted"] is True
    state = advance(state, decision("search"))
    assert state["untrusted"] is True


def test_bools_are_not_numbers() -> None:
    state = fold(decision("toggle", args={"on": True, "off": False, "n": 1}))
    assert state["totals"] == {"toggle": {"n": 1}}


def test_only_top_level_numbers_count() -> None:
    state = fold(decision("pay", args={"nested": {"amount": 5}, "list": [1, 2], "s": "7"}))
    assert state["totals"] == {}
    assert state["actions"] == ["pay"]


def test_redacted_values_never_count() -> None:
    redacted = {"redacted": "sha256:" + "0" * 64, "salt": "AAAAAAAAAAAAAAAAAAAAAA=="}
    state = fold(decision("pay", args={"amount": redacted, "fee": 2}))
    assert state["totals"] == {"pay": {"fee": 2}}


def test_floats_sum_and_integral_totals_read_back_as_ints() -> None:
    state = fold(
        decision("pay", args={"amount": 0.5}),
        decision("pay", args={"amount": 119.5}),
    )
    total = state["totals"]["pay"]["amount"]
    assert total == 120
    assert type(total) is int  # as RFC 8785 JSON logs it, so live and replay agree
    state = advance(state, decision("pay", args={"amount": 0.25}))
    assert state["totals"]["pay"]["amount"] == 120.25


def test_totals_are_per_action() -> None:
    state = fold(
        decision("pay", args={"amount": 10}),
        decision("refund", args={"amount": 3}),
        decision("pay", args={"amount": 5, "fee": 1}),
    )
    assert state["totals"] == {"pay": {"amount": 15, "fee": 1}, "refund": {"amount": 3}}


def test_missing_intent_or_args_are_tolerated() -> None:
    state = advance(initial_state("t", {}), {"effect": "allow"})
    assert state["actions"] == ["None"]
    assert state["count"] == 1
    state = advance(state, {"effect": "allow", "intent": {"action": "a", "args": None}})
    assert state["actions"] == ["None", "a"]


def test_advance_never_mutates_its_input() -> None:
    state = fold(decision("pay", args={"amount": 1}))
    snapshot = json.loads(json.dumps(state))
    advance(state, decision("pay", args={"amount": 2}, untrusted_output=True))
    advance(state, decision("other", args={"n": 3}))
    assert state == snapshot


def test_the_mandate_and_id_pass_through_unchanged() -> None:
    state = fold(decision("pay", args={"amount": 1}), decision("x", "deny"))
    assert state["id"] == "t-1"
    assert state["mandate"] == MANDATE


# --- for_request / state_of ---------------------------------------------------------


def test_for_request_adds_depth_and_state_of_drops_it() -> None:
    state = fold(decision("pay", args={"amount": 1}))
    recorded = for_request(state, 2)
    assert recorded["depth"] == 2
    assert {k: v for k, v in recorded.items() if k != "depth"} == state
    assert state_of(recorded) == state
    assert "depth" not in state_of(recorded)


def test_state_of_reads_exactly_the_state_keys() -> None:
    recorded = {**for_request(initial_state("t", MANDATE), 0), "extra": "ignored"}
    assert tuple(state_of(recorded)) == STATE_KEYS


def test_replay_from_the_last_entry_equals_the_live_fold() -> None:
    # The gate keeps only the last decision's facts: the state after decision n is
    # advance(state_of(facts_n), decision_n), and that must equal folding from the start.
    decisions = [
        decision("pay", args={"amount": 1.5}),
        decision("search", "deny"),
        decision("fetch", untrusted_output=True),
        decision("pay", args={"amount": 2.5}),
    ]
    state = initial_state("t", MANDATE)
    for entry in decisions:
        logged = json.loads(canonical_json(for_request(state, 0)))  # read back from the ledger
        state = advance(state_of(logged), entry)
    assert state == fold(*decisions) | {"id": "t"}


# --- ledger_number ------------------------------------------------------------------


def test_ledger_number() -> None:
    assert type(ledger_number(120.0)) is int
    assert ledger_number(120.0) == 120
    assert ledger_number(-3.0) == -3
    assert ledger_number(0.5) == 0.5
    assert type(ledger_number(7)) is int
    # Beyond 2^53 - 1 an integral float is not exactly an int in JSON; it stays a float.
    big = float(2**53)
    assert type(ledger_number(big)) is float
    assert type(ledger_number(float(2**53 - 1))) is int
    assert type(ledger_number(-float(2**53))) is float


# Within ±(2^53 - 1), the domain the docstring promises. (Beyond it RFC 8785 writes an
# integral float without a fraction, so it reads back as an int, not a float.)
@given(st.floats(min_value=-(2**53 - 1), max_value=2**53 - 1))
def test_ledger_number_reads_back_unchanged_from_json(value: float) -> None:
    number = ledger_number(value)
    assert json.loads(canonical_json(number)) == number
    assert type(json.loads(canonical_json(number))) is type(number)


# --- invariants ---------------------------------------------------------------------

ACTION_NAMES = ("pay", "refund", "search", "fetch")
ARG_NAMES = ("amount", "fee", "note", "flag")
ACTIONS = st.sampled_from(ACTION_NAMES)
ARGS = st.dictionaries(
    st.sampled_from(ARG_NAMES),
    st.one_of(st.integers(-1000, 1000), st.booleans(), st.text(max_size=3)),
    max_size=4,
)
DECISIONS = st.lists(
    st.builds(
        decision,
        ACTIONS,
        st.sampled_from(["allow", "deny", "require_approval"]),
        ARGS,
        untrusted_output=st.booleans(),
    ),
    max_size=40,
)


@given(DECISIONS, DECISIONS)
def test_facts_never_grow_with_history(
    first: list[dict[str, Any]], more: list[dict[str, Any]]
) -> None:
    # The size is bounded by the distinct actions and argument names, whatever the
    # trace's length: repeating the whole history again adds no action and no total,
    # and only the count (one integer) and the sums' values change.
    once = fold(*first, *more)
    twice = fold(*first, *more, *first, *more)
    assert twice["count"] == 2 * once["count"]
    assert twice["actions"] == once["actions"]
    assert twice["untrusted"] == once["untrusted"]
    assert {a: set(t) for a, t in twice["totals"].items()} == {
        a: set(t) for a, t in once["totals"].items()
    }
    assert len(twice["actions"]) <= len(ACTION_NAMES)
    assert sum(len(t) for t in twice["totals"].values()) <= len(ACTION_NAMES) * len(ARG_NAMES)


def test_a_long_trace_has_facts_as_small_as_a_short_one() -> None:
    short = fold(*[decision("pay", args={"amount": 1})] * 3)
    long = fold(*[decision("pay", args={"amount": 1})] * 3000)
    assert long["count"] == 3000
    assert len(canonical_json(long)) - len(canonical_json(short)) <= 8  # two wider numbers


@given(DECISIONS)
def test_the_state_is_always_ledger_json(decisions: list[dict[str, Any]]) -> None:
    state = fold(*decisions)
    assert json.loads(canonical_json(state)) == state
    assert tuple(state) == STATE_KEYS


def test_module_constants() -> None:
    assert facts.EMPTY_MANDATE == {"text": "", "bounds": {}}
    assert "depth" not in STATE_KEYS
