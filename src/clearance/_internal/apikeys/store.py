"""The API key store: create, authenticate, list and revoke keys (docs/design.md §6).

Invariants:

* A secret exists in exactly one place: the return value of :meth:`ApiKeyStore.create`.
  The store (a SQLite file, or a PostgreSQL database: the backend is a
  :class:`~clearance._internal.apikeys.rows.KeyRows`, and everything below holds on
  both) holds its :func:`~clearance._internal.apikeys.tokens.digest`; the ledger
  entry, :class:`~clearance._internal.apikeys.model.ApiKey` and every message hold
  neither.
* :meth:`ApiKeyStore.authenticate` raises one opaque
  :class:`~clearance.errors.Unauthenticated` for every bad token (malformed, unknown
  id, wrong secret, expired, revoked), so a caller learns nothing about which check
  failed; the reason goes to the ``clearance.apikeys`` logger at DEBUG. A malformed
  token is checked as :data:`~clearance._internal.apikeys.tokens.DECOY_TOKEN`, so it
  costs the lookup, hash and comparison a wrong one costs. Storage failures are
  :class:`~clearance.errors.LedgerError` (503), never an authentication.
* Revocation and expiry take effect within :data:`CACHE_TTL` (one second) everywhere:
  a verified key is cached for at most that long (monotonic clock); expiry is checked
  on every call against the injected clock, cache or not; a revocation made through
  this store drops its cache entry at once, one made by another process is read
  from the store when the entry ages out. Nothing else is cached: an unknown id is
  looked up every time (caching misses would let anyone fill the cache).
* ``last_used_at`` is written at most once per :data:`TOUCH_INTERVAL` per key and
  process, never on the request path's every call. Failing to write it is logged
  and does not fail the authentication (the key *was* verified).
* With a ledger, creation and revocation are ``apikey`` entries. Creation is
  ledger-first: the row is inserted, the entry appended, then the row committed, so
  a key that authenticates always has its entry (a failed append leaves no key).
  Revocation is effective-first: the row is committed revoked, then the entry is
  appended; if that append fails the key stays revoked, the error says so, and
  revoking it again writes the missing entry (``revoked_index`` is NULL until then).
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Final

from clearance._internal.apikeys import db, tokens
from clearance._internal.apikeys.model import (
    ApiKey,
    check_expires_in,
    check_name,
    check_principal,
    check_scopes,
)
from clearance._internal.apikeys.rows import KeyRows, KeyWrites, Row
from clearance._internal.entries import apikey_entry
from clearance._internal.ledger.store import LedgerStore
from clearance._internal.postgres import is_postgres_url
from clearance.errors import Conflict, LedgerError, NotFound, Unauthenticated

log = logging.getLogger("clearance.apikeys")

CACHE_TTL: Final = 1.0
"""Longest time (seconds) a verified key is trusted without reading the file again."""
TOUCH_INTERVAL: Final = 60.0
"""``last_used_at`` is written at most once per this many seconds per key."""
TOUCH_WAIT_MS: Final = 100
"""How long (ms) recording a last use waits for another writer before it is skipped."""
API_KEYS_FILE: Final = "apikeys.db"

_OPAQUE: Final = "invalid API key"


def api_keys_path(home: Path) -> Path:
    """Where a home keeps its API keys: ``HOME/apikeys.db``."""
    return Path(home) / API_KEYS_FILE


@dataclass(frozen=True)
class _Cached:
    key: ApiKey
    digest: bytes
    fetched: float  # monotonic seconds


class ApiKeyStore:
    """API keys in one SQLite file or one PostgreSQL database. Thread-safe; use :meth:`open`."""

    def __init__(
        self,
        rows: KeyRows,
        *,
        ledger: LedgerStore | None,
        clock: Callable[[], float],
        cache_ttl: float,
    ) -> None:
        """Wrap an open backend (:class:`~clearance._internal.apikeys.db.SQLiteKeyRows`,
        :class:`~clearance._internal.apikeys.pg_db.PostgresKeyRows`)."""
        self._rows = rows
        self._ledger = ledger
        self._clock = clock
        self._ttl = cache_ttl
        self._lock = threading.Lock()
        self._cache: dict[str, _Cached] = {}
        self._touched: dict[str, float] = {}
        self._closed = False

    @classmethod
    def open(
        cls,
        location: str | os.PathLike[str],
        *,
        ledger: LedgerStore | None = None,
        clock: Callable[[], float] = time.time,
        cache_ttl: float = CACHE_TTL,
    ) -> ApiKeyStore:
        """Open (creating if needed) the store at ``location``: a SQLite file's path, or
        a ``postgresql://`` URL (the keys of every process sharing that database).

        ``ledger``: where creations and revocations are logged (none: not logged).
        ``clock``: POSIX time for creation, expiry and ``last_used_at``.
        ``cache_ttl``: seconds a verified key is cached, 0 to 1 (0: no cache).
        LedgerError when the file cannot be opened or is not private, the server cannot
        be reached, or the schema is newer than this clearance.
        """
        if not 0 <= cache_ttl <= CACHE_TTL:
            raise ValueError(f"cache_ttl must be between 0 and {CACHE_TTL} seconds")
        rows: KeyRows
        if isinstance(location, str) and is_postgres_url(location):
            from clearance._internal.apikeys.pg_db import PostgresKeyRows

            rows = PostgresKeyRows.open(location)
        else:
            rows = db.SQLiteKeyRows.open(Path(location))
        return cls(rows, ledger=ledger, clock=clock, cache_ttl=cache_ttl)

    @property
    def path(self) -> Path | None:
        """The SQLite file; None on PostgreSQL."""
        return self._rows.path if isinstance(self._rows, db.SQLiteKeyRows) else None

    @property
    def location(self) -> str:
        """The SQLite file, or the database URL with its password redacted."""
        return self._rows.location

    @property
    def ledger(self) -> LedgerStore | None:
        """The ledger creations and revocations are logged in, if any."""
        return self._ledger

    # --- managing keys -------------------------------------------------------------

    def create(
        self,
        name: str,
        *,
        scopes: Collection[str],
        principal: str,
        expires_in: float | None = None,
    ) -> tuple[str, ApiKey]:
        """Create a key; returns its token (the only copy of the secret) and the key.

        InputError for a bad name, no or unknown scopes, a bad principal or a
        non-positive ``expires_in``; Conflict when the name is taken (revoked keys keep
        theirs); LedgerError when the ledger entry or the row cannot be written (then
        no key exists).
        """
        name = check_name(name)
        scope_set = check_scopes(scopes)
        principal = check_principal(principal)
        lifetime = check_expires_in(expires_in)
        now = self._clock()
        key_id, token = tokens.mint()
        key = ApiKey(
            name=name,
            key_id=key_id,
            scopes=scope_set,
            principal=principal,
            created_at=now,
            expires_at=None if lifetime is None else now + lifetime,
            revoked_at=None,
            last_used_at=None,
        )
        with self._lock:
            rows = self._usable()
            with rows.translate("creating a key"), rows.write() as write:
                self._insert(write, key, tokens.digest(token))
        log.info("API key %r created (id %s, scopes %s)", name, key_id, sorted(scope_set))
        return token, key

    def _insert(self, write: KeyWrites, key: ApiKey, digest: bytes) -> None:
        """Insert ``key``'s row, then log its creation (ledger-first: module docstring)."""
        name = key.name
        taken = write.by_name(name)
        if taken is not None:
            state = "revoked" if taken[db.POSITION["revoked_at"]] is not None else "active"
            raise Conflict(
                f"an API key named {name!r} already exists ({state}); names are "
                "never reused, choose another"
            )
        if write.key_id_taken(key.key_id):
            raise LedgerError("key id collision; try again")  # 2**-64: never in practice
        write.insert(
            (
                name,
                key.key_id,
                digest,
                " ".join(sorted(key.scopes)),
                key.principal,
                key.created_at,
                key.expires_at,
                None,
                None,
                None,
                None,
            )
        )
        index = self._log(key, "created", key.created_at)
        if index is not None:
            write.update(name, "created_index", index)

    def revoke(self, name: str) -> ApiKey:
        """Revoke a key at once; returns it. NotFound; Conflict when already revoked.

        With a ledger, a key revoked earlier whose ``apikey`` entry could not be written
        gets that entry now instead of a Conflict. LedgerError when the entry cannot be
        written: the key is revoked all the same (the message says so).
        """
        with self._lock:
            rows = self._usable()
            with rows.translate("revoking a key"), rows.write() as write:
                key, row = self._decode(name, write.by_name(name))
                revoked_index = row[db.POSITION["revoked_index"]]
                pending_entry = (
                    key.revoked_at is not None
                    and revoked_index is None
                    and self._ledger is not None
                )
                if key.revoked_at is not None and not pending_entry:
                    raise Conflict(
                        f"API key {name!r} was already revoked at {_when(key.revoked_at)}"
                    )
                if key.revoked_at is None:
                    key = replace(key, revoked_at=self._clock())
                    write.update(name, "revoked_at", key.revoked_at)
            self._cache.pop(key.key_id, None)
            if self._ledger is not None:
                self._log_revocation(key)
        log.info("API key %r revoked (id %s)", name, key.key_id)
        return key

    def _log_revocation(self, key: ApiKey) -> None:
        """Append the revocation's entry and note its index (the key is already revoked)."""
        at = key.revoked_at if key.revoked_at is not None else self._clock()
        try:
            index = self._log(key, "revoked", at)
        except LedgerError as exc:
            raise LedgerError(
                f"API key {key.name!r} IS revoked and no longer authenticates, but its "
                f"ledger entry could not be written ({exc}); run the revocation again once "
                "the ledger is available to write the entry"
            ) from None
        rows = self._usable()
        with rows.translate("noting the revocation's ledger entry"):
            rows.update(key.name, "revoked_index", index)

    def _log(self, key: ApiKey, event: str, at: float) -> int | None:
        if self._ledger is None:
            return None
        entry = apikey_entry(
            at,
            event=event,
            name=key.name,
            key_id=key.key_id,
            scopes=key.scopes,
            principal=key.principal,
            expires_at=key.expires_at,
        )
        return self._ledger.append(entry)

    # --- reading -----------------------------------------------------------------

    def get(self, name: str) -> ApiKey:
        """The key named ``name``; NotFound when there is none."""
        with self._lock:
            rows = self._usable()
            with rows.translate("reading a key"):
                return self._decode(name, rows.by_name(name))[0]

    def list(self) -> list[ApiKey]:
        """Every key, revoked and expired ones too, oldest first."""
        with self._lock:
            rows = self._usable()
            with rows.translate("listing keys"):
                found = rows.all()
        return [db.to_key(row, rows.location)[0] for row in found]

    def _decode(self, name: str, row: Row | None) -> tuple[ApiKey, Row]:
        if row is None:
            raise NotFound(
                f"no API key named {str(name)[:80]!r}; `clearance api-keys list` shows them"
            )
        return db.to_key(row, self._rows.location)[0], row

    # --- authenticating ---------------------------------------------------------------

    def authenticate(self, presented: str) -> ApiKey:
        """The key ``presented`` (``clk_<key_id>_<secret>``) belongs to, if it is valid now.

        Unauthenticated (one opaque message) when the token is malformed, unknown,
        wrong, expired or revoked; LedgerError when the store cannot be read.
        """
        key_id = tokens.parse(presented)
        well_formed = key_id is not None
        token = presented if well_formed else tokens.DECOY_TOKEN
        key_id = key_id if key_id is not None else tokens.DECOY_KEY_ID
        offered = tokens.digest(str(token))
        cached = self._cached(key_id)
        fresh = cached is None
        if cached is None:
            cached = self._fetch(key_id)
        expected = cached.digest if cached is not None else tokens.DECOY_DIGEST
        matches = hmac.compare_digest(offered, expected)
        if not (matches and well_formed and cached is not None):
            log.debug("API key refused: %s", "malformed" if not well_formed else "unknown or wrong")
            raise Unauthenticated(_OPAQUE)
        key = cached.key
        now = self._clock()
        status = key.status(now)
        if status != "active":
            log.debug("API key %r refused: %s", key.name, status)
            self._cache.pop(key_id, None)
            raise Unauthenticated(_OPAQUE)
        if fresh and self._ttl > 0:
            self._cache[key_id] = cached
        return self._touch(cached, now)

    def _cached(self, key_id: str) -> _Cached | None:
        found = self._cache.get(key_id)
        if found is None:
            return None
        if time.monotonic() - found.fetched >= self._ttl:
            self._cache.pop(key_id, None)
            return None
        return found

    def _fetch(self, key_id: str) -> _Cached | None:
        with self._lock:
            rows = self._usable()
            with rows.translate("authenticating"):
                row = rows.by_key_id(key_id)
        if row is None:
            return None
        key, digest = db.to_key(row, rows.location)
        return _Cached(key, digest, time.monotonic())

    def _touch(self, cached: _Cached, now: float) -> ApiKey:
        """Record ``last_used_at`` if it is a minute old (a failure is logged, not raised)."""
        key = cached.key
        last = max(key.last_used_at or float("-inf"), self._touched.get(key.key_id, float("-inf")))
        if now - last < TOUCH_INTERVAL:
            return key
        self._touched[key.key_id] = now
        try:
            with self._lock:
                rows = self._usable()
                with rows.translate("recording last use"):
                    # On the request path: wait briefly for another writer, then give up.
                    rows.touch(key.key_id, now, TOUCH_WAIT_MS / 1000)
        except LedgerError as exc:
            log.warning("last use of API key %r not recorded: %s", key.name, exc)
            return key
        key = replace(key, last_used_at=now)
        if self._cache.get(key.key_id) is cached:
            self._cache[key.key_id] = replace(cached, key=key)
        return key

    # --- lifecycle -------------------------------------------------------------------

    def _usable(self) -> KeyRows:
        if self._closed:
            raise LedgerError(f"API key store {self._rows.location} is closed")
        return self._rows

    def close(self) -> None:
        """Close the store; later calls raise LedgerError. Idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._cache.clear()
                self._rows.close()

    def __enter__(self) -> ApiKeyStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _when(moment: float) -> str:
    from clearance._internal.entries import timestamp

    return timestamp(moment)
