"""Fixtures for gate tests: real homes on disk, real keys, a fixed clock."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from clearance._internal.gate.core import Gate
from clearance._internal.home import Home, init_home
from clearance._internal.wiring import open_gate
from clearance.errors import LedgerError
from tests.integration.conftest import mounted_tmpfs

T0 = 1_795_000_000.0  # a fixed instant in 2026


class FixedClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def home(tmp_path: Path, clock: FixedClock) -> Home:
    return init_home(tmp_path / "home", now=clock())


@pytest.fixture
def gate(home: Home, clock: FixedClock) -> Iterator[Gate]:
    opened = open_gate(home.path, principal="agent:ops-bot", clock=clock, durability="relaxed")
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A small real tmpfs mount, so tests can fill it or make it read-only."""
    with mounted_tmpfs(tmp_path / "mnt", "8m") as mount:
        yield mount


def assemble_gate(
    home_path: Path,
    clock: FixedClock,
    *,
    policy: Any = "home",
    replay_path: Path | None = None,
    spool_dir: Path | None = None,
    spool: Any = None,
    wrap_ledger: Callable[[Any], Any] | None = None,
    principal: str = "agent:ops-bot",
    provenance_key: bytes | None = None,
) -> Gate:
    """A Gate wired by hand from a home's parts, for tests that replace one part.

    ``policy="home"`` loads the home's bundle; anything else is used as the policy
    source (``None`` means no bundle). The replay store and the spool may live
    outside the home (e.g. off a tmpfs the test fills or remounts); ``spool`` is a
    spool object to use instead (a test double). ``wrap_ledger`` wraps the home's
    ledger before the gate sees it (a ledger that fails some appends); the gate's
    ``ledger`` is then the wrapper, and closing the gate closes it. ``provenance_key``
    is None unless given (``open_gate`` derives one from the home).
    """
    from clearance._internal.gate.spool import Spool
    from clearance._internal.grants.jti_store import SQLiteReplayGuard
    from clearance._internal.grants.keys import GrantKeyRing
    from clearance._internal.policy.reload import PolicyHolder
    from clearance._internal.sealing import SPOOL_PURPOSE, derive_key
    from clearance._internal.wiring import open_ledger

    home = Home.load(home_path)
    spool_key = derive_key(home.read_log_skey(), SPOOL_PURPOSE)
    ledger = open_ledger(home)
    if spool is None and spool_dir is not None:
        spool = Spool(spool_dir, spool_key)
    return Gate(
        policy=PolicyHolder.load(home.policy_dir) if policy == "home" else policy,
        ledger=wrap_ledger(ledger) if wrap_ledger is not None else ledger,
        keyring=GrantKeyRing.load(home.grant_key_dir),
        replay_guard=SQLiteReplayGuard.open(replay_path or home.replay_path),
        issuer="test",
        audience="local",
        spool=spool,
        clock=clock,
        principal=principal,
        provenance_key=provenance_key,
    )


def remount(mount: Path, mode: str) -> None:
    """Remount a tmpfs ``ro`` or ``rw``."""
    subprocess.run(["mount", "-o", f"remount,{mode}", str(mount)], check=True)


class FailsExecutions:
    """A ledger that takes every entry but execution outcomes, which fail as on a full disk."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def append(self, entry: Any, *, sync: bool = True) -> int:
        if entry.get("type") == "execution":
            raise LedgerError("disk full (simulated by the test)")
        return int(self._inner.append(entry, sync=sync))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
