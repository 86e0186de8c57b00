"""Single-use grants on PostgreSQL: the replay guard any number of gateway processes share.

:class:`PostgresReplayGuard` keeps the contract of
:class:`~clearance._internal.grants.jti_store.SQLiteReplayGuard`; read that module's
docstring for the purge rule and its limits, which hold here unchanged (the same
arithmetic: :mod:`clearance._internal.grants.replay_purge`). What differs is how
PostgreSQL keeps each invariant.

Invariants:

* Consumption is one autocommit statement, ``INSERT ... ON CONFLICT (jti) DO NOTHING``,
  on the primary key: one row inserted means consumed, none means replayed. Of
  concurrent inserters of one ``jti`` (any connections, any processes), the unique
  index makes the later ones wait for the first one's transaction: if it commits they
  insert nothing, if it aborts one of them inserts. Exactly one succeeds.
* A purge reads the observation and deletes in one ``REPEATABLE READ`` transaction,
  so both statements see the one snapshot its first statement took. A row another
  verifier committed before that snapshot is in the observation; one committed after
  it is invisible to the ``DELETE``, which cannot remove it. (Under ``READ
  COMMITTED`` each statement takes a new snapshot, and a verifier's first row
  committed between the two would be deleted on evidence that lacked it: the race
  ``BEGIN IMMEDIATE`` closes on SQLite.) That is all the rule needs, so not
  ``SERIALIZABLE``: every outcome is the one of the purge running before the
  concurrent consumes, as on SQLite. A consume reads nothing the purge writes but the
  unique index, where an insert of a ``jti`` whose row the purge is deleting waits
  for the purge to commit.
* Purges of one table never overlap: the purge transaction first tries a
  transaction-level advisory lock keyed by the table's OID (so two stores in two
  schemas of one database do not exclude each other). A purger that does not get it
  skips this purge (returns 0): another is deleting the same rows, and waiting on
  its row locks would only delay a consume. A purge whose ``DELETE`` still meets a
  row deleted by a purge that committed after its snapshot gets a serialization
  failure and skips likewise. Consumes never wait for the lock.
* ``durable`` sets ``synchronous_commit = on`` on every connection: a consume
  returns once its row is flushed to the server's WAL (it survives a power cut of the
  server). ``relaxed`` sets it ``off``: a consume returns before the flush; it
  survives a killed gateway process, but a crash of the *server* may lose the last
  commits (up to three ``wal_writer_delay``, 600 ms by default).
* The executor fails closed: any storage failure while consuming (server down,
  connection cut, no pooled connection within ``wait``, a closed guard) raises
  :class:`~clearance.errors.InvalidGrant` (``"replay store unavailable: ..."``,
  naming the server, never its password); failing to open raises
  :class:`~clearance.errors.LedgerError`. No ``psycopg`` exception escapes. A consume
  whose reply was lost after the server committed it is refused by the caller and,
  retried, refused as a replay: never run twice, at worst not run.
* Connections come from a small pool whose connections are checked before use, so
  the guard recovers by itself when a restarted server answers again.

Schema (migrations component ``replay``)::

    consumed_jti(jti TEXT PRIMARY KEY, exp DOUBLE PRECISION NOT NULL,
                 seen_at DOUBLE PRECISION NULL, verifier TEXT NOT NULL DEFAULT '')

indexed on ``exp``: the SQLite table's shape, so rows copied from a SQLite store
(``seen_at`` NULL, verifier ``''``) keep the meaning they had there.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from clearance._internal.grants.jti_store import (
    MAX_SKEW,
    PURGE_EVERY,
    PURGE_INTERVAL,
    REPLAY_LEEWAY,
)
from clearance._internal.grants.replay_purge import (
    NEWEST_BY_OTHERS_SQL,
    VerifierEvidence,
    check_limits,
    purge_cutoff,
)
from clearance._internal.limits import DURABILITIES, Durability
from clearance._internal.migrations import Migration, apply
from clearance._internal.postgres import CONNECT_TIMEOUT, connect, describe, open_pool, redact
from clearance.errors import InvalidGrant, LedgerError

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool

COMPONENT: Final = "replay"
MIGRATIONS: Final = (
    Migration(
        1,
        "consumed grant ids, who consumed them and when",
        (
            "CREATE TABLE consumed_jti (jti TEXT PRIMARY KEY, exp DOUBLE PRECISION NOT NULL,"
            " seen_at DOUBLE PRECISION, verifier TEXT NOT NULL DEFAULT '')",
            "CREATE INDEX consumed_jti_exp ON consumed_jti (exp)",
        ),
    ),
)
POOL_SIZE: Final = 4
"""Connections a guard may hold: consumes from that many threads run at once."""

_INSERT: Final = (
    "INSERT INTO consumed_jti (jti, exp, seen_at, verifier) VALUES (%s, %s, %s, %s)"
    " ON CONFLICT (jti) DO NOTHING"
)
_NEWEST_BY_OTHERS: Final = NEWEST_BY_OTHERS_SQL.format(param="%s")
_PURGE_LOCK_BASE: Final = int.from_bytes(
    hashlib.sha256(b"clearance-replay-purge").digest()[:4], "big", signed=True
) * (1 << 32)
"""High 32 bits of the purge's advisory-lock key; the table's OID is the low 32."""
_TRY_PURGE_LOCK: Final = (
    "SELECT pg_try_advisory_xact_lock(%s::bigint + 'consumed_jti'::regclass::oid::bigint)"
)


def _configure(synchronous_commit: str) -> Callable[[psycopg.Connection[Any]], None]:
    def configure(conn: psycopg.Connection[Any]) -> None:
        conn.autocommit = True  # a consume is one statement, one round trip
        conn.execute(f"SET synchronous_commit = {synchronous_commit}")

    return configure


class PostgresReplayGuard:
    """A :class:`~clearance._internal.grants.jti_store.ReplayGuard` in PostgreSQL, shared
    safely by threads and processes. Use :meth:`open`."""

    def __init__(
        self,
        pool: psycopg_pool.ConnectionPool[Any],
        url: str,
        *,
        leeway: float,
        purge_every: int,
        purge_interval: float,
        max_skew: float,
        monotonic: Callable[[], float],
        wait: float,
        verifier: str,
    ) -> None:
        """Internal; use :meth:`open`."""
        import psycopg

        self._driver_error: type[Exception] = psycopg.Error
        self._serialization_failure: type[Exception] = psycopg.errors.SerializationFailure
        self._pool = pool
        self._url = url
        self._leeway = leeway
        self._purge_every = purge_every
        self._purge_interval = purge_interval
        self._max_skew = max_skew
        self._monotonic = monotonic
        self._wait = wait
        self._verifier = verifier
        self._state = threading.Lock()
        """Guards the purge schedule below."""
        self._since_purge = 0
        self._last_purge = -math.inf
        self._purging = threading.Lock()
        """Held by the one thread of this guard that purges; guards the evidence."""
        self._evidence = VerifierEvidence()

    @classmethod
    def open(
        cls,
        url: str,
        *,
        durability: Durability = "durable",
        leeway: float = REPLAY_LEEWAY,
        purge_every: int = PURGE_EVERY,
        purge_interval: float = PURGE_INTERVAL,
        max_skew: float = MAX_SKEW,
        monotonic: Callable[[], float] = time.monotonic,
        pool_size: int = POOL_SIZE,
        wait: float = CONNECT_TIMEOUT,
    ) -> PostgresReplayGuard:
        """Open the guard on the PostgreSQL database at ``url``, migrating its schema.

        The limits mean what they mean for
        :meth:`~clearance._internal.grants.jti_store.SQLiteReplayGuard.open`.
        ``pool_size`` bounds the connections (and concurrent consumes); ``wait`` is
        how long a consume waits for a connection before failing closed. Raises
        ValueError for a bad ``durability`` or limit, InputError for a URL that is
        not PostgreSQL, LedgerError when the server cannot be reached or the schema
        is newer than this clearance.
        """
        if durability not in DURABILITIES:
            raise ValueError(f"durability must be 'durable' or 'relaxed', got {durability!r}")
        check_limits(leeway, purge_every, purge_interval, max_skew)
        if pool_size < 1 or not wait > 0:
            raise ValueError("pool_size must be >= 1 and wait > 0")
        import psycopg

        # The schema first, on a connection of its own: an unreachable server fails
        # here at once, with libpq's reason, rather than after the pool's wait.
        try:
            conn = connect(url, autocommit=True)
        except LedgerError as exc:
            raise LedgerError(f"cannot open the replay store: {exc}") from None
        with conn:
            try:
                apply(conn, COMPONENT, MIGRATIONS)
            except psycopg.Error as exc:
                raise LedgerError(
                    f"cannot initialise the replay store: {describe(exc, url)}"
                ) from None
        synchronous_commit = "on" if durability == "durable" else "off"
        pool = open_pool(
            url,
            min_size=1,
            max_size=pool_size,
            name="clearance-replay",
            configure=_configure(synchronous_commit),
        )
        return cls(
            pool,
            url,
            leeway=leeway,
            purge_every=purge_every,
            purge_interval=purge_interval,
            max_skew=max_skew,
            monotonic=monotonic,
            wait=wait,
            verifier=secrets.token_hex(8),
        )

    @property
    def location(self) -> str:
        """The database URL, password redacted."""
        return redact(self._url)

    def consume(self, jti: str, exp: float, now: float) -> None:
        """Atomically record ``jti``; InvalidGrant("replayed jti") if any process already did.

        Any storage failure raises InvalidGrant("replay store unavailable: ..."),
        so the executor refuses the grant rather than risk running it twice.
        """
        try:
            if self._purge_due(now) and self._purging.acquire(blocking=False):
                try:
                    self._purge_locked(now)
                finally:
                    self._purging.release()
            with self._pool.connection(timeout=self._wait) as conn:
                inserted = conn.execute(_INSERT, (jti, exp, now, self._verifier)).rowcount
        except self._driver_error as exc:  # PoolTimeout and PoolClosed included
            raise InvalidGrant(f"replay store unavailable: {describe(exc, self._url)}") from None
        if inserted != 1:
            raise InvalidGrant("replayed jti")

    def _purge_due(self, now: float) -> bool:
        with self._state:
            self._since_purge += 1
            return (
                self._since_purge >= self._purge_every
                or now - self._last_purge >= self._purge_interval
            )

    def purge(self, now: float) -> int:
        """Delete rows with ``exp + leeway < min(now, max(E, now - max_skew))``; returns how many.

        ``E`` is the other verifiers' evidence (see
        :mod:`~clearance._internal.grants.jti_store`). 0 as well when another purge of
        the table was running (it deletes the same rows). LedgerError on failure.
        """
        try:
            with self._purging:
                return self._purge_locked(now)
        except self._driver_error as exc:
            raise LedgerError(
                f"cannot purge the replay store: {describe(exc, self._url)}"
            ) from None

    def _purge_locked(self, now: float) -> int:
        """One purge transaction (module docstring); the caller holds ``self._purging``."""
        deleted = 0
        try:
            with self._pool.connection(timeout=self._wait) as conn, conn.transaction():
                # First statement: the snapshot both the observation and the delete see.
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                row = conn.execute(_TRY_PURGE_LOCK, (_PURGE_LOCK_BASE,)).fetchone()
                if row is not None and row[0] is True:
                    newest = conn.execute(_NEWEST_BY_OTHERS, (self._verifier,)).fetchall()
                    evidence = self._evidence.observe(newest, self._monotonic())
                    cutoff = purge_cutoff(
                        now, evidence, max_skew=self._max_skew, leeway=self._leeway
                    )
                    deleted = conn.execute(
                        "DELETE FROM consumed_jti WHERE exp < %s", (cutoff,)
                    ).rowcount
        except self._serialization_failure:
            deleted = 0  # a concurrent purge deleted these rows first; nothing to undo
        with self._state:
            self._since_purge = 0
            self._last_purge = now
        return deleted

    def __len__(self) -> int:
        """The number of remembered ``jti`` values (expired rows included until purged)."""
        try:
            with self._pool.connection(timeout=self._wait) as conn:
                row = conn.execute("SELECT count(*) FROM consumed_jti").fetchone()
        except self._driver_error as exc:
            raise LedgerError(f"cannot read the replay store: {describe(exc, self._url)}") from None
        return int(row[0]) if row is not None else 0

    def close(self) -> None:
        """Close the pool; later consumes fail closed. Idempotent."""
        self._pool.close()
