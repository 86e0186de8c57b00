"""``clearance serve``: the runtime API (docs/http-api.md) on uvicorn, one process per home.

The home is opened before any socket is bound, so a home that cannot be served (no
valid bundle, a ledger that does not extend its checkpoint, another server holding the
home's serve lock) is reported as ``error: ...`` with exit status 2, not as a
traceback. The gate is closed (its last checkpoint signed) however the server stops.
"""

from __future__ import annotations

import gc
import ipaddress
import logging
import signal
import sys
from typing import Annotated

import typer

from clearance._cli.common import DatabaseOption, HomeOption, use_database
from clearance.errors import InputError

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    home: HomeOption = None,
    database: DatabaseOption = None,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (loopback unless you mean it).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8470,
    log_level: Annotated[
        str, typer.Option("--log-level", help="critical, error, warning, info or debug.")
    ] = "info",
    access_log: Annotated[
        bool, typer.Option("--access-log/--no-access-log", help="Log every request.")
    ] = True,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            hidden=True,
            help="Offer the console's runtime demo page (a home `clearance demo` made; "
            "`clearance demo` passes it).",
        ),
    ] = False,
) -> None:
    """Serve the runtime API: authorize, traces, outcomes, approvals, receipts, the log.

    Every endpoint except health, metrics, the JWKS and the log's checkpoint, vkey
    and proofs needs an API key (`clearance api-keys create`). One server per home:
    a second `clearance serve` on the same home refuses to start. The API is plain
    HTTP; off loopback, put a TLS-terminating proxy in front of it. Limits (body
    size, per-key rate, late outcome reports) are the `server:` settings in
    clearance.yaml. OpenAPI: /openapi.json, /docs.
    """
    import uvicorn

    from clearance._internal.home import Home, find_home
    from clearance._internal.server.app import create_app
    from clearance._internal.server.state import open_state

    use_database(database)
    if log_level not in LOG_LEVELS:
        raise InputError(f"--log-level must be one of {', '.join(LOG_LEVELS)}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
    clearance_log = logging.getLogger("clearance")
    clearance_log.addHandler(handler)
    clearance_log.setLevel(log_level.upper())
    if not _loopback(host):
        clearance_log.warning(
            "listening on %s: the API is plain HTTP, put a TLS-terminating proxy in front", host
        )
    located = Home.load(find_home(home))
    state = open_state(located.path)
    try:
        if demo:
            from clearance._internal.console.pages.demo import enable_demo

            enable_demo(state)
        app = create_app(located.path, opened=state)
        sys.stderr.write(
            f"clearance serve: home {located.path}, http://{host}:{port} "
            f"(OpenAPI at /openapi.json)\n"
        )
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=log_level,
            access_log=access_log,
            server_header=False,
            lifespan="on",
        )
        # uvicorn stops gracefully on SIGTERM/SIGINT, then raises the signal again for the
        # handler that was there before it; this one makes that a normal exit (status 0
        # after a clean stop, as process managers expect), so `finally` and atexit hooks
        # run instead of the process dying on the re-raised signal.
        signal.signal(signal.SIGTERM, _stopped)
        config.load()  # import the app's and the server's code before the heap is settled
        settle_heap()
        uvicorn.Server(config).run()
    finally:
        state.close()  # idempotent: the app closed it already unless it never stopped cleanly


def settle_heap() -> None:
    """Move every object alive now out of the cyclic garbage collector's reach (``gc.freeze``).

    A server process starts with about 100,000 container objects (modules, the app and
    its OpenAPI models, the policy bundle, compiled CEL programs) that live as long as it
    does. The collector's full (generation 2) pass walks all of them, with the GIL held:
    about 80-100 ms on this 2-core machine, every second or two under load, which stalled
    every request in flight (``clearance bench --http``: answers clustered at ~100 ms, a
    p99 of 65-110 ms over a p50 of 12-16 ms). Frozen, they are never walked again, and a
    full pass only covers what requests leave behind (bounded caches): 8-19 ms, and the
    p99 was 21-35 ms in ten runs. The process owns its heap, so this is done here, not by
    the library, whose host application's garbage is its own business. Garbage is
    collected first, so nothing unreachable is frozen.
    """
    gc.collect()
    gc.freeze()


def _stopped(signum: int, frame: object) -> None:
    """The re-raised SIGTERM after uvicorn's graceful shutdown: exit normally."""
    raise SystemExit(0)
