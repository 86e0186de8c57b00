"""Full audit of a ledger (a SQLite file or a PostgreSQL database), and consistency with a
checkpoint saved earlier.

:func:`verify` trusts nothing stored. In one pass over a read snapshot (an
:class:`AuditSource`) it

1. checks that entry indices run ``0, 1, 2, ...`` without a gap;
2. checks that each leaf is the RFC 8785 canonical JSON of an object with
   ``type``, ``v`` and ``at`` (docs/design.md §5);
3. recomputes every leaf hash from the leaf bytes (RFC 9162 §2.1.1) and compares
   it with the stored one;
4. checks every stored interior node (:mod:`.sqlite_db`: the hashes a row stores
   after its leaf hash) against the tree recomputed from the leaves, reporting the
   row that holds a wrong hash. A change seen again from above (a parent that still
   matches its stored children) is not reported twice, so the first reported row
   is the first row whose bytes were altered;
5. recomputes the tree from the leaf bytes alone, and at each stored checkpoint's
   size compares the recomputed root with the signed root, after checking the
   checkpoint's C2SP signed-note signature with the trusted key;
6. proves every checkpoint consistent with the one before it (RFC 9162 §2.1.4);
7. recomputes every derived column (``type``, ``ref`` via
   :func:`~clearance._internal.ledger.store.index_ref`, ``trace_id``) from the leaf: no hash
   covers them, and a cleared ``trace_id`` hides an entry from its trace;
8. given the log's anchor (:mod:`.anchor`), checks every anchored file as opening a
   store does (:mod:`.sqlite_trust`): present whenever the ledger holds a checkpoint,
   signed by the log's key, no larger than the ledger, equal to the root recomputed
   from the leaves at its size, and still stored as a checkpoint row;
9. given a grace period and the current time, refuses entries that no signed
   checkpoint covers and that are older than the grace (:func:`.anchor.stale_problem`).

It reads and never writes: not the ledger, not the anchor. Crafted rows (TEXT
instead of BLOB, JSON that is not an object or is nested too deeply, bytes that are
not UTF-8) are reported at their index like any other problem, never raised.

It reports the *first* leaf index affected. A difference located to one leaf or
node (steps 1-4) is exact; a signed root that no longer matches while every row is
locally consistent means the log was rewritten and re-hashed wholesale: the report
then names the first index the earlier, matching checkpoint does not cover.

Leaves are parsed and checked by :mod:`.leaves`. Proving the log extends a
checkpoint the user saved earlier needs no full pass: :mod:`.consistency`.
"""

from __future__ import annotations

import hashlib
import itertools
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from clearance._internal.ledger import merkle
from clearance._internal.ledger.anchor import CheckpointAnchor, stale_problem
from clearance._internal.ledger.checkpoint import NoteVerifier, parse_checkpoint
from clearance._internal.ledger.layout import HASH, column_problem, stored_type
from clearance._internal.ledger.leaves import leaf_problem
from clearance._internal.ledger.sqlite import SQLiteLedger
from clearance._internal.ledger.sqlite_db import connect, read_meta, translate
from clearance._internal.ledger.sqlite_reader import range_hashes
from clearance._internal.ledger.store import Checkpoint
from clearance._internal.postgres import is_postgres_url
from clearance.errors import InputError, LedgerError, ProofError, TamperError

if TYPE_CHECKING:
    from clearance._internal.ledger.postgres import PostgresLedger

_MAX_PROBLEMS = 50


@dataclass(frozen=True)
class AuditReport:
    """The outcome of :func:`verify`.

    ``first_bad_index`` is the lowest leaf index affected (None when ``ok``, or when a
    problem has no leaf index, such as a checkpoint signed by another key);
    ``message`` describes that first problem; ``problems`` lists up to 50.
    ``key_from_store`` is True when no trusted vkey was given and the ledger's own
    recorded key was used, which proves integrity only against accidents.
    ``anchors`` counts the anchored files (anchor and witnesses) the ledger extends.
    """

    ok: bool
    size: int
    checkpoints: int
    first_bad_index: int | None
    message: str
    problems: tuple[str, ...] = field(default=())
    key_from_store: bool = False
    anchors: int = 0

    def raise_for_problems(self) -> None:
        """Raise TamperError(index=first_bad_index) unless the ledger verified."""
        if not self.ok:
            raise TamperError(self.message, index=self.first_bad_index)


class _Findings:
    """Collects problems; exact ones (located to a row) outrank bounds from checkpoints."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.count = 0
        self.best: tuple[int, int, str] | None = None  # (rank, index, message)
        self.unlocated: str | None = None

    def add(self, message: str, index: int | None, *, exact: bool = True) -> None:
        """Record a problem at leaf ``index`` (None: not tied to one leaf)."""
        self.count += 1
        if len(self.messages) < _MAX_PROBLEMS:
            self.messages.append(message)
        if index is None:
            self.unlocated = self.unlocated or message
            return
        key = (0 if exact else 1, index, message)
        if self.best is None or key[:2] < self.best[:2]:
            self.best = key


class AuditSource(Protocol):
    """One read snapshot of a stored log, as the audit reads it (SQLite or PostgreSQL)."""

    @property
    def where(self) -> str:
        """The log's location for messages (a path, or a URL without its password)."""
        ...

    def meta(self) -> dict[str, str]:
        """The ``meta`` table (empty when the database holds no ledger)."""
        ...

    def all_checkpoint_rows(self) -> list[tuple[object, object, object]]:
        """Every ``(size, root, note)`` checkpoint row, by size."""
        ...

    def rows(self) -> Iterable[tuple[object, ...]]:
        """Every ``(idx, hashes, type, ref, trace_id, leaf)`` entry row, by index, streamed."""
        ...

    def range_hashes(self, ranges: Sequence[merkle.LeafRange]) -> list[bytes]:
        """The stored hashes of leaf ranges (one query); TamperError when a node is missing."""
        ...

    def leaf(self, index: int) -> object | None:
        """The stored leaf of entry ``index`` (None when there is no such row)."""
        ...


class _SQLiteSource:
    """:class:`AuditSource` over a read transaction of a SQLite file."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.where = str(path)

    def meta(self) -> dict[str, str]:
        return read_meta(self._conn)

    def all_checkpoint_rows(self) -> list[tuple[object, object, object]]:
        rows = self._conn.execute("SELECT size, root, note FROM checkpoints ORDER BY size")
        return [(size, root, note) for size, root, note in rows]

    def rows(self) -> Iterable[tuple[object, ...]]:
        return self._conn.execute(
            "SELECT idx, hashes, type, ref, trace_id, leaf FROM entries ORDER BY idx"
        )

    def range_hashes(self, ranges: Sequence[merkle.LeafRange]) -> list[bytes]:
        return range_hashes(self._conn, ranges)

    def leaf(self, index: int) -> object | None:
        row = self._conn.execute("SELECT leaf FROM entries WHERE idx = ?", (index,)).fetchone()
        return None if row is None else row[0]


def verify(
    source: SQLiteLedger | PostgresLedger | Path | str,
    *,
    vkey: str | None = None,
    origin: str | None = None,
    anchor: CheckpointAnchor | None = None,
    grace: float | None = None,
    now: float | None = None,
) -> AuditReport:
    """Audit a whole ledger (see the module docstring); never raises on tampering.

    ``source`` is an open store (its key and origin are then trusted), the path of a
    SQLite file, or a ``postgresql://`` URL (read in one REPEATABLE READ snapshot). For a
    path or URL, pass the log's trusted ``vkey``; without one the key recorded in the
    database is used and the report says so. ``anchor`` adds the anchor and witness
    checks; ``grace`` (seconds) with ``now`` (POSIX time) the grace rule. Raises
    LedgerError when the file cannot be read and InputError for a malformed ``vkey``
    or a grace without a time.
    """
    if grace is not None and (now is None or not grace > 0):
        raise InputError("a grace period must be positive and needs the current time")
    if isinstance(source, SQLiteLedger):
        path, vkey, origin = source.path, vkey or source.vkey, origin or source.origin
    elif isinstance(source, Path) or (isinstance(source, str) and not is_postgres_url(source)):
        path = Path(source)
    else:
        from clearance._internal.ledger.postgres_db import snapshot

        if isinstance(source, str):
            url = source
        else:
            url, vkey, origin = source.url, vkey or source.vkey, origin or source.origin
        with snapshot(url, "auditing the ledger") as pg:
            return _audit(pg, vkey, origin, anchor, (grace, now))
    if not path.exists():
        raise LedgerError(f"no ledger at {path}")
    with translate(path, "auditing the ledger"):
        conn = connect(path, read_only=True)
        try:
            conn.execute("BEGIN")  # one snapshot for the whole pass (WAL readers don't block)
            return _audit(_SQLiteSource(conn, path), vkey, origin, anchor, (grace, now))
        finally:
            conn.close()


def _audit(
    source: AuditSource,
    vkey: str | None,
    origin: str | None,
    anchor: CheckpointAnchor | None,
    grace: tuple[float | None, float | None],
) -> AuditReport:
    path = source.where
    meta = source.meta()
    if not meta:
        raise LedgerError(f"{path} is not a clearance ledger (it has no meta table)")
    found = _Findings()
    origin = origin or meta.get("origin", "")
    if meta.get("origin") != origin:
        found.add(f"ledger records origin {meta.get('origin')!r}, expected {origin!r}", None)
    key_from_store = vkey is None
    try:
        verifier = NoteVerifier.from_vkey(vkey or meta.get("vkey", ""))
    except ProofError as exc:
        raise InputError(f"cannot audit {path}: bad verifier key ({exc})") from exc

    rows = source.all_checkpoint_rows()
    signed: list[Checkpoint] = []
    for size, root, note in rows:
        if not isinstance(root, bytes) or not isinstance(note, str):
            found.add(
                f"checkpoint row at size {size} stores a {stored_type(root)} root and a "
                f"{stored_type(note)} note, not a BLOB and TEXT",
                None,
            )
            continue
        try:
            cp = parse_checkpoint(note, verifier, origin=origin)
        except ProofError as exc:
            found.add(f"checkpoint at size {size} does not verify: {exc}", None)
            continue
        if cp.size != size or cp.root != root:
            found.add(f"checkpoint row at size {size} disagrees with its signed note", None)
            continue
        signed.append(cp)

    anchored = _read_anchors(anchor, verifier, origin, bool(rows), found)
    roots = [(cp, "the signed root") for cp in signed] + anchored
    size = _Walker(source, sorted(roots, key=lambda pair: pair[0].size), found).run()
    for cp in signed:
        if cp.size > size:
            found.add(
                f"checkpoint at size {cp.size} was signed but the ledger holds {size} entries: "
                f"entries from {size} on were removed",
                size,
            )
    _check_anchored(anchored, {cp.size: cp.root for cp in signed}, size, found)
    _check_chain(source, [cp for cp in signed if cp.size <= size], found)
    grace_seconds, now = grace
    if grace_seconds is not None and now is not None:
        covered = max((cp.size for cp in signed if cp.size <= size), default=0)
        _check_grace(source, covered, size, now, grace_seconds, found)

    if found.count == 0:
        message = f"ledger verified: {size} entries, {len(signed)} checkpoints"
        return AuditReport(
            True, size, len(signed), None, message, (), key_from_store, len(anchored)
        )
    first = found.best[1] if found.best else None
    message = found.best[2] if found.best else (found.unlocated or "ledger failed verification")
    return AuditReport(
        False, size, len(signed), first, message, tuple(found.messages), key_from_store
    )


def _read_anchors(
    anchor: CheckpointAnchor | None,
    verifier: NoteVerifier,
    origin: str,
    has_checkpoints: bool,
    found: _Findings,
) -> list[tuple[Checkpoint, str]]:
    """The verified anchored checkpoints, each with a label; problems go to ``found``."""
    anchored: list[tuple[Checkpoint, str]] = []
    for file in anchor.files if anchor is not None else ():
        try:
            cp = file.read(verifier, origin)
        except LedgerError as exc:  # TamperError included: unreadable is not verified
            found.add(str(exc), None)
            continue
        if cp is None:
            if has_checkpoints:
                found.add(str(file.missing()), None)
            continue
        anchored.append((cp, f"the checkpoint anchored in {file.describe()}"))
    return anchored


def _check_anchored(
    anchored: list[tuple[Checkpoint, str]],
    stored: dict[int, bytes],
    size: int,
    found: _Findings,
) -> None:
    """Anchored checkpoints the ledger is too short for, or no longer stores as a row.

    (Their roots were compared with the recomputed tree during the walk.)
    """
    for cp, label in anchored:
        if cp.size > size:
            found.add(
                f"{label} has size {cp.size} but the ledger holds {size} entries: entries "
                f"from {size} on were removed, or the ledger was replaced by an older copy",
                size,
            )
        elif stored.get(cp.size) != cp.root:
            found.add(
                f"the ledger holds no valid checkpoint row of size {cp.size} with the root "
                f"{label} has: signed checkpoints were deleted from the ledger",
                None,
            )


def _check_grace(
    source: AuditSource, covered: int, size: int, now: float, grace: float, found: _Findings
) -> None:
    """Entries from ``covered`` on have no signed checkpoint: the first must be recent."""
    if size <= covered:
        return
    leaf = source.leaf(covered)
    value, _ = leaf_problem(leaf) if isinstance(leaf, bytes) else (None, None)
    if not isinstance(value, dict):
        return  # already reported by the walk
    problem = stale_problem(covered, value, now, grace)
    if problem is not None:
        found.add(problem, covered)


class _Walker:
    """One streaming pass over the entries, keeping two right edges of the tree."""

    def __init__(self, source: AuditSource, roots: list[tuple[Checkpoint, str]], found: _Findings):
        """Walk ``source``'s entries, comparing recomputed roots with ``roots`` (size order)."""
        self._source = source
        self._found = found
        # The right edge: (level, hash recomputed from leaf bytes, hash stored in the file).
        self._edge: list[tuple[int, bytes, bytes]] = []
        self._pending = iter(roots)
        self._next_cp = next(self._pending, None)
        self._last_good = 0  # size of the last checkpoint whose root matched
        self.position = 0

    def run(self) -> int:
        """Walk the whole log; returns the number of leaf positions seen."""
        found = self._found
        for idx, hashes, kind, ref, trace_id, raw in self._source.rows():
            position = self.position
            if idx != position:  # the rows from `position` to idx - 1 were removed
                found.add(f"entry {position} is missing (the next stored entry is {idx})", position)
                return position  # the tree cannot be rebuilt past a hole
            leaf = self._blob(position, "leaf", raw)
            value, problem = leaf_problem(leaf)
            if problem is not None:
                found.add(f"entry {position} {problem}", position)
            if isinstance(value, dict):
                columns = column_problem(position, value, (kind, ref, trace_id))
                if columns is not None:
                    found.add(columns, position)
            self._push(leaf, self._blob(position, "hashes", hashes))
        return self.position

    def _blob(self, position: int, column: str, value: object) -> bytes:
        """``value`` as stored bytes; another storage class is reported (and hashed as text)."""
        if isinstance(value, bytes):
            return value
        self._found.add(
            f"entry {position} stores its {column} as {stored_type(value)}, not a BLOB", position
        )
        return str(value).encode("utf-8", "surrogatepass") if value is not None else b""

    def _push(self, leaf: bytes, hashes: bytes) -> None:
        """Add the next leaf to the right edge, checking every hash its row stores.

        A stored hash that differs from the recomputed one is reported at this row
        (where the bytes live) unless a child already differed and the stored hash
        still matches its stored children: that is the same change seen from above.
        """
        sha256 = hashlib.sha256
        found, edge, position = self._found, self._edge, self.position
        merges = (~position & (position + 1)).bit_length() - 1  # trailing one bits
        width = HASH * (merges + 1)
        if len(hashes) != width:
            found.add(
                f"entry {position} stores {len(hashes)} bytes of hashes, expected {width}",
                position,
            )
            hashes = hashes[:width].ljust(width, b"\0")
        node = sha256(b"\x00" + leaf).digest()
        kept = hashes[:HASH]
        if kept != node:
            found.add(f"entry {position} does not match its stored leaf hash", position)
        for level in range(1, merges + 1):
            _, left, left_kept = edge.pop()
            children_ok = left == left_kept and node == kept
            local = sha256(b"\x01" + left_kept + kept).digest()
            node = sha256(b"\x01" + left + node).digest()
            kept = hashes[HASH * level : HASH * (level + 1)]
            if kept != node and (children_ok or kept != local):
                found.add(
                    f"entry {position} stores a wrong hash for node (level {level}, "
                    f"index {position >> level})",
                    position,
                )
        edge.append((merges, node, kept))
        self.position = position + 1
        while self._next_cp is not None and self._next_cp[0].size <= self.position:
            self._check_root(*self._next_cp)
            self._next_cp = next(self._pending, None)

    def _check_root(self, cp: Checkpoint, label: str) -> None:
        if merkle.fold_range([(level, node) for level, node, _ in self._edge]) == cp.root:
            self._last_good = cp.size
            return
        self._found.add(
            f"{label} at size {cp.size} differs from the root recomputed from the "
            f"entries: entries from index {self._last_good} on were rewritten and re-hashed",
            self._last_good,
            exact=False,
        )


def _check_chain(source: AuditSource, signed: list[Checkpoint], found: _Findings) -> None:
    """RFC 9162 §2.1.4: each checkpoint must be consistent with the one before it."""
    for old, new in itertools.pairwise(signed):
        if old.size == 0:
            continue
        try:
            proof = source.range_hashes(merkle.consistency_ranges(old.size, new.size))
            merkle.verify_consistency(old.size, new.size, old.root, new.root, proof)
        except TamperError as exc:
            found.add(str(exc), exc.index)
        except ProofError as exc:
            found.add(
                f"checkpoints at sizes {old.size} and {new.size} are inconsistent: {exc}",
                old.size,
                exact=False,
            )
