"""The read half of a ledger store: every read bounded by the tree the store has proven.

A store mixes :class:`BoundedReads` in and provides ``_reads`` (a :class:`TreeReader` over
its database), ``_tree`` (the :class:`~clearance._internal.ledger.layout.Tree` it proved)
and ``_check_usable``.

Invariants:

* No read reaches past the proven size: rows another process committed since stay
  invisible until the store adopted them, proven.
* :meth:`BoundedReads.prove` and :meth:`BoundedReads.last_in_trace` prove a leaf at its
  index in the proven tree (RFC 9162 §2.1.3) before it is relied on; other reads return
  stored bytes as they are (the readers check what no hash covers).
* Out-of-range arguments are a :class:`~clearance.errors.LedgerError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from clearance._internal.ledger import trust
from clearance._internal.ledger.layout import Tree
from clearance._internal.ledger.store import StoredEntry
from clearance.errors import LedgerError


class TreeReader(Protocol):
    """A store's reads at tree sizes the caller knows to be committed."""

    def entry(self, index: int) -> StoredEntry:
        """Entry ``index``."""
        ...

    def scan(self, start: int, stop: int) -> Iterator[StoredEntry]:
        """Entries ``start <= index < stop``, in order."""
        ...

    def find(self, kind: str, ref: str, size: int) -> list[StoredEntry]:
        """Entries below ``size`` of type ``kind`` indexed under ``ref``, in order."""
        ...

    def trace(self, trace_id: str, size: int) -> list[StoredEntry]:
        """Entries below ``size`` of trace ``trace_id``, in order."""
        ...

    def of_type(self, kind: str, start: int, stop: int) -> Iterator[StoredEntry]:
        """Entries ``start <= index < stop`` of type ``kind`` with a lookup ref, in order."""
        ...

    def last_in_trace(self, trace_id: str, kind: str, size: int) -> StoredEntry | None:
        """The newest entry below ``size`` of type ``kind`` in trace ``trace_id``."""
        ...

    def root(self, size: int) -> bytes:
        """RFC 9162 §2.1.1 root of the first ``size`` leaves."""
        ...

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 §2.1.3 inclusion proof."""
        ...

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """RFC 9162 §2.1.4 consistency proof."""
        ...


class BoundedReads:
    """:class:`~clearance._internal.ledger.store.LedgerStore`'s reads (module docstring)."""

    _reads: TreeReader
    _tree: Tree
    _where: str

    def _check_usable(self) -> None:
        raise NotImplementedError

    def size(self) -> int:
        """The number of entries this store has proven (its own commits and adopted ones)."""
        return self._tree.size

    def _check_size(self, size: int) -> None:
        self._check_usable()
        current = self._tree.size
        if not 0 <= size <= current:
            raise LedgerError(f"no tree of size {size}: the ledger has {current} entries")

    def get(self, index: int) -> StoredEntry:
        """The entry at ``index``; LedgerError when out of range."""
        self._check_usable()
        size = self._tree.size
        if not 0 <= index < size:
            raise LedgerError(f"no entry {index}: the ledger has {size} entries")
        return self._reads.entry(index)

    def scan(self, start: int = 0, stop: int | None = None) -> Iterator[StoredEntry]:
        """Entries with ``start <= index < stop`` in index order (read in chunks)."""
        self._check_usable()
        if start < 0:
            raise LedgerError(f"scan start must be non-negative, got {start}")
        size = self._tree.size
        return self._reads.scan(start, size if stop is None else min(stop, size))

    def find(self, kind: str, ref: str) -> list[StoredEntry]:
        """Entries of ``type == kind`` whose :func:`index_ref` is ``ref``, in index order."""
        self._check_usable()
        return self._reads.find(kind, ref, self._tree.size)

    def trace(self, trace_id: str) -> list[StoredEntry]:
        """Every entry whose ``trace_id`` is ``trace_id``, in index order."""
        self._check_usable()
        return self._reads.trace(trace_id, self._tree.size)

    def of_type(self, kind: str, start: int = 0) -> Iterator[StoredEntry]:
        """Entries of type ``kind`` (with a lookup ref) from index ``start`` on; not proven."""
        self._check_usable()
        return self._reads.of_type(kind, max(start, 0), self._tree.size)

    def prove(self, stored: StoredEntry) -> StoredEntry:
        """Return ``stored`` once its leaf is proven at its index in the proven tree.

        RFC 9162 §2.1.3 against the in-memory tree (proven at open, extended by this
        store's commits and by rows proven to extend it); one query, O(log n) hashes.
        TamperError(index=stored.index) otherwise.
        """
        self._check_usable()
        return trust.prove_stored(self._reads.inclusion_proof, self._where, stored, self._tree)

    def last_in_trace(self, trace_id: str, kind: str) -> StoredEntry | None:
        """The newest entry of type ``kind`` in trace ``trace_id``, proven (:meth:`prove`).

        TamperError when the row's leaf does not have that type and trace id (an edited
        derived column) or does not prove.
        """
        self._check_usable()
        tree = self._tree
        found = self._reads.last_in_trace(trace_id, kind, tree.size)
        if found is None:
            return None
        return trust.prove_stored(self._reads.inclusion_proof, self._where, found, tree)

    def root(self, size: int | None = None) -> bytes:
        """The RFC 9162 root hash of the first ``size`` leaves (default: all)."""
        self._check_usable()
        tree = self._tree
        if size is None or size == tree.size:
            return tree.root
        self._check_size(size)
        return self._reads.root(size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 §2.1.3 inclusion proof of leaf ``index`` in the tree of ``size``."""
        self._check_size(size)
        if not 0 <= index < size:
            raise LedgerError(f"leaf index {index} is outside a tree of size {size}")
        return self._reads.inclusion_proof(index, size)

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """RFC 9162 §2.1.4 consistency proof from ``size1`` to ``size2``."""
        self._check_size(size2)
        if not 0 < size1 <= size2:
            raise LedgerError(f"no consistency proof from size {size1} to size {size2}")
        return self._reads.consistency_proof(size1, size2)
