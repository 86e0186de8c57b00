"""Open a gate over a home directory: its ledger, replay store and API keys.

This is the outermost layer: it reads the clock default and the environment.
Everything it wires is documented in :mod:`clearance._internal.home`. The stores are
the embedded SQLite files of the home, or, when the home's database
(:attr:`~clearance._internal.home.Home.database`: ``--database``,
``$CLEARANCE_DATABASE`` or ``database:``) is a ``postgresql://`` URL, the PostgreSQL
stores, which many processes share. Keys, policies, the spool and the checkpoint
anchor stay in the home either way.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from clearance._internal.home import Home, find_home
from clearance._internal.ledger.checkpoint import NoteSigner
from clearance._internal.ledger.sqlite import SQLiteLedger
from clearance._internal.limits import Durability
from clearance.errors import Error, PolicyError

if TYPE_CHECKING:
    from clearance._internal.apikeys import ApiKeyStore
    from clearance._internal.gate.core import Gate
    from clearance._internal.grants.jti_store import ReplayGuard
    from clearance._internal.ledger.store import LedgerStore


def open_ledger(
    home: Home,
    *,
    durability: Durability | None = None,
    clock: Callable[[], float] = time.time,
) -> LedgerStore:
    """Open the home's ledger (SQLite, or the home's PostgreSQL database) with its
    checkpoint signer, anchor and witnesses.

    The ledger must extend the checkpoint anchored in ``HOME/checkpoints/latest`` and
    in every ``witness_dirs`` directory, and its unsigned entries must be younger than
    ``checkpoint_grace`` seconds by ``clock`` (fail-closed rule 12; see
    :mod:`clearance._internal.ledger.anchor`): TamperError otherwise. Checkpoints are
    signed every ``limits.checkpoint_interval`` seconds under load.
    """
    from clearance._internal.ledger.anchor import CheckpointAnchor

    signer = NoteSigner.from_skey(home.read_log_skey())
    mode = durability or home.settings.durability
    anchor = CheckpointAnchor.for_home(
        home.anchor_dir,
        home.witness_dirs,
        origin=home.settings.origin,
        sync=mode == "durable",  # relaxed: no fsync, as for the ledger itself
    )
    database = home.database
    opener: Callable[..., LedgerStore]
    if database is not None:
        from clearance._internal.ledger.postgres import PostgresLedger

        opener = functools.partial(PostgresLedger.open, database)
    else:
        opener = functools.partial(SQLiteLedger.open, home.ledger_path)
    return opener(
        signer=signer,
        origin=home.settings.origin,
        durability=mode,
        anchor=anchor,
        checkpoint_interval=home.settings.limits.checkpoint_interval,
        grace=home.settings.checkpoint_grace,
        clock=clock,
    )


def open_replay_guard(home: Home, *, durability: Durability | None = None) -> ReplayGuard:
    """The home's store of consumed grant ids (SQLite file, or the PostgreSQL database)."""
    from clearance._internal.grants.jti_store import SQLiteReplayGuard

    mode = durability or home.settings.durability
    database = home.database
    if database is not None:
        from clearance._internal.grants.jti_store_pg import PostgresReplayGuard

        return PostgresReplayGuard.open(database, durability=mode)
    return SQLiteReplayGuard.open(home.replay_path, durability=mode)


def open_api_keys(
    home: Home, *, ledger: LedgerStore | None = None, clock: Callable[[], float] = time.time
) -> ApiKeyStore:
    """The home's API key store (``HOME/apikeys.db``, or the PostgreSQL database);
    creations and revocations are logged to ``ledger`` when given."""
    from clearance._internal.apikeys import ApiKeyStore, api_keys_path

    location = home.database or api_keys_path(home.path)
    return ApiKeyStore.open(location, ledger=ledger, clock=clock)


def open_gate(
    home: str | os.PathLike[str] | None = None,
    *,
    principal: str | None = None,
    multi_principal: bool = False,
    durability: Durability | None = None,
    clock: Callable[[], float] = time.time,
    executor: str = "in-process",
) -> Gate:
    """Open a :class:`Gate` over ``home`` (see :func:`clearance._internal.home.find_home`).

    ``principal`` binds the gate: intents must name it (or omit it). A trusted
    service that authenticates its callers itself opens the gate with
    ``multi_principal=True`` instead; a gate with neither refuses every intent.

    Fails closed: a policy bundle that does not load refuses to start
    (PolicyError); a ledger that does not extend its anchored checkpoint refuses
    to open (TamperError); a missing or unauthenticated grant key ring leaves a
    gate that denies every action (fail-closed rule 5) rather than failing to open.
    Nothing it opened stays open when it fails half-way: the replay store, then the
    ledger, are closed again before the error propagates.
    The home's ``limits`` bound the gate, its ledger and its policy reloads.
    """
    # Imported here so that ledger-only callers (the `clearance log` commands) do not
    # pay for loading the policy engine.
    from clearance._internal.approvals.webhook import webhook_for
    from clearance._internal.gate.core import Gate
    from clearance._internal.gate.spool import Spool
    from clearance._internal.grants.keys import GrantKeyRing
    from clearance._internal.policy.reload import PolicyHolder
    from clearance._internal.sealing import (
        JWKS_PURPOSE,
        PROVENANCE_PURPOSE,
        SPOOL_PURPOSE,
        derive_key,
    )

    located = Home.load(find_home(home))
    settings = located.settings
    mode = durability or settings.durability
    try:
        policy = PolicyHolder.load(located.policy_dir, interval=settings.limits.policy_reload)
    except PolicyError as exc:
        raise PolicyError(f"refusing to start: {exc}") from None
    secret = located.read_log_skey()
    webhook = webhook_for(settings.approvals, located.path)  # a bad secret refuses to start
    keyring: GrantKeyRing | None
    try:
        keyring = GrantKeyRing.load(
            located.grant_key_dir, seal_key=derive_key(secret, JWKS_PURPOSE)
        )
    except Error as exc:
        logging.getLogger("clearance.gate").error("grant key ring refused: %s", exc)
        keyring = None
    with contextlib.ExitStack() as stack:
        ledger = stack.enter_context(open_ledger(located, durability=mode, clock=clock))
        replay_guard = stack.enter_context(
            contextlib.closing(open_replay_guard(located, durability=mode))
        )
        gate = Gate(
            policy=policy,
            ledger=ledger,
            keyring=keyring,
            replay_guard=replay_guard,
            issuer=settings.issuer,
            audience=settings.audience,
            spool=Spool(located.spool_dir, derive_key(secret, SPOOL_PURPOSE)),
            clock=clock,
            executor=executor,
            principal=principal,
            multi_principal=multi_principal,
            default_mandate=settings.default_mandate,
            require_trace=settings.require_trace,
            limits=settings.limits,
            provenance_key=derive_key(secret, PROVENANCE_PURPOSE),
            approval_webhook=webhook,
        )
        stack.pop_all()  # the gate owns them now: Gate.close closes both
    return gate
