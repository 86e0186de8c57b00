"""What a stored log must prove before a store trusts it, whatever the database.

A store (:mod:`.sqlite`, :mod:`.postgres`) runs these checks when it opens a log and, for
the rows another writer added, when it adopts them. Together with the store's own check
of the derived columns they are fail-closed rule 12 (docs/design.md §4): a log that does
not extend the last anchored checkpoint (rolled back, rewritten and re-hashed, with
deleted checkpoints) is refused with a :class:`~clearance.errors.TamperError` naming
the problem and, where known, the first affected leaf index.

1. The newest stored checkpoint verifies with the log's key (C2SP signed-note) and the
   stored tree extends it (RFC 9162 §2.1.4): :func:`latest_stored_checkpoint`,
   :func:`check_extends`.
2. For every anchored file (:mod:`.anchor`): it is present whenever the log holds any
   checkpoint ("anchor missing"), its note verifies with the log's key and origin, the
   tree holds at least that many entries, a consistency proof from the anchored size to
   the current tree verifies against the anchored root, and the log still holds a
   checkpoint row with exactly that size and root: :func:`check_anchors`.
3. Grace: when entries follow the newest checkpoint (or none exists), the first of them
   must be dated within ``grace`` seconds of now (:func:`check_grace`,
   :func:`~clearance._internal.ledger.anchor.stale_problem`).

Each reads O(log n) rows through a :class:`StoredTree`. Leaf *bytes* are not hashed
here: a leaf edited in place is caught when read (:func:`prove_stored`) and by the full
audit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from clearance._internal.ledger import merkle
from clearance._internal.ledger.anchor import CheckpointAnchor, stale_problem
from clearance._internal.ledger.checkpoint import NoteVerifier, parse_checkpoint
from clearance._internal.ledger.layout import Tree, parse_stored_leaf, stored_type
from clearance._internal.ledger.store import Checkpoint, StoredEntry
from clearance.errors import ProofError, TamperError

_LAST_GOOD_ROWS = 64
"""Stored checkpoints examined when locating where a rewrite begins (failure path only)."""

CheckpointRow = tuple[object, object, object]
"""``(size, root, note)`` as a checkpoint row holds them (unverified)."""


class StoredTree(Protocol):
    """The reads the checks make, through one connection (or one snapshot) of a store."""

    @property
    def where(self) -> str:
        """The log's location for messages (a path, or a URL without its password)."""
        ...

    def range_hashes(self, ranges: Sequence[merkle.LeafRange]) -> list[bytes]:
        """The stored hashes of leaf ranges (one query); TamperError when a node is missing."""
        ...

    def checkpoint_rows(self, at_most: int | None, limit: int) -> list[CheckpointRow]:
        """Up to ``limit`` checkpoint rows of size ``<= at_most`` (any size: None), newest first."""
        ...

    def leaf(self, index: int) -> object | None:
        """The stored leaf of entry ``index`` (None when there is no such row)."""
        ...


def verified_checkpoint(
    where: str, row: CheckpointRow, verifier: NoteVerifier, origin: str
) -> Checkpoint:
    """The checkpoint ``row`` holds, verified; TamperError when it does not verify."""
    size, root, note = row
    if not isinstance(root, bytes) or not isinstance(note, str):
        raise TamperError(
            f"checkpoint row {size} in {where} stores a {stored_type(root)} root and a "
            f"{stored_type(note)} note, not a BLOB and TEXT"
        )
    try:
        cp = parse_checkpoint(note, verifier, origin=origin)
    except ProofError as exc:
        raise TamperError(
            f"the latest checkpoint in {where} (size {size}) does not verify with this log's "
            f"key {verifier.vkey()}: {exc}"
        ) from exc
    if cp.size != size or cp.root != root:
        raise TamperError(f"checkpoint row {size} in {where} differs from its note")
    return cp


def latest_stored_checkpoint(
    reads: StoredTree, verifier: NoteVerifier, origin: str
) -> Checkpoint | None:
    """The newest checkpoint row, verified; TamperError when it does not verify."""
    rows = reads.checkpoint_rows(None, 1)
    return verified_checkpoint(reads.where, rows[0], verifier, origin) if rows else None


def check_extends(reads: StoredTree, size: int, root: bytes, tree: Tree, what: str) -> None:
    """TamperError unless ``tree`` extends the tree of ``size`` leaves with ``root``.

    RFC 9162 §2.1.4, with the proof read from the stored nodes. ``what`` names the older
    tree in messages ("its signed checkpoint").
    """
    if size > tree.size:
        raise TamperError(
            f"the ledger at {reads.where} holds {tree.size} entries but {what} has {size}: "
            f"entries from index {tree.size} on were removed",
            index=tree.size,
        )
    if size == 0:
        return  # the empty tree commits to nothing
    if size == tree.size:
        if root != tree.root:
            raise TamperError(f"the ledger's root at size {size} differs from {what}")
        return
    proof = reads.range_hashes(merkle.consistency_ranges(size, tree.size))
    try:
        merkle.verify_consistency(size, tree.size, root, tree.root, proof)
    except ProofError as exc:
        raise TamperError(
            f"the ledger at size {tree.size} is not consistent with {what} at size "
            f"{size} ({exc}): stored hashes were altered"
        ) from exc


def _last_good_size(reads: StoredTree, below: int, verifier: NoteVerifier, origin: str) -> int:
    """The largest stored checkpoint size ``<= below`` whose signed root the stored tree has.

    Entries before it are still what was signed; a rewrite begins at or after it.
    """
    for size, root, note in reads.checkpoint_rows(below, _LAST_GOOD_ROWS):
        if not isinstance(size, int) or not isinstance(root, bytes) or size <= 0:
            continue
        if not isinstance(note, str):
            continue
        try:
            cp = parse_checkpoint(note, verifier, origin=origin)
            if cp.size == size and cp.root == root == reads.range_hashes([(0, size)])[0]:
                return size
        except (ProofError, TamperError):
            continue
    return 0


def check_anchors(
    reads: StoredTree,
    tree: Tree,
    latest: Checkpoint | None,
    anchor: CheckpointAnchor,
    verifier: NoteVerifier,
    origin: str,
) -> int:
    """Step 2 of the module docstring; returns the smallest anchored size (0: some file absent)."""
    smallest: int | None = None
    for file in anchor.files:
        cp = file.read(verifier, origin)
        if cp is None:
            if latest is not None:
                raise file.missing(latest.size)
            smallest = 0
            continue
        where = f"the checkpoint anchored in {file.describe()}"
        if cp.size > tree.size:
            raise TamperError(
                f"the ledger at {reads.where} holds {tree.size} entries but {where} has "
                f"{cp.size}: entries from index {tree.size} on were removed, or the ledger "
                "was replaced by an older copy (rolled back)",
                index=tree.size,
            )
        try:
            check_extends(reads, cp.size, cp.root, tree, where)
        except TamperError as exc:
            good = _last_good_size(reads, cp.size, verifier, origin)
            raise TamperError(
                f"the ledger does not extend {where} (size {cp.size}): entries from index "
                f"{good} on were rewritten and re-hashed ({exc})",
                index=good,
            ) from exc
        rows = reads.checkpoint_rows(cp.size, 1)
        if not rows or rows[0][0] != cp.size or rows[0][1] != cp.root:
            raise TamperError(
                f"the ledger at {reads.where} holds no checkpoint row of size {cp.size} with "
                f"the root {where} has: signed checkpoints were deleted from the ledger"
            )
        smallest = cp.size if smallest is None else min(smallest, cp.size)
    return smallest or 0


def check_grace(
    reads: StoredTree, tree: Tree, latest: Checkpoint | None, now: float, grace: float
) -> None:
    """Step 3: the first entry no signed checkpoint covers is no older than ``grace`` seconds."""
    first = latest.size if latest is not None else 0
    if tree.size <= first:
        return
    leaf = reads.leaf(first)
    if leaf is None:
        raise TamperError(f"entry {first} is missing", index=first)
    problem = stale_problem(first, parse_stored_leaf(first, leaf), now, grace)
    if problem is not None:
        raise TamperError(problem, index=first)


InclusionProof = Callable[[int, int], list[bytes]]
"""``(index, size)`` to the stored RFC 9162 §2.1.3 inclusion proof (one query)."""


def prove_stored(
    inclusion_proof: InclusionProof, where: str, stored: StoredEntry, tree: Tree
) -> StoredEntry:
    """``stored`` once its leaf is proven at its index in ``tree`` (RFC 9162 §2.1.3).

    TamperError(index=stored.index) when the index is outside the tree or the leaf's
    hash and its inclusion proof do not lead to the tree's root.
    """
    index = stored.index
    if not 0 <= index < tree.size or not isinstance(stored.leaf, bytes):
        raise TamperError(
            f"entry {index} is not in this ledger's tree of {tree.size} entries", index=index
        )
    proof = inclusion_proof(index, tree.size)
    try:
        merkle.verify_inclusion(index, tree.size, merkle.leaf_hash(stored.leaf), proof, tree.root)
    except ProofError as exc:
        raise TamperError(
            f"entry {index} as stored in {where} is not the entry the verified tree "
            f"holds at that index ({exc}): the row was altered",
            index=index,
        ) from exc
    return stored
