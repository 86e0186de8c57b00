"""Open a gate over a home directory: the embedded (SQLite) wiring.

This is the outermost layer: it reads the clock default and the environment.
Everything it wires is documented in :mod:`clearance.home`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from clearance.errors import Error, PolicyError
from clearance.home import Durability, Home, find_home
from clearance.ledger.checkpoint import NoteSigner
from clearance.ledger.sqlite import SQLiteLedger

if TYPE_CHECKING:
    from clearance.gate import Gate


def open_ledger(home: Home, *, durability: Durability | None = None) -> SQLiteLedger:
    """Open the home's ledger with its checkpoint signer."""
    signer = NoteSigner.from_skey(home.read_log_skey())
    return SQLiteLedger.open(
        home.ledger_path,
        signer=signer,
        origin=home.settings.origin,
        durability=durability or home.settings.durability,
    )


def open_gate(
    home: str | Path | None = None,
    *,
    principal: str | None = None,
    durability: Durability | None = None,
    clock: Callable[[], float] = time.time,
    executor: str = "in-process",
) -> Gate:
    """Open a :class:`Gate` over ``home`` (see :func:`clearance.home.find_home`).

    Fails closed: a policy bundle that does not load refuses to start
    (PolicyError); a missing grant key leaves a gate that denies every action
    (fail-closed rule 5) rather than failing to open.
    """
    # Imported here so that ledger-only callers (the `clearance log` commands) do not
    # pay for loading the policy engine.
    from clearance.gate import Gate
    from clearance.keys import GrantKeyRing
    from clearance.policy.reload import PolicyHolder
    from clearance.replay import SQLiteReplayGuard
    from clearance.spool import Spool

    located = Home.load(find_home(home))
    mode = durability or located.settings.durability
    try:
        policy = PolicyHolder.load(located.policy_dir)
    except PolicyError as exc:
        raise PolicyError(f"refusing to start: {exc}") from None
    keyring: GrantKeyRing | None
    try:
        keyring = GrantKeyRing.load(located.grant_key_dir)
    except Error:
        keyring = None
    ledger = open_ledger(located, durability=mode)
    try:
        replay_guard = SQLiteReplayGuard.open(located.replay_path, durability=mode)
    except Exception:
        ledger.close()
        raise
    return Gate(
        policy=policy,
        ledger=ledger,
        keyring=keyring,
        replay_guard=replay_guard,
        issuer=located.settings.issuer,
        audience=located.settings.audience,
        spool=Spool(located.spool_dir),
        clock=clock,
        grant_lifetime=located.settings.grant_lifetime,
        executor=executor,
        default_principal=principal,
    )
