"""Trace integrity under attack (docs/design.md §3 "Trace integrity", fail-closed rule 11).

Each test is an attempt a hostile agent (or careless application code) made in
the adversarial review: concurrent calls spending one cap, ways out of a trace,
a made-up parent or principal, long traces. Every governed body appends to
``ran``, so a test that expects a refusal also proves nothing executed.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from clearance._internal.gate.core import Gate
from clearance._internal.gate.traces import carry, states_for
from clearance._internal.home import Home
from clearance._internal.wiring import open_gate
from clearance.errors import BindingError, Denied

from .conftest import FixedClock

PRINCIPAL = "agent:ops-bot"


def payment(amount: float, to: str = "acme-supplies", **extra: Any) -> dict[str, Any]:
    return {
        "principal": PRINCIPAL,
        "action": "pay_invoice",
        "args": {"to": to, "amount": amount, "currency": "EUR"},
        **extra,
    }


def read(path: str = "notes.md", **extra: Any) -> dict[str, Any]:
    return {"principal": PRINCIPAL, "action": "read_file", "args": {"path": path}, **extra}


def decisions(gate: Gate) -> list[dict[str, Any]]:
    return [dict(e.entry) for e in gate.ledger.scan() if e.entry["type"] == "decision"]


def attempt(gate: Gate, intent: dict[str, Any], ran: list[str], tag: str = "body") -> str:
    """One governed call; returns "allowed" or "denied" (anything else propagates)."""
    try:
        with gate.clearance(intent):
            ran.append(tag)
    except Denied:
        return "denied"
    return "allowed"


# --- A1: concurrent calls in one trace cannot spend one cap twice --------------------------


def test_eight_threads_in_one_trace_spend_the_cap_once(gate: Gate) -> None:
    ran: list[str] = []
    barrier = threading.Barrier(8)

    def pay() -> str:
        barrier.wait()
        return attempt(gate, payment(490.0), ran)

    with (
        gate.trace("Pay acme-supplies", bounds={"spend_cap": 600}),
        ThreadPoolExecutor(max_workers=8) as pool,
    ):
        carried = carry(pay)  # captured here, in the trace; the workers' own context is empty
        outcomes = list(pool.map(lambda _: carried(), range(8)))
    assert sorted(outcomes) == ["allowed"] + ["denied"] * 7
    assert len(ran) == 1
    logged = decisions(gate)
    assert [d["effect"] for d in logged].count("allow") == 1
    # every decision saw every decision of its trace committed before it
    assert sorted(d["facts"]["count"] for d in logged) == list(range(8))
    for d in logged:
        if d["effect"] == "deny":
            assert "payments-within-spend-cap" in [r["rule"] for r in d["reasons"]]


def test_asyncio_tasks_in_one_trace_spend_the_cap_once(gate: Gate) -> None:
    ran: list[str] = []

    async def main() -> list[str]:
        with gate.trace("Pay acme-supplies", bounds={"spend_cap": 600}):
            # tasks (and the threads to_thread runs them on) inherit the trace's context
            return await asyncio.gather(
                *(asyncio.to_thread(attempt, gate, payment(490.0), ran) for _ in range(8))
            )

    outcomes = asyncio.run(main())
    assert sorted(outcomes) == ["allowed"] + ["denied"] * 7
    assert len(ran) == 1


def test_async_governed_tool_in_tasks_keeps_its_trace(gate: Gate) -> None:
    @gate.governed("pay_invoice")
    async def pay_invoice(to: str, amount: float, currency: str) -> str:
        await asyncio.sleep(0)
        return "paid"

    async def main() -> list[object]:
        with gate.trace("Pay acme-supplies", bounds={"spend_cap": 600}):
            return await asyncio.gather(
                *(pay_invoice("acme-supplies", 250.0, "EUR") for _ in range(4)),
                return_exceptions=True,
            )

    outcomes = asyncio.run(main())
    assert outcomes.count("paid") == 2
    assert all(isinstance(o, Denied) for o in outcomes if o != "paid")
    trace_ids = {d["trace_id"] for d in decisions(gate)}
    assert len(trace_ids) == 1


# --- A2: ways out of a trace --------------------------------------------------------------


def test_thread_pool_without_carry_gets_the_narrow_default_not_a_fresh_cap(gate: Gate) -> None:
    ran: list[str] = []
    with (
        gate.trace("Pay acme-supplies", bounds={"spend_cap": 600}) as trace,
        ThreadPoolExecutor(max_workers=1) as pool,
    ):
        escaped = pool.submit(attempt, gate, payment(490.0), ran).result()
        carried = pool.submit(carry(attempt), gate, payment(490.0), ran).result()
        bound = pool.submit(trace.bind(attempt), gate, payment(90.0), ran).result()
    assert (escaped, carried, bound) == ("denied", "allowed", "allowed")
    assert ran == ["body", "body"]
    escaped_entry, carried_entry, bound_entry = decisions(gate)
    assert escaped_entry["trace_id"] != trace.trace_id
    assert escaped_entry["facts"]["mandate"] == {"text": "", "bounds": {}}
    assert [r["rule"] for r in escaped_entry["reasons"]] == ["payments-need-a-spend-cap"]
    assert carried_entry["trace_id"] == bound_entry["trace_id"] == trace.trace_id
    assert bound_entry["facts"]["totals"] == {"pay_invoice": {"amount": 490}}


def test_made_up_trace_id_outside_any_trace_is_refused(gate: Gate) -> None:
    ran: list[str] = []
    with pytest.raises(BindingError, match="only trusted code opens traces"):
        attempt(gate, payment(10.0, trace_id="t0123456789abcdef01234567"), ran)
    assert ran == []
    assert decisions(gate) == []


def test_existing_trace_id_outside_its_block_is_refused(gate: Gate) -> None:
    ran: list[str] = []
    with gate.trace("Pay acme-supplies and bob-ltd", bounds={"spend_cap": 600}) as trace:
        attempt(gate, read(), ran)
    with pytest.raises(BindingError, match="runs in no open trace"):
        attempt(gate, payment(90.0, to="bob-ltd", trace_id=trace.trace_id), ran)
    assert ran == ["body"]


def test_nested_intent_naming_another_trace_is_refused(gate: Gate) -> None:
    ran: list[str] = []
    with gate.trace("Pay acme-supplies", bounds={"spend_cap": 600}) as other:
        pass
    with gate.clearance(read()) as outer:  # no trace open: an implicit single-call trace
        with pytest.raises(BindingError, match="intent names trace"):
            attempt(gate, read("b.md", trace_id=other.trace_id), ran)
        # naming the running trace itself is fine
        own = outer.authorization.intent.trace_id
        assert attempt(gate, read("c.md", trace_id=own), ran) == "allowed"
    assert ran == ["body"]


def test_trace_handle_of_another_gate_is_refused(home: Home, clock: FixedClock) -> None:
    ran: list[str] = []
    with (
        open_gate(home.path, principal=PRINCIPAL, clock=clock, durability="relaxed") as first,
        first.trace("Read the notes") as trace,
    ):
        second = open_gate(home.path, principal=PRINCIPAL, clock=clock, durability="relaxed")
        try:
            with pytest.raises(BindingError, match="opened by another gate"):
                attempt(second, read(), ran)
            with pytest.raises(BindingError, match="opened by another gate"):
                second.authorize(read(), trace=trace)
        finally:
            second.close()
    assert ran == []


def test_explicit_handle_decides_under_its_trace_outside_any_context(gate: Gate) -> None:
    ran: list[str] = []
    handle = gate.open_trace("Pay acme-supplies", bounds={"spend_cap": 600})
    with gate.clearance(payment(400.0), trace=handle):
        ran.append("paid")
    with pytest.raises(Denied), gate.clearance(payment(400.0), trace=handle):
        ran.append("paid twice")
    assert ran == ["paid"]
    assert {d["trace_id"] for d in decisions(gate)} == {handle.trace_id}


def test_require_trace_refuses_calls_with_no_trace_open(home: Home, clock: FixedClock) -> None:
    settings = home.path / "clearance.yaml"
    settings.write_text(settings.read_text() + "require_trace: true\n")
    ran: list[str] = []
    with open_gate(home.path, principal=PRINCIPAL, clock=clock, durability="relaxed") as gate:
        with pytest.raises(BindingError, match="requires one"):
            attempt(gate, read(), ran)
        with gate.trace("Read the notes"):
            assert attempt(gate, read(), ran) == "allowed"
    assert ran == ["body"]


def test_default_mandate_from_settings_applies_with_no_trace(home: Home, clock: FixedClock) -> None:
    settings = home.path / "clearance.yaml"
    settings.write_text(
        settings.read_text()
        + "default_mandate:\n  text: pay acme-supplies\n  bounds: {spend_cap: 100}\n"
    )
    ran: list[str] = []
    with open_gate(home.path, principal=PRINCIPAL, clock=clock, durability="relaxed") as gate:
        assert attempt(gate, payment(90.0), ran) == "allowed"
        assert attempt(gate, payment(190.0), ran) == "denied"
        first, second = decisions(gate)
    assert first["facts"]["mandate"] == {"text": "pay acme-supplies", "bounds": {"spend_cap": 100}}
    assert [r["rule"] for r in second["reasons"]] == ["payments-within-spend-cap"]


def test_no_mandate_is_never_wider_than_a_mandate(gate: Gate) -> None:
    ran: list[str] = []
    # the same payment: refused with no trace (no cap granted), allowed under a cap
    assert attempt(gate, payment(100.0), ran) == "denied"
    with gate.trace("Pay acme-supplies", bounds={"spend_cap": 600}):
        assert attempt(gate, payment(100.0), ran) == "allowed"
    assert ran == ["body"]


# --- A3: constant time and size -----------------------------------------------------------


def test_decision_entry_size_does_not_grow_with_trace_length(gate: Gate) -> None:
    sizes: dict[int, int] = {}
    with gate.trace("Summarize the reports"):
        for n in range(1, 401):
            with gate.clearance(read(f"r{n % 7}.md")) as cleared:
                pass
            if n in (10, 400):
                stored = gate.ledger.get(cleared.authorization.decision_index)
                sizes[n] = len(stored.leaf)
                facts = stored.entry["facts"]
                assert facts["count"] == n - 1
                assert facts["actions"] == ["read_file"]
    # the only growth is the digits of `count`
    assert sizes[400] - sizes[10] <= 2


def test_facts_survive_a_reopen_from_the_last_decision_alone(home: Home, clock: FixedClock) -> None:
    with open_gate(home.path, principal=PRINCIPAL, clock=clock, durability="relaxed") as gate:
        trace = gate.open_trace("Pay acme-supplies", bounds={"spend_cap": 600})
        with gate.clearance(payment(250.5), trace=trace):
            pass
        with gate.clearance(read(), trace=trace):
            pass
    # a new gate (cold cache) rebuilds the state from the trace's last decision entry;
    # the old handle is not valid there, trusted code resumes the trace by id
    with open_gate(home.path, principal=PRINCIPAL, clock=clock, durability="relaxed") as gate:
        with pytest.raises(BindingError, match="opened by another gate"):
            gate.evaluate(payment(1.0), trace=trace)
        handle = gate.resume_trace(trace.trace_id)
        assert handle.mandate == {"text": "Pay acme-supplies", "bounds": {"spend_cap": 600}}
        _, decision, facts = gate.evaluate(payment(350.0), trace=handle)
        with pytest.raises(BindingError, match="no trace"):
            gate.resume_trace("t0123456789abcdef01234567")
    assert facts["count"] == 2
    assert facts["totals"] == {"pay_invoice": {"amount": 250.5}}
    assert decision.effect == "deny"  # 250.5 + 350 > 600


def test_every_decision_replays_exactly(gate: Gate) -> None:
    with gate.trace("Pay acme-supplies in instalments", bounds={"spend_cap": 300.0}):
        for amount in (100.0, 100.5, 99.5, 1.0):
            try:
                with gate.clearance(payment(amount)):
                    pass
            except Denied:
                pass
    results = [gate.replay(d["request_id"]) for d in decisions(gate)]
    assert [r.status for r in results] == ["match"] * 4
    assert [d["effect"] for d in decisions(gate)] == ["allow", "allow", "allow", "deny"]


# --- A4: lineage and identity come from the running request and the gate ---------------------


def test_made_up_parent_is_refused_and_depth_comes_from_the_running_call(gate: Gate) -> None:
    ran: list[str] = []
    with gate.trace("Read the notes"), gate.clearance(read("outer.md")) as outer:
        with gate.clearance(read("inner.md")) as inner:
            ran.append("inner")
        with pytest.raises(BindingError, match="parent comes from the running"):
            attempt(gate, read("x.md", parent_id="r0123456789abcdef01234567"), ran)
    assert ran == ["inner"]
    outer_entry, inner_entry = decisions(gate)
    assert inner_entry["parent_id"] == outer.request_id
    assert inner_entry["parent_index"] == outer.authorization.decision_index
    assert (outer_entry["facts"]["depth"], inner_entry["facts"]["depth"]) == (0, 1)
    assert inner.authorization.intent.parent_id == outer.request_id


def test_intent_naming_another_principal_is_refused(gate: Gate) -> None:
    ran: list[str] = []
    with pytest.raises(BindingError, match="bound to 'agent:ops-bot'"):
        attempt(gate, {**read(), "principal": "agent:ceo"}, ran)
    assert ran == []
    assert decisions(gate) == []


def test_intent_without_principal_takes_the_bound_one(gate: Gate) -> None:
    with (
        gate.trace("Read the notes"),
        gate.clearance({"action": "read_file", "args": {"path": "a"}}),
    ):
        pass
    assert decisions(gate)[0]["intent"]["principal"] == PRINCIPAL


def test_gate_bound_to_no_principal_refuses_and_multi_principal_accepts(
    home: Home, clock: FixedClock
) -> None:
    ran: list[str] = []
    with (
        open_gate(home.path, clock=clock, durability="relaxed") as unbound,
        pytest.raises(BindingError, match="bound to no principal"),
    ):
        attempt(unbound, read(), ran)
    with open_gate(home.path, multi_principal=True, clock=clock, durability="relaxed") as service:
        assert attempt(service, {**read(), "principal": "agent:other"}, ran) == "allowed"
        assert attempt(service, read(), ran) == "allowed"
        principals = [d["intent"]["principal"] for d in decisions(service)]
        assert principals == ["agent:other", PRINCIPAL]
        attrs = [d["principal_attrs"] for d in decisions(service)]
        assert attrs[0] == {}  # the registry's attributes belong to the principal named
        assert attrs[1]["team"] == "finance"
    assert ran == ["body", "body"]


# --- B8: the running gate does not decide on bytes edited under it ------------------------------


def test_editing_the_stored_mandate_under_a_running_gate_changes_nothing(
    home: Home, clock: FixedClock
) -> None:
    ran: list[str] = []
    with (
        open_gate(home.path, principal=PRINCIPAL, clock=clock, durability="relaxed") as gate,
        gate.trace("Pay acme-supplies", bounds={"spend_cap": 300}),
    ):
        assert attempt(gate, payment(200.0), ran) == "allowed"
        db = sqlite3.connect(home.ledger_path)
        db.execute("DROP TRIGGER entries_no_update")
        db.execute(
            "UPDATE entries SET leaf = CAST(replace(CAST(leaf AS TEXT), "
            "'\"spend_cap\":300', '\"spend_cap\":9000') AS BLOB) "
            "WHERE type IN ('trace', 'decision')"
        )
        db.commit()
        db.close()
        assert attempt(gate, payment(200.0), ran) == "denied"
    assert ran == ["body"]


def test_an_edited_last_decision_is_not_read_into_facts(home: Home, clock: FixedClock) -> None:
    ran: list[str] = []
    with open_gate(home.path, principal=PRINCIPAL, clock=clock, durability="relaxed") as gate:
        trace = gate.open_trace("Pay acme-supplies", bounds={"spend_cap": 300})
        assert attempt(gate, {**payment(250.0)}, ran) == "denied"  # no trace: no cap
        with gate.clearance(payment(250.0), trace=trace):
            ran.append("paid")
        db = sqlite3.connect(home.ledger_path)
        db.execute("DROP TRIGGER entries_no_update")
        db.execute(
            "UPDATE entries SET leaf = CAST(replace(CAST(leaf AS TEXT), "
            '\'"effect":"allow"\', \'"effect":"deny"\') AS BLOB) WHERE type = \'decision\''
        )
        db.commit()
        db.close()
        # As after eviction: the next call reads the ledger.
        states_for(gate.ledger).forget(trace.trace_id)
        with pytest.raises(Denied) as refused, gate.clearance(payment(40.0), trace=trace):
            ran.append("paid again")
    assert refused.value.reasons == ["ledger-unavailable"]
    assert ran == ["paid"]
