"""An in-memory index of every approval in a ledger, for listing by status without scans.

Built on first use from the ledger's ``approval`` entries only (one pass over those
rows through the store's ``(type, ref)`` index, never over the whole log), then kept up
to date incrementally: each :meth:`ApprovalIndex.sync` reads only the ``approval``
entries appended since the last one, whoever appended them. For a SQLite ledger,
``sync`` first adopts entries another process committed to the file
(:meth:`~clearance._internal.ledger.sqlite.SQLiteLedger.refresh`), so an approval voted
on with ``clearance approvals approve`` while a server runs shows up within one sync.

Invariants:

* The index is a *hint*: it is folded from entries as read, not proven, and is used only
  to find an approval's request id and to pick candidates for a listing. Everything
  returned to a caller is read again and proven (:mod:`clearance._internal.approvals.book`).
* Approvals are ordered by the index of their ``pending`` entry; entries are applied in
  log order, exactly as :class:`~clearance._internal.approvals.fold.Fold` prescribes.
* A malformed ``pending`` entry is skipped here (the proven read reports it).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from clearance._internal.approvals.fold import Fold, terms_of
from clearance._internal.approvals.model import Status
from clearance._internal.ledger.store import LedgerStore, StoredEntry

__all__ = ["ApprovalIndex", "RefreshingLedger", "TypedLedger"]


@runtime_checkable
class RefreshingLedger(Protocol):
    """A ledger that can adopt entries another process appended (the SQLite ledger)."""

    def refresh(self) -> bool:
        """Adopt other writers' committed entries; True when there were any."""
        ...


@runtime_checkable
class TypedLedger(Protocol):
    """A ledger that reads the entries of one type without scanning the others."""

    def of_type(self, kind: str, start: int = 0) -> Iterator[StoredEntry]:
        """Committed entries of type ``kind`` from index ``start`` on, in order."""
        ...


class ApprovalIndex:
    """Every approval of one ledger: its terms and unproven state (see the module docstring)."""

    def __init__(self, ledger: LedgerStore) -> None:
        """Index ``ledger`` lazily: nothing is read before the first :meth:`sync`."""
        self._ledger = ledger
        self._lock = threading.Lock()
        self._upto = 0
        self._folds: dict[str, Fold] = {}
        self._order: list[str] = []
        self._position: dict[str, int] = {}

    def sync(self) -> None:
        """Adopt other processes' entries (when the ledger can) and index new approval entries."""
        ledger = self._ledger
        if isinstance(ledger, RefreshingLedger):
            ledger.refresh()
        with self._lock:
            size = ledger.size()
            if size <= self._upto:
                return
            for stored in self._rows(self._upto, size):
                self._apply(stored)
            self._upto = size

    def _rows(self, start: int, stop: int) -> Iterator[StoredEntry]:
        ledger = self._ledger
        if isinstance(ledger, TypedLedger):
            for stored in ledger.of_type("approval", start):
                if stored.index >= stop:
                    return
                yield stored
            return
        for stored in ledger.scan(start, stop):
            if stored.entry.get("type") == "approval":
                yield stored

    def _apply(self, stored: StoredEntry) -> None:
        entry, index = stored.entry, stored.index
        approval_id = entry.get("approval_id")
        if not isinstance(approval_id, str):
            return
        fold = self._folds.get(approval_id)
        if fold is not None:
            fold.apply(entry, index)
            return
        if entry.get("status") != "pending":
            return
        try:
            terms = terms_of(entry, index)
        except ValueError:
            return
        self._folds[approval_id] = Fold(terms)
        self._position[approval_id] = len(self._order)
        self._order.append(approval_id)

    def request_of(self, approval_id: str) -> str | None:
        """The request id of ``approval_id``, or None when the index has no such approval."""
        with self._lock:
            fold = self._folds.get(approval_id)
            return None if fold is None else fold.terms.request_id

    def knows(self, approval_id: str) -> bool:
        """Whether ``approval_id`` is an indexed approval."""
        with self._lock:
            return approval_id in self._folds

    def newest_first(
        self, now: float, *, status: Status | None = None, after: str | None = None
    ) -> list[str]:
        """Approval ids, newest first, after the one named ``after``, whose hinted status at
        ``now`` is ``status`` (any status when None)."""
        with self._lock:
            start = len(self._order) - 1
            if after is not None:
                start = self._position[after] - 1
            return [
                approval_id
                for approval_id in (self._order[i] for i in range(start, -1, -1))
                if status is None or self._folds[approval_id].status_at(now) == status
            ]

    def due(self, now: float) -> list[str]:
        """Ids of approvals still pending in their entries but past ``expires_at`` at ``now``."""
        with self._lock:
            return [
                approval_id
                for approval_id, fold in self._folds.items()
                if fold.state == "pending" and now >= fold.terms.expires_at
            ]
