"""Single-use grants: the replay guard an executor consults after a grant verifies.

DESIGN §4 fail-closed rule 6 rejects a replayed ``jti``. A grant is short-lived
(``exp``), so a guard need only remember a ``jti`` while the grant could still
verify, that is until ``exp + leeway``; after that, the expiry check rejects
the token on its own and the row can go.

Invariants of :class:`SQLiteReplayGuard`:

* Consumption is one ``INSERT`` into a table whose primary key is the ``jti``.
  SQLite makes that atomic across threads and processes sharing the file: of
  any number of concurrent consumers of one ``jti``, exactly one succeeds.
* A row is deleted only when ``exp + leeway < now``. ``leeway`` defaults to
  :data:`~clearance.grants.MAX_LEEWAY`'s value, the largest leeway a verifier
  may use, so a ``jti`` is never forgotten while its grant can still verify
  (for processes whose clocks agree to within that leeway).
* Purging is amortised: at most once per ``purge_every`` consumes or
  ``purge_interval`` seconds of advancing ``now``; the table stays bounded by
  the number of grants issued in one lifetime-plus-leeway window.
* ``durable`` commits with ``synchronous=FULL`` (a consumed ``jti`` survives a
  power cut); ``relaxed`` uses ``NORMAL`` in WAL mode (survives a killed
  process, may lose the last commits on power loss).
* The executor fails closed: any storage failure while consuming raises
  :class:`~clearance.errors.InvalidGrant` (``"replay store unavailable: ..."``);
  failure to open raises :class:`~clearance.errors.LedgerError`. No
  ``sqlite3`` exception escapes.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
from typing import Final, Literal, Protocol

from clearance.errors import InvalidGrant, LedgerError

Durability = Literal["durable", "relaxed"]

REPLAY_LEEWAY: Final[float] = 5.0
"""Seconds a ``jti`` is kept past its grant's ``exp`` (equals the verifier's MAX_LEEWAY)."""
PURGE_EVERY: Final[int] = 1024
"""Consumes between two purges of expired rows."""
PURGE_INTERVAL: Final[float] = 60.0
"""Seconds of advancing ``now`` between two purges of expired rows."""
BUSY_TIMEOUT_MS: Final[int] = 5000
"""How long a consume waits for another process's write lock before failing closed."""

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS consumed_jti ("
    " jti TEXT PRIMARY KEY NOT NULL, exp REAL NOT NULL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS consumed_jti_exp ON consumed_jti (exp)",
)


class ReplayGuard(Protocol):
    """Remembers consumed grant ids; see :func:`clearance.grants.verify_grant`."""

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
    ) -> None:
        """Internal; use :meth:`open`."""
        self._db = connection
        self._lock = threading.Lock()
        self._leeway = leeway
        self._purge_every = purge_every
        self._purge_interval = purge_interval
        self._since_purge = 0
        self._last_purge = -math.inf

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        durability: Durability = "durable",
        *,
        leeway: float = REPLAY_LEEWAY,
        purge_every: int = PURGE_EVERY,
        purge_interval: float = PURGE_INTERVAL,
    ) -> SQLiteReplayGuard:
        """Open (creating if needed) the guard's database at ``path``.

        Raises ValueError for a bad ``durability`` or limit, LedgerError when
        the file cannot be opened or initialised.
        """
        if durability not in ("durable", "relaxed"):
            raise ValueError(f"durability must be 'durable' or 'relaxed', got {durability!r}")
        if not (0 <= leeway < math.inf) or purge_every < 1 or not purge_interval >= 0:
            raise ValueError("leeway and purge_interval must be >= 0 and purge_every >= 1")
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
            for statement in _SCHEMA:
                db.execute(statement)
        except sqlite3.Error as exc:
            db.close()
            raise LedgerError(f"cannot initialise replay store {path}: {exc}") from None
        return cls(db, leeway=leeway, purge_every=purge_every, purge_interval=purge_interval)

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
                self._db.execute("INSERT INTO consumed_jti (jti, exp) VALUES (?, ?)", (jti, exp))
        except sqlite3.IntegrityError:
            raise InvalidGrant("replayed jti") from None
        except sqlite3.Error as exc:  # includes ProgrammingError on a closed connection
            raise InvalidGrant(f"replay store unavailable: {exc}") from None

    def purge(self, now: float) -> int:
        """Delete rows whose ``exp + leeway < now``; returns how many. LedgerError on failure."""
        try:
            with self._lock:
                return self._purge_locked(now)
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot purge replay store: {exc}") from None

    def _purge_locked(self, now: float) -> int:
        cursor = self._db.execute("DELETE FROM consumed_jti WHERE exp < ?", (now - self._leeway,))
        self._since_purge = 0
        self._last_purge = now
        return cursor.rowcount

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
