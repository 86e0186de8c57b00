"""Single-use grants: the replay guard an executor consults after a grant verifies.

docs/design.md §4 fail-closed rule 6 rejects a replayed ``jti``. A grant is short-lived
(``exp``), so a guard need only remember a ``jti`` while the grant could still
verify, that is until ``exp + leeway``; after that, the expiry check rejects
the token on its own and the row can go.

Invariants of :class:`SQLiteReplayGuard`:

* Consumption is one ``INSERT`` into a table whose primary key is the ``jti``.
  SQLite makes that atomic across threads and processes sharing the file: of
  any number of concurrent consumers of one ``jti``, exactly one succeeds.
  The row also records ``seen_at``, the consuming verifier's ``now``, and
  ``verifier``, a random id (16 hex digits) its guard drew when opened: every
  open is a new verifier, including a restart of the same process.
* A purge at ``now`` never trusts the purger's clock alone. It deletes exactly
  the rows with ``exp + leeway < min(now, max(E, now - max_skew))``. ``E`` is
  the smallest, over every *other* verifier id that has a row in the store, of
  that verifier's evidence: the newest ``seen_at`` it wrote, plus the purger's
  monotonic time elapsed since the purger first observed that value. A
  verifier's clock reads at least what it wrote plus the real time since, so
  its evidence is a lower bound of its clock now, and a deleted row is expired
  on every clock the store knows of. With no other verifier's row, ``E`` is
  infinite. ``leeway`` defaults to :data:`~clearance._internal.limits.MAX_LEEWAY`'s
  value, the largest leeway a verifier may use.
* The smallest evidence, not the newest: worker processes of one service with
  a fast clock, or one process before and after a restart, are different
  verifiers, and taking the newest ``seen_at`` of any other verifier would let
  them vouch for each other's fast clock.
* ``max_skew`` (default :data:`MAX_SKEW`, one day) bounds how far behind its
  own clock a purger lets evidence hold it: a fresh guard has measured no time
  yet, so without the bound every short-lived guard (one process per governed
  call) would stop at the oldest writer's ``seen_at`` and the store would never
  shrink. A clock more than ``max_skew`` ahead of the others is not caught.
* The observation and the delete are one write transaction (``BEGIN
  IMMEDIATE``): a row another verifier commits meanwhile is either seen as
  evidence or not deleted.
* Purging is amortised: at most once per ``purge_every`` consumes or
  ``purge_interval`` seconds of advancing ``now``; the table stays bounded by
  the grants of one lifetime-plus-leeway window, plus the lag below. The
  observation reads the whole table once per purge (no index on ``verifier``:
  it would cost every consume more than the amortised scan does).
* ``durable`` commits with ``synchronous=FULL`` (a consumed ``jti`` survives a
  power cut); ``relaxed`` uses ``NORMAL`` in WAL mode (survives a killed
  process, may lose the last commits on power loss).
* The executor fails closed: any storage failure while consuming raises
  :class:`~clearance.errors.InvalidGrant` (``"replay store unavailable: ..."``);
  failure to open raises :class:`~clearance.errors.LedgerError`. No
  ``sqlite3`` exception escapes.

Limits of the purge rule (what it does not protect):

* A verifier with no row in the store (it never consumed, or all its rows were
  purged) holds no purge back; for it, as before, safety rests on clocks
  agreeing to within ``leeway``.
* Evidence is a lower bound only while a verifier's clock does not step
  backwards; a clock set back after writing is overestimated.
* A verifier that stops writing keeps holding purges back only by the time
  between its last write and the purger's first observation of it (its
  evidence advances with real time), and only until its own rows expire on
  that evidence (about a grant lifetime plus twice the leeway); never by more
  than ``max_skew``. A verifier whose clock is slow holds purges back by its
  lag: the store keeps that many more rows, the price of keeping its ``jti``s.
  A store used only by short-lived guards keeps about ``max_skew`` of rows.
* Rows written before ``seen_at`` existed (or by an older guard during a
  rolling upgrade) have verifier ``''`` and no ``seen_at``; their ``exp``
  stands in for it. That overstates the writer's clock by up to one grant
  lifetime, so such a row can be purged up to that much early; and an older
  guard still sharing the store purges by its own clock alone, as it always did.

Schema: ``consumed_jti(jti TEXT PRIMARY KEY, exp REAL, seen_at REAL NULL,
verifier TEXT DEFAULT '')``, indexed on ``exp``; ``PRAGMA user_version`` is
:data:`SCHEMA_VERSION`. :data:`MIGRATIONS` is its whole history, applied in one
transaction by the first opener (:mod:`clearance._internal.migrations`, the mechanism
every store uses); a store of a newer version is refused.

The purge rule's arithmetic is :mod:`clearance._internal.grants.replay_purge`, shared
with :class:`~clearance._internal.grants.jti_store_pg.PostgresReplayGuard`, which keeps
these invariants on PostgreSQL.
"""

from __future__ import annotations

import math
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Final, Protocol

from clearance._internal.grants.replay_purge import (
    NEWEST_BY_OTHERS_SQL,
    VerifierEvidence,
    check_limits,
    purge_cutoff,
)
from clearance._internal.limits import DURABILITIES, MAX_LEEWAY, Durability
from clearance._internal.migrations import Migration, apply
from clearance.errors import InvalidGrant, LedgerError

REPLAY_LEEWAY: Final[float] = MAX_LEEWAY
"""Seconds a ``jti`` is kept past its grant's ``exp``: the verifier leeway ceiling, since
any verifier sharing the store may use the full leeway."""
PURGE_EVERY: Final[int] = 1024
"""Consumes between two purges of expired rows."""
PURGE_INTERVAL: Final[float] = 60.0
"""Seconds of advancing ``now`` between two purges of expired rows."""
MAX_SKEW: Final[float] = 86400.0
"""Seconds a purge may lag its own clock while other verifiers' evidence is behind it.

One day: more than any time zone or daylight-saving mistake, which shift a clock
by whole hours up to fourteen.
"""
BUSY_TIMEOUT_MS: Final[int] = 5000
"""How long a consume waits for another process's write lock before failing closed."""

COMPONENT: Final = "replay"
"""The replay store's component name (:mod:`clearance._internal.migrations`)."""
MIGRATIONS: Final = (
    Migration(
        1,
        # An empty file gets the original table; a store written before versioning
        # (user_version 0) already has it.
        "consumed grant ids with their expiry",
        (
            "CREATE TABLE IF NOT EXISTS consumed_jti ("
            " jti TEXT PRIMARY KEY NOT NULL, exp REAL NOT NULL) WITHOUT ROWID",
            "CREATE INDEX IF NOT EXISTS consumed_jti_exp ON consumed_jti (exp)",
        ),
    ),
    Migration(
        2,
        # Who consumed each jti and when, by its clock. seen_at stays NULL (read as exp)
        # and verifier '' (an unknown verifier) for old rows and for the rows an older
        # guard still inserts as (jti, exp) during a rolling upgrade.
        "who consumed each grant id, and when by its clock",
        (
            "ALTER TABLE consumed_jti ADD COLUMN seen_at REAL",
            "ALTER TABLE consumed_jti ADD COLUMN verifier TEXT NOT NULL DEFAULT ''",
        ),
    ),
)
SCHEMA_VERSION: Final[int] = len(MIGRATIONS)
"""The replay store's ``PRAGMA user_version`` once this module has opened it."""

_NEWEST_BY_OTHERS: Final = NEWEST_BY_OTHERS_SQL.format(param="?")


class ReplayGuard(Protocol):
    """Remembers consumed grant ids; see :func:`clearance._internal.grants.token.verify_grant`."""

    def consume(self, jti: str, exp: float, now: float) -> None:
        """Record ``jti`` (valid until ``exp``) as used; InvalidGrant("replayed jti") if it was."""
        ...

    def close(self) -> None:
        """Release the guard's resources."""
        ...


class SQLiteReplayGuard:
    """A :class:`ReplayGuard` in a SQLite file (WAL), shared safely by threads and processes."""

    def __init__(
        self,
        connection: sqlite3.Connection,
        *,
        leeway: float,
        purge_every: int,
        purge_interval: float,
        max_skew: float,
        monotonic: Callable[[], float],
        verifier: str,
    ) -> None:
        """Internal; use :meth:`open`."""
        self._db = connection
        self._lock = threading.Lock()
        self._leeway = leeway
        self._purge_every = purge_every
        self._purge_interval = purge_interval
        self._max_skew = max_skew
        self._since_purge = 0
        self._last_purge = -math.inf
        self._monotonic = monotonic
        self._verifier = verifier
        self._evidence = VerifierEvidence()

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        durability: Durability = "durable",
        *,
        leeway: float = REPLAY_LEEWAY,
        purge_every: int = PURGE_EVERY,
        purge_interval: float = PURGE_INTERVAL,
        max_skew: float = MAX_SKEW,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> SQLiteReplayGuard:
        """Open (creating or migrating if needed) the guard's database at ``path``.

        ``monotonic`` measures the real time that advances other verifiers'
        evidence between purges, and ``max_skew`` bounds how far that evidence
        may hold a purge behind this guard's clock (see the module docstring).
        Raises ValueError for a bad ``durability`` or limit, LedgerError when
        the file cannot be opened or initialised.
        """
        if durability not in DURABILITIES:
            raise ValueError(f"durability must be 'durable' or 'relaxed', got {durability!r}")
        check_limits(leeway, purge_every, purge_interval, max_skew)
        synchronous = "FULL" if durability == "durable" else "NORMAL"
        try:
            db = sqlite3.connect(
                os.fspath(path),
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,  # autocommit: each INSERT is its own transaction
                check_same_thread=False,  # guarded by self._lock
            )
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open replay store {path}: {exc}") from None
        try:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                raise sqlite3.OperationalError(f"cannot enable WAL (journal_mode is {mode})")
            db.execute(f"PRAGMA synchronous = {synchronous}")
            apply(db, COMPONENT, MIGRATIONS)
        except sqlite3.Error as exc:
            db.close()
            raise LedgerError(f"cannot initialise replay store {path}: {exc}") from None
        except LedgerError as exc:
            db.close()
            raise LedgerError(f"cannot initialise replay store {path}: {exc}") from None
        return cls(
            db,
            leeway=leeway,
            purge_every=purge_every,
            purge_interval=purge_interval,
            max_skew=max_skew,
            monotonic=monotonic,
            verifier=secrets.token_hex(8),
        )

    def consume(self, jti: str, exp: float, now: float) -> None:
        """Atomically record ``jti``; InvalidGrant("replayed jti") if any process already did.

        Any storage failure raises InvalidGrant("replay store unavailable: ..."),
        so the executor refuses the grant rather than risk running it twice.
        """
        try:
            with self._lock:
                self._since_purge += 1
                if (
                    self._since_purge >= self._purge_every
                    or now - self._last_purge >= self._purge_interval
                ):
                    self._purge_locked(now)
                self._db.execute(
                    "INSERT INTO consumed_jti (jti, exp, seen_at, verifier) VALUES (?, ?, ?, ?)",
                    (jti, exp, now, self._verifier),
                )
        except sqlite3.IntegrityError:
            raise InvalidGrant("replayed jti") from None
        except sqlite3.Error as exc:  # includes ProgrammingError on a closed connection
            raise InvalidGrant(f"replay store unavailable: {exc}") from None

    def purge(self, now: float) -> int:
        """Delete rows with ``exp + leeway < min(now, max(E, now - max_skew))``; returns how many.

        ``E`` is the other verifiers' evidence (module docstring). LedgerError
        on failure.
        """
        try:
            with self._lock:
                return self._purge_locked(now)
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot purge replay store: {exc}") from None

    def _purge_locked(self, now: float) -> int:
        db = self._db
        # Under the write lock from the observation to the delete: a verifier's first row,
        # committed in between, would otherwise be deleted on evidence that lacked it.
        db.execute("BEGIN IMMEDIATE")
        try:
            newest = db.execute(_NEWEST_BY_OTHERS, (self._verifier,)).fetchall()
            evidence = self._evidence.observe(newest, self._monotonic())
            cutoff = purge_cutoff(now, evidence, max_skew=self._max_skew, leeway=self._leeway)
            deleted = db.execute("DELETE FROM consumed_jti WHERE exp < ?", (cutoff,)).rowcount
            db.execute("COMMIT")
        except BaseException:
            # Never leave the transaction open: the next INSERT would join it uncommitted.
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self._since_purge = 0
        self._last_purge = now
        return deleted

    def __len__(self) -> int:
        """The number of remembered ``jti`` values (expired rows included until purged)."""
        try:
            with self._lock:
                row = self._db.execute("SELECT count(*) FROM consumed_jti").fetchone()
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot read replay store: {exc}") from None
        return int(row[0])

    def close(self) -> None:
        """Close the database connection; later consumes fail closed."""
        with self._lock:
            self._db.close()
