"""The FastAPI application of ``clearance serve`` (docs/http-api.md is its contract).

Invariants:

* :func:`create_app` reads the home's settings at once (a missing or invalid home fails
  here, before a socket is bound); the gate, the key store and the serve lock are opened
  when the app starts (its lifespan) and closed when it stops, so the gate's last
  checkpoint is signed on a clean shutdown.
* Requests pass, outermost first: the request timer (metrics), the body limit (413
  before anything parses), FastAPI's routing with strict JSON bodies, the per-route
  authentication, rate limit and scope check, then the route. Every error leaves as the
  contract's JSON error (:mod:`.errors`).
* One background task expires pending approvals every ``server.sweep_interval``
  seconds (each expiry is a ledger entry). It only ever moves approvals towards
  *denied*; a failed pass is logged and retried at the next interval.
* Route functions are synchronous: FastAPI runs them in its thread pool, where the
  gate's group commit lets concurrent decisions share one ledger commit. Nothing here
  serializes requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import anyio.to_thread
from fastapi import FastAPI

from clearance._internal import console
from clearance._internal.home import Home, find_home
from clearance._internal.server.errors import install_error_handlers
from clearance._internal.server.hot import PATH as LEAN_PATH
from clearance._internal.server.hot import LeanAuthorize
from clearance._internal.server.limits import BodyLimit
from clearance._internal.server.metrics import RequestTimer, ServerMetrics
from clearance._internal.server.routes import (
    approvals,
    authorize,
    executions,
    health,
    log,
    policies,
    requests,
    traces,
)
from clearance._internal.server.state import ServerState, open_state

logger = logging.getLogger("clearance.server")

DESCRIPTION = """\
Pre-execution authorization for AI agents, over HTTP.

Agents **authorize** an intent (`POST /v1/authorize`) and get a short-lived, single-use
grant bound to its digest, or a denial, or a pending human approval. Every decision is
in an append-only Merkle log (RFC 9162) *before* any grant exists; tool services verify
grants offline against `/.well-known/jwks.json` and **report outcomes**
(`POST /v1/executions`); auditors read **requests, receipts and proofs**.

Every endpoint except health, metrics, the JWKS and the log's checkpoint, vkey and
proofs needs `Authorization: Bearer <api key>` (`clearance api-keys create`). Errors are
always `{"error": {"code", "message"}}`. The contract is docs/http-api.md.
"""


def _version() -> str:
    try:
        return version("clearance")
    except PackageNotFoundError:
        return "0"


async def _sweep(state: ServerState, interval: float) -> None:
    """Expire pending approvals every ``interval`` seconds until cancelled."""
    while True:
        await asyncio.sleep(interval)
        try:
            expired = await anyio.to_thread.run_sync(state.gate.expire_approvals)
        except Exception:
            logger.exception("expiring approvals failed; retrying in %.1f s", interval)
            continue
        if expired:
            logger.info("expired %d pending approvals", expired)


def create_app(
    home: str | Path | None = None,
    *,
    clock: Callable[[], float] = time.time,
    opened: ServerState | None = None,
) -> FastAPI:
    """The runtime API over the home at ``home`` (default: ``$CLEARANCE_HOME``, then
    ``./.clearance``), with ``clock`` as the gate's clock.

    InputError when there is no valid home. Serve it with one process per home
    (``clearance serve`` does; a second server on the same home refuses to start).
    ``opened`` is a state the caller already opened over the same home (the CLI does, so
    that a home that cannot be served is reported before any socket is bound); the app
    then owns it and closes it when it stops.
    """
    located = Home.load(find_home(home))
    settings = located.settings.server

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if opened is not None:
            state = opened
        else:
            state = await anyio.to_thread.run_sync(
                functools.partial(open_state, located.path, clock=clock)
            )
        app.state.clearance = state
        sweeper = asyncio.create_task(_sweep(state, settings.sweep_interval))
        logger.info("serving the home %s (ledger %s)", located.path, located.ledger_path)
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            app.state.clearance = None
            await anyio.to_thread.run_sync(state.close)

    app = FastAPI(
        title="clearance runtime API",
        version=_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.clearance = None
    install_error_handlers(app)
    for module in (authorize, traces, executions, requests, approvals, policies, log, health):
        app.include_router(module.router)

    def current_metrics() -> ServerMetrics | None:
        state = app.state.clearance
        return state.metrics if isinstance(state, ServerState) else None

    lean_route = next(r for r in authorize.router.routes if getattr(r, "path", None) == LEAN_PATH)
    console.mount(app, settings)
    app.add_middleware(LeanAuthorize, route=lean_route)  # innermost: inside the limits
    app.add_middleware(BodyLimit, max_body=settings.max_body)
    app.add_middleware(RequestTimer, metrics=current_metrics)
    return app
