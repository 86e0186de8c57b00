"""The storage protocol every ledger backend implements (SQLite, PostgreSQL).

Invariants every implementation keeps:

* Entries are append-only. Leaf ``i`` holds the RFC 8785 canonical bytes of the
  ``i``-th appended entry; there is no code path that updates or deletes one.
* :meth:`LedgerStore.append` returns only after the entry is committed under the
  store's durability mode (``durable``: fsync on every commit; ``relaxed``:
  OS-buffered, survives a killed process but not a power cut). Concurrent
  appends share one transaction and one fsync (group commit).
* The tree over leaves ``[0, n)`` is RFC 9162 §2.1; proofs follow §2.1.3-2.1.4.
* Checkpoints only grow, and a new one is signed only after checking it is
  consistent with the previous one (C2SP tlog-checkpoint; "a log never signs
  two checkpoints that are inconsistent").
* Every failure is a :class:`~clearance.errors.LedgerError`; no sqlite3 or
  psycopg exception escapes.
* A store opens only on a log that extends its anchored checkpoints
  (:mod:`clearance._internal.ledger.anchor`; docs/design.md §4 rule 12). Its in-memory tree is the
  one proven then, extended only by its own commits (or, after a failed commit, by
  another writer's rows proven to extend it: :attr:`LedgerStore.generation`).
  Reads return stored bytes; :meth:`LedgerStore.prove` checks them against that
  tree (RFC 9162 §2.1.3), so a decision never rests on bytes edited after open.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

ENTRY_TYPES = (
    "policy",
    "decision",
    "approval",
    "execution",
    "key",
    "trace",
    "provenance",
    "apikey",
)
"""Entry ``type`` values (docs/design.md §5); ``trace`` records a mandate, ``provenance`` the
fingerprints of values a trace's marked tools returned, ``apikey`` an API key created or
revoked (never its secret)."""

_REF_FIELDS = {"policy": "digest", "key": "kid", "trace": "trace_id", "apikey": "name"}


def index_ref(entry: Mapping[str, Any]) -> str | None:
    """The lookup key a store indexes an entry under.

    ``request_id`` for decision, approval, execution and provenance entries; ``digest`` for
    policy entries; ``kid`` for key entries; ``trace_id`` for trace entries; ``name`` for
    apikey entries (a key's history is ``find("apikey", name)``). Keep in step with
    :data:`clearance._internal.ledger.sqlite_rows._REF_PATH` and
    :data:`clearance._internal.ledger.postgres_rows._REF_KEY`, the same mapping in SQL.
    """
    kind = entry.get("type")
    field = _REF_FIELDS.get(str(kind), "request_id")
    value = entry.get(field)
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class StoredEntry:
    """One leaf: its index, its canonical bytes and the parsed entry."""

    index: int
    leaf: bytes
    entry: Mapping[str, Any]


@dataclass(frozen=True)
class Checkpoint:
    """A signed C2SP tlog-checkpoint: ``note`` is the full signed-note text."""

    origin: str
    size: int
    root: bytes
    note: str


class LedgerStore(Protocol):
    """What the gate, the CLI and the auditors need from a ledger backend."""

    @property
    def origin(self) -> str:
        """The log's origin line (C2SP tlog-checkpoint), also its key name."""
        ...

    @property
    def vkey(self) -> str:
        """The C2SP verifier key of the log's checkpoint signer."""
        ...

    def append(self, entry: Mapping[str, Any], *, sync: bool = True) -> int:
        """Append one entry durably and return its leaf index.

        ``sync`` False: the entry is committed (it survives the process being killed)
        when this returns, but its fsync may trail by a bounded delay the store
        documents. Outcomes recorded after a body ran use it; decisions never do.
        """
        ...

    def append_many(self, entries: Sequence[Mapping[str, Any]]) -> list[int]:
        """Append several entries in one commit; indices are consecutive."""
        ...

    def size(self) -> int:
        """The number of committed entries."""
        ...

    def get(self, index: int) -> StoredEntry:
        """The entry at ``index``; LedgerError when out of range."""
        ...

    def scan(self, start: int = 0, stop: int | None = None) -> Iterator[StoredEntry]:
        """Entries with ``start <= index < stop`` in index order."""
        ...

    def find(self, kind: str, ref: str) -> list[StoredEntry]:
        """Entries of ``type == kind`` whose :func:`index_ref` is ``ref``, in index order."""
        ...

    def trace(self, trace_id: str) -> list[StoredEntry]:
        """Every entry whose ``trace_id`` is ``trace_id``, in index order."""
        ...

    def prove(self, stored: StoredEntry) -> StoredEntry:
        """Return ``stored`` once its leaf is proven at its index in the store's verified tree.

        RFC 9162 §2.1.3: the leaf hash of ``stored.leaf`` and an inclusion proof must
        lead to the in-memory root; TamperError(index=...) otherwise. O(log n).
        """
        ...

    def last_in_trace(self, trace_id: str, kind: str) -> StoredEntry | None:
        """The newest entry of type ``kind`` in trace ``trace_id``, proven (see :meth:`prove`).

        TamperError when the row found does not really have that type and trace id.
        """
        ...

    @property
    def generation(self) -> int:
        """Rises each time the store reloads its tree from the file after a failed commit.

        A reload is evidence that another writer (or someone else) touched the file:
        anything a caller derived from earlier reads (a cache of trace facts) is stale
        once it changes.
        """
        ...

    def root(self, size: int | None = None) -> bytes:
        """The RFC 9162 root hash of the first ``size`` leaves (default: all)."""
        ...

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 §2.1.3 inclusion proof of leaf ``index`` in the tree of ``size``."""
        ...

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """RFC 9162 §2.1.4 consistency proof from ``size1`` to ``size2``."""
        ...

    def latest_checkpoint(self) -> Checkpoint | None:
        """The newest signed checkpoint, if any."""
        ...

    def checkpoint_covering(self, index: int, timeout: float = 2.0) -> Checkpoint:
        """A signed checkpoint whose size exceeds ``index``, waiting up to ``timeout`` seconds."""
        ...

    def checkpoints(self) -> Iterator[Checkpoint]:
        """Every stored checkpoint, oldest first."""
        ...

    def close(self) -> None:
        """Flush pending work (a final checkpoint) and release the store."""
        ...

    def __enter__(self) -> LedgerStore:
        """Use the store as a context manager that closes it."""
        ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the store."""
        ...
