"""Per-trace locks that every process on one PostgreSQL log honours.

The gate serializes the decisions of one trace from reading its facts to appending the
decision (:mod:`clearance._internal.gate.traces`). On a log that several processes
append to, that lock must hold across processes too, or two gateways could each read
the same spent total and both allow: :meth:`TraceLocks.hold` takes a session-level
PostgreSQL advisory lock keyed by the trace id for exactly that span.

Invariants:

* The key is the first 8 bytes of SHA-256 over a domain tag and the trace id, as a
  signed 64-bit integer: every process computes the same key, and traces collide only
  by chance (a collision serializes two traces, it never lets one run unlocked).
* The lock is taken on a pooled connection kept for the span and released on it
  (``pg_advisory_unlock``) before the connection goes back to the pool. A lock that
  cannot be taken within ``timeout`` seconds, or a server that cannot be reached,
  raises :class:`~clearance.errors.LedgerError`: the gate then denies (fail closed).
* If the connection holding the lock is lost while held, the server releases the lock
  with the session: releasing then raises LedgerError, the pool discards the
  connection, and the decision made meanwhile is in the log already (it was appended
  under the lock); only a decision made by another process in that window could have
  read the same facts. The store's logs record the loss.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

from clearance._internal.postgres import describe
from clearance.errors import LedgerError

log = logging.getLogger("clearance.ledger")

_DOMAIN: Final = b"clearance-trace-lock\x00"
DEFAULT_TIMEOUT: Final = 10.0
"""Seconds a decision waits for its trace's lock before it is refused."""


def trace_key(trace_id: str) -> int:
    """The advisory-lock key of ``trace_id`` (a signed 64-bit integer)."""
    digest = hashlib.sha256(_DOMAIN + trace_id.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class TraceLocks:
    """Advisory locks per trace over a psycopg connection pool (see the module docstring)."""

    def __init__(self, pool: Any, url: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._pool = pool
        self._url = url
        self._timeout = timeout

    @contextmanager
    def hold(self, trace_id: str) -> Iterator[None]:
        """Hold ``trace_id``'s lock for the ``with`` block, in every process on the log."""
        import psycopg
        from psycopg_pool import PoolTimeout

        key = trace_key(trace_id)
        try:
            conn_cm = self._pool.connection(timeout=self._timeout)
            conn = conn_cm.__enter__()
        except (PoolTimeout, psycopg.Error) as exc:
            raise LedgerError(describe(exc, self._url)) from None
        try:
            try:
                conn.execute(f"SET lock_timeout = {int(self._timeout * 1000)}")
                conn.execute("SELECT pg_advisory_lock(%s)", (key,))
                conn.commit()
            except psycopg.Error as exc:
                raise LedgerError(
                    f"the lock of trace {trace_id!r} could not be taken: {describe(exc, self._url)}"
                ) from None
            try:
                yield
            finally:
                try:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
                    conn.commit()
                except psycopg.Error as exc:
                    log.error(
                        "the lock of trace %r was lost before it was released: %s",
                        trace_id,
                        describe(exc, self._url),
                    )
                    raise LedgerError(
                        f"the lock of trace {trace_id!r} was lost: {describe(exc, self._url)}"
                    ) from None
        finally:
            conn_cm.__exit__(None, None, None)
