"""Everything one running server holds: the gate, the key store and the desks around them.

Invariants:

* One :class:`ServerState` per app, built when the app starts
  (:func:`open_state`) and closed when it stops (:meth:`ServerState.close`): the serve
  lock is taken first and released last, the gate is opened with
  ``multi_principal=True`` (the principal of every intent is the API key's, bound by the
  routes), and nothing stays open when opening fails half-way.
* Nothing here serializes requests: the gate, the key store, the rate limiter and the
  desks are each thread-safe, and concurrent authorizations share ledger commits.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from starlette.requests import HTTPConnection

from clearance._internal.apikeys import ApiKeyStore
from clearance._internal.gate.core import Gate
from clearance._internal.gate.key_trust import GateKeys
from clearance._internal.grants.keys import GrantKeyRing
from clearance._internal.home import Home, find_home
from clearance._internal.sealing import JWKS_PURPOSE, derive_key
from clearance._internal.server.bundles import BundleDesk
from clearance._internal.server.errors import ApiError
from clearance._internal.server.limits import RateLimiter
from clearance._internal.server.lock import ServeLock
from clearance._internal.server.metrics import Probes, ServerMetrics
from clearance._internal.server.reports import ReportDesk
from clearance._internal.server.traces import TraceBook
from clearance.errors import Error

log = logging.getLogger("clearance.server")


@dataclass
class ServerState:
    """The parts of one running server (see the module docstring)."""

    home: Home
    gate: Gate
    keys: ApiKeyStore
    grant_keys: GateKeys
    ring: GrantKeyRing | None
    limiter: RateLimiter
    metrics: ServerMetrics
    traces: TraceBook
    reports: ReportDesk
    bundles: BundleDesk
    clock: Callable[[], float]
    lock: ServeLock
    closers: list[Callable[[], None]] = field(default_factory=list)
    closed: bool = False

    def close(self) -> None:
        """Close the key store and the gate (flushing its last checkpoint), then unlock.

        Idempotent: only the first call closes anything.
        """
        if self.closed:
            return
        self.closed = True
        try:
            for close in reversed(self.closers):
                try:
                    close()
                except Exception:
                    log.exception("error while closing the server")
        finally:
            self.lock.release()


def server_state(connection: HTTPConnection) -> ServerState:
    """The state of the app serving ``connection``; 503 while it starts or stops."""
    state = getattr(connection.app.state, "clearance", None)
    if not isinstance(state, ServerState):
        raise ApiError("unavailable", "the gateway is starting or stopping; retry shortly")
    return state


def _spool_depth(directory: Path) -> int:
    try:
        return sum(1 for p in directory.iterdir() if p.name.startswith("o-"))
    except FileNotFoundError:
        return 0


def _pending_count(gate: Gate) -> int:
    """How many approvals are pending (read a page of 1000 at a time)."""
    count, after = 0, None
    while True:
        page = gate.approvals("pending", limit=1000, after=after)
        count += len(page)
        if len(page) < 1000:
            return count
        after = page[-1].approval_id


def _checkpoint_age(anchor: Path, clock: Callable[[], float]) -> float | None:
    try:
        return max(0.0, clock() - anchor.stat().st_mtime)
    except FileNotFoundError:
        return None


def open_state(
    home_path: Path | str | None, *, clock: Callable[[], float] = time.time
) -> ServerState:
    """Open everything a server needs over the home at ``home_path`` (see the module docstring).

    Conflict when another server holds the home; the gate's own errors (a bundle that
    does not load, a ledger that does not extend its checkpoint) otherwise.
    """
    from clearance._internal.wiring import open_api_keys, open_gate

    home = Home.load(find_home(home_path))
    lock = ServeLock.acquire(home.path)
    closers: list[Callable[[], None]] = []
    try:
        gate = open_gate(home.path, multi_principal=True, clock=clock, executor="gateway")
        closers.append(gate.close)
        keys = open_api_keys(home, ledger=gate.ledger, clock=clock)
        closers.append(keys.close)
        ring: GrantKeyRing | None
        try:
            secret = home.read_log_skey()
            ring = GrantKeyRing.load(home.grant_key_dir, seal_key=derive_key(secret, JWKS_PURPOSE))
        except Error as exc:
            log.error("grant key ring refused: %s; no grant verifies here", exc)
            ring = None
        limits = home.settings.limits
        server = home.settings.server
        grant_keys = GateKeys(ring, gate.ledger, refresh_interval=limits.key_refresh)
        anchor = home.anchor_dir / "latest"
        metrics = ServerMetrics(
            Probes(
                ledger_size=gate.ledger.size,
                checkpoint_age=lambda: _checkpoint_age(anchor, clock),
                spool_depth=lambda: _spool_depth(home.spool_dir),
                approvals_pending=lambda: _pending_count(gate),
            )
        )
        reports = ReportDesk(
            ledger=gate.ledger,
            keys=grant_keys,
            issuer=gate.issuer,
            audience=gate.audience,
            leeway=limits.leeway,
            window=server.report_window,
            clock=clock,
            on_rejected=metrics.rejected_grants.inc,
        )
        return ServerState(
            home=home,
            gate=gate,
            keys=keys,
            grant_keys=grant_keys,
            ring=ring,
            limiter=RateLimiter(server.rate_per_second, server.rate_burst),
            metrics=metrics,
            traces=TraceBook(gate),
            reports=reports,
            bundles=BundleDesk(gate, home.path, home.policy_dir, clock),
            clock=clock,
            lock=lock,
            closers=closers,
        )
    except BaseException:
        for close in reversed(closers):
            with contextlib.suppress(Exception):
                close()
        lock.release()
        raise
