"""open_gate: the home's limits reach every part, and a failure half-way leaks nothing."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from clearance._internal.entries import timestamp
from clearance._internal.grants.token import peek_claims
from clearance._internal.home import SETTINGS_FILE, Home
from clearance._internal.ledger.sqlite import SQLiteLedger
from clearance._internal.limits import Limits
from clearance._internal.policy.reload import PolicyHolder
from clearance._internal.wiring import open_gate, open_ledger
from clearance.errors import ApprovalRequired, InputError, InvalidGrant, LedgerError

from .conftest import FixedClock

PRINCIPAL = "agent:ops-bot"
CAP = {"spend_cap": 10_000}


def _configure(home: Home, **changes: Any) -> None:
    path = home.path / SETTINGS_FILE
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw.update(changes)
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")


def _pay(amount: float) -> dict[str, Any]:
    return {
        "action": "pay_invoice",
        "args": {"to": "acme-supplies", "amount": amount, "currency": "EUR"},
    }


def test_the_homes_limits_reach_the_gate_the_ledger_and_the_policy(
    home: Home, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    _configure(
        home,
        grant_lifetime=20,
        limits={
            "approval_ttl": 900,
            "mandate_text": 40,
            "leeway": 1,
            "checkpoint_interval": 0.5,
            "policy_reload": 7,
        },
    )
    seen: dict[str, Any] = {}
    ledger_open, holder_load = SQLiteLedger.open, PolicyHolder.load

    def spy_ledger(path: Path, **options: Any) -> SQLiteLedger:
        seen["checkpoint_interval"] = options["checkpoint_interval"]
        return ledger_open(path, **options)

    def spy_holder(path: Path, **options: Any) -> PolicyHolder:
        seen["interval"] = options["interval"]
        return holder_load(path, **options)

    # Called on the class, a plain function needs no classmethod wrapper.
    monkeypatch.setattr(SQLiteLedger, "open", spy_ledger)
    monkeypatch.setattr(PolicyHolder, "load", spy_holder)
    with open_gate(home.path, principal=PRINCIPAL, clock=clock, durability="relaxed") as gate:
        assert seen == {"checkpoint_interval": 0.5, "interval": 7}
        assert gate.limits == Limits(
            grant_lifetime=20,
            approval_ttl=900,
            mandate_text=40,
            leeway=1,
            checkpoint_interval=0.5,
            policy_reload=7,
        )
        with pytest.raises(InputError, match="at most 40 characters"):
            gate.open_trace("x" * 41)
        trace = gate.open_trace("Pay acme-supplies", bounds=CAP)
        with pytest.raises(ApprovalRequired):
            gate.authorize(_pay(900.0), trace=trace)
        (approval,) = [e.entry for e in gate.ledger.scan() if e.entry["type"] == "approval"]
        assert approval["expires_at"] == timestamp(clock() + 900)
        granted = gate.authorize(_pay(10.0), trace=trace)
        claims = peek_claims(granted.grant)
        assert claims is not None
        assert claims["exp"] - claims["nbf"] == 20
        # One second of leeway, not five: two seconds past exp is refused.
        clock.advance(22)
        with pytest.raises(InvalidGrant):
            gate.verify(granted.grant, granted.intent)


# --- nothing leaks when open_gate fails half-way ----------------------------------------------


def _open_in(home: Home) -> list[str]:
    """Files under the home this process holds open (the ledger, its WAL, the replay store)."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(str(home.path)):
                held.append(target)
    return held


def _tickers() -> int:
    return sum(t.name == "clearance-checkpoints" for t in threading.enumerate())


def _assert_nothing_left_open(home: Home, tickers_before: int, clock: FixedClock) -> None:
    assert _open_in(home) == []
    assert _tickers() == tickers_before
    # The ledger file is free again: this process opens, appends to and closes it.
    with open_ledger(home, durability="relaxed", clock=clock) as ledger:
        ledger.append({"type": "trace", "v": 1, "at": timestamp(clock()), "trace_id": "t1"})


def test_a_replay_store_that_fails_to_open_leaves_the_ledger_closed(
    home: Home, clock: FixedClock
) -> None:
    home.replay_path.mkdir()  # SQLite cannot open a directory
    tickers = _tickers()
    with pytest.raises(LedgerError):
        open_gate(home.path, principal=PRINCIPAL, clock=clock, durability="relaxed")
    _assert_nothing_left_open(home, tickers, clock)


def test_a_gate_that_cannot_be_built_leaves_ledger_and_replay_store_closed(
    home: Home, clock: FixedClock
) -> None:
    tickers = _tickers()
    with pytest.raises(InputError, match="either for one principal or as multi_principal"):
        open_gate(
            home.path, principal=PRINCIPAL, multi_principal=True, clock=clock, durability="relaxed"
        )
    _assert_nothing_left_open(home, tickers, clock)
    assert home.replay_path.exists()  # it was opened, and closed again
