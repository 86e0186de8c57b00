"""The runtime API as an ASGI application, for embedding (``clearance serve`` runs it).

:func:`create_app` returns the FastAPI application of docs/http-api.md over one home.
Serve it with any ASGI server, one process per home: the SQLite ledger takes one
appending process, so a second server on the same home refuses to start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import os
    from collections.abc import Callable

    from fastapi import FastAPI

__all__ = ["create_app"]


def create_app(
    home: str | os.PathLike[str] | None = None, *, clock: Callable[[], float] | None = None
) -> FastAPI:
    """The runtime API over ``home`` (default ``$CLEARANCE_HOME``, then ``./.clearance``).

    ``clock`` is the gate's clock in POSIX seconds (default: the system clock).
    InputError when ``home`` is not a clearance home. The gate, the API key store and
    the serve lock are opened when the app starts (its lifespan) and closed when it
    stops.
    """
    import time
    from pathlib import Path

    from clearance._internal.server.app import create_app as build

    return build(None if home is None else Path(home), clock=time.time if clock is None else clock)
