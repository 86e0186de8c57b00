"""PostgreSQL, the scale-out store (docs/design.md §7): connections, pools, errors.

Invariants:

* psycopg is imported only here and in the PostgreSQL stores, and only when a
  ``postgresql://`` database is used: the embedded (SQLite) path never loads it. When it
  is missing, the error names the extra to install (``clearance[postgresql]``).
* Every failure to reach or use the server becomes
  :class:`~clearance.errors.LedgerError` with a sentence naming the server (never its
  password) and what to check: the callers fail closed on it.
* URLs are libpq connection URIs (``postgresql://user@host:port/db?options=...``);
  :func:`redact` is what every message shows of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, cast
from urllib.parse import urlsplit, urlunsplit

from clearance.errors import InputError, LedgerError

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool

SCHEMES: Final = ("postgresql", "postgres")
CONNECT_TIMEOUT: Final = 5
"""Seconds a new connection may take before the store reports the server unreachable."""
RECONNECT_WINDOW: Final = 5.0
"""Seconds a pool retries a lost connection (backoff 1, 2, 4 s) before it gives up and
starts afresh on the next request: bounds how long a pool takes to use a restarted
server (psycopg_pool's own default, 5 minutes of doubling delays, could take half a
minute after a one-minute outage)."""


def is_postgres_url(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL database (``postgresql://`` or ``postgres://``)."""
    return urlsplit(url).scheme in SCHEMES


def check_url(url: str) -> str:
    """``url`` if it is a usable PostgreSQL URI; InputError naming the problem otherwise."""
    if not isinstance(url, str) or not url.strip():
        raise InputError("the database URL is empty; use postgresql://USER@HOST:PORT/DB")
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise InputError(
            f"unsupported database URL {redact(url)!r}: use postgresql://USER@HOST:PORT/DB "
            "(SQLite, the default, needs no URL)"
        )
    if not parts.path.strip("/") and not parts.hostname:
        raise InputError(f"the database URL {redact(url)!r} names no host and no database")
    return url


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (what messages and logs show)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}{port}", parts.path, parts.query, ""))


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - the dev install has it
        raise InputError(
            "PostgreSQL support is not installed: pip install 'clearance[postgresql]'"
        ) from None
    return psycopg


def describe(exc: BaseException, url: str) -> str:
    """An actionable sentence for a PostgreSQL failure on the database at ``url``."""
    where = redact(url)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    driver = _psycopg()
    if isinstance(exc, driver.OperationalError):
        return (
            f"PostgreSQL at {where} is unreachable or refused the connection ({text}); "
            "check that the server runs (pg_isready) and the URL, user and database"
        )
    if isinstance(exc, driver.errors.InsufficientPrivilege):
        return f"PostgreSQL at {where} refused: {text}; grant the role the needed privileges"
    return f"PostgreSQL at {where} failed: {text}"


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection[Any]:
    """A new connection to ``url``; LedgerError (see :func:`describe`) when it fails."""
    driver = _psycopg()
    check_url(url)
    try:
        conn = driver.connect(url, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT)
    except driver.Error as exc:
        raise LedgerError(describe(exc, url)) from None
    return cast("psycopg.Connection[Any]", conn)


def open_pool(
    url: str,
    *,
    min_size: int = 1,
    max_size: int = 8,
    name: str = "clearance",
    configure: Callable[[psycopg.Connection[Any]], None] | None = None,
) -> psycopg_pool.ConnectionPool[Any]:
    """An opened connection pool on ``url`` (``min_size`` connections made at once).

    ``configure`` runs on every new connection before the pool hands it out (session
    settings such as ``synchronous_commit``; it must leave the connection idle).
    LedgerError when the first connections cannot be made within
    :data:`CONNECT_TIMEOUT` seconds. Connections are checked before use, so a pool
    recovers by itself once a restarted server answers again.
    """
    _psycopg()
    check_url(url)
    from psycopg_pool import ConnectionPool, PoolTimeout

    pool: ConnectionPool[Any] = ConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        name=name,
        open=False,
        timeout=CONNECT_TIMEOUT,
        check=ConnectionPool.check_connection,
        configure=configure,
        reconnect_timeout=RECONNECT_WINDOW,
        kwargs={"connect_timeout": CONNECT_TIMEOUT},
    )
    try:
        pool.open(wait=True, timeout=CONNECT_TIMEOUT)
    except PoolTimeout as exc:
        pool.close()
        raise LedgerError(
            f"PostgreSQL at {redact(url)} is unreachable ({exc}); check that the server "
            "runs (pg_isready) and the URL, user and database"
        ) from None
    return pool
