"""The seam between :class:`~clearance._internal.apikeys.store.ApiKeyStore` and its storage.

The store decides (names unique forever, ledger-first creation, effective-first
revocation, the cache, constant-time comparison); a :class:`KeyRows` only keeps rows,
in a SQLite file (:class:`~clearance._internal.apikeys.db.SQLiteKeyRows`) or a
PostgreSQL database (:class:`~clearance._internal.apikeys.pg_db.PostgresKeyRows`).
Rows are tuples in :data:`~clearance._internal.apikeys.db.COLUMNS` order, decoded by
:func:`~clearance._internal.apikeys.db.to_key` whatever the backend.

Invariants every implementation keeps:

* :meth:`KeyRows.write` is one transaction, serialized against every other ``write``
  on the same store from any process (a check-then-insert of a name cannot race), and
  committed durably when the block ends without an exception; rolled back otherwise.
* :meth:`KeyRows.touch` waits for other writers at most ``wait`` seconds, then fails:
  it runs on the request path.
* Backend exceptions leave only through :meth:`KeyRows.translate`, as
  :class:`~clearance.errors.LedgerError` naming the store and what was being done;
  any other exception raised inside it (the store's Conflict, NotFound) passes through.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Literal, Protocol

Row = tuple[object, ...]
Column = Literal["revoked_at", "last_used_at", "created_index", "revoked_index"]
"""The columns the store updates after a row is inserted."""


class KeyWrites(Protocol):
    """The statements of one :meth:`KeyRows.write` transaction."""

    def by_name(self, name: str) -> Row | None:
        """The row of the key named ``name``, if any."""
        ...

    def key_id_taken(self, key_id: str) -> bool:
        """Whether some row (revoked or not) has ``key_id``."""
        ...

    def insert(self, row: Row) -> None:
        """Insert a new row (values in ``COLUMNS`` order)."""
        ...

    def update(self, name: str, column: Column, value: float | None) -> None:
        """Set one column of the row named ``name``."""
        ...


class KeyRows(Protocol):
    """Where an :class:`~clearance._internal.apikeys.store.ApiKeyStore` keeps its rows."""

    @property
    def location(self) -> str:
        """What messages name: the file, or the database URL with its password redacted."""
        ...

    def translate(self, doing: str) -> AbstractContextManager[None]:
        """Turn a backend failure while ``doing`` into a LedgerError."""
        ...

    def write(self) -> AbstractContextManager[KeyWrites]:
        """A serialized write transaction (see the module docstring)."""
        ...

    def by_name(self, name: str) -> Row | None:
        """The row of the key named ``name``, if any."""
        ...

    def by_key_id(self, key_id: str) -> Row | None:
        """The row whose public id is ``key_id``, if any."""
        ...

    def all(self) -> list[Row]:
        """Every row, oldest first (by creation time, then name)."""
        ...

    def update(self, name: str, column: Column, value: float | None) -> None:
        """Set one column of the row named ``name``, in a transaction of its own."""
        ...

    def touch(self, key_id: str, now: float, wait: float) -> None:
        """Set ``last_used_at`` of ``key_id``'s row, waiting at most ``wait`` seconds."""
        ...

    def close(self) -> None:
        """Release the connection(s)."""
        ...
