"""What a PostgreSQL log must prove before a store trusts it: when the store opens it, and
when the store adopts rows other processes appended.

The PostgreSQL twin of :mod:`.sqlite_trust`, built on the same backend-neutral checks
(:mod:`.trust`) and the row check of :mod:`.postgres_rows`; fail-closed rule 12
(docs/design.md §4).

Invariants:

* :func:`prove_log` returns a tree only when the newest stored checkpoint verifies with
  the log's key and the stored tree extends it and every anchored checkpoint, no derived
  column differs from its leaf, and unsigned entries are younger than the grace period,
  all read from one REPEATABLE READ snapshot.
* :func:`adopt` returns only trees proven to extend the one the store had (RFC 9162
  §2.1.4, from the stored nodes), whose new rows have honest derived columns, and only
  checkpoints that verify and that the tree extends. Anything else is a
  :class:`~clearance.errors.TamperError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from clearance._internal.ledger import layout, merkle, trust
from clearance._internal.ledger.anchor import CheckpointAnchor
from clearance._internal.ledger.checkpoint import NoteVerifier
from clearance._internal.ledger.layout import Tree, frontier
from clearance._internal.ledger.postgres_db import PostgresTree
from clearance._internal.ledger.postgres_rows import first_bad_row, send_row_check
from clearance._internal.ledger.postgres_sequencer import Head
from clearance._internal.ledger.store import Checkpoint
from clearance._internal.ledger.trust import CheckpointRow


def prove_log(
    reads: PostgresTree,
    verifier: NoteVerifier,
    origin: str,
    anchor: CheckpointAnchor | None,
    grace: float | None,
    now: float | None,
) -> tuple[Tree, Checkpoint | None, int]:
    """The stored tree and newest checkpoint, proven (module docstring), and the smallest
    anchored size (0 when an anchor file is absent or there is no anchor).

    Runs in one read-only REPEATABLE READ transaction on ``reads``'s connection, without
    a statement timeout: the row check reads every row once.
    """
    conn = reads.conn
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        conn.execute("SET LOCAL statement_timeout = 0")
        tree = reads.tree(reads.size())
        latest = trust.latest_stored_checkpoint(reads, verifier, origin)
        if latest is not None:
            trust.check_extends(reads, latest.size, latest.root, tree, "its signed checkpoint")
        anchored = 0
        if anchor is not None:
            anchored = trust.check_anchors(reads, tree, latest, anchor, verifier, origin)
        first_bad_row(conn, 0, tree.size)
        if grace is not None and now is not None:
            trust.check_grace(reads, tree, latest, now, grace)
    return tree, latest, anchored


def adopt(
    reads: PostgresTree,
    head: Head,
    old: Tree,
    latest: Checkpoint | None,
    verifier: NoteVerifier,
    origin: str,
    *,
    locked: bool,
) -> tuple[Tree, Checkpoint | None]:
    """The stored tree at ``head``, proven to extend ``old``, and a newer stored checkpoint
    it extends (None: none to adopt).

    ``old`` is the tree the store proved, ``latest`` its newest checkpoint. The rows added
    since must extend ``old`` (RFC 9162 §2.1.4, from the stored nodes) and have honest
    derived columns (:mod:`.postgres_rows`); a newer stored checkpoint must verify with
    ``verifier`` and be extended by the stored tree. TamperError otherwise. Nothing is read
    when ``head`` shows no change; otherwise every read is sent before any answer is read,
    so in the sequencer's pipeline they travel in one round trip (one more when a newer
    checkpoint needs its own proof). ``locked`` (the sequencer is held): nothing can be
    committed meanwhile, so a stored checkpoint larger than the stored log is tampering,
    not a race, and is refused rather than left for later.
    """
    size, newest = head.size, head.checkpoint
    grew = size != old.size
    newer = newest is not None and (latest is None or newest > latest.size)
    if not grew and not newer:
        return old, None
    if grew:
        keys = merkle.perfect_subtrees(0, size) if size else []
        if 0 < old.size < size:
            for start, end in merkle.consistency_ranges(old.size, size):
                keys += merkle.perfect_subtrees(start, end)
        nodes = reads.send_nodes(list(dict.fromkeys(keys)))
        rows_checked = send_row_check(reads.conn, old.size, size)
    checkpoints = reads.send_checkpoint_rows(None, 1) if newer else None
    tree = old
    if grew:
        found = nodes()
        tree = Tree(size, frontier(lambda wanted: found, size))
        proven = _Prefetched(reads, found)
        trust.check_extends(proven, old.size, old.root, tree, "the tree this store proved")
        rows_checked()
    stored_rows = checkpoints() if checkpoints is not None else []
    if not stored_rows:
        return tree, None
    stored = trust.verified_checkpoint(reads.where, stored_rows[0], verifier, origin)
    if (latest is not None and stored.size <= latest.size) or not (
        locked or stored.size <= tree.size
    ):
        return tree, None
    trust.check_extends(reads, stored.size, stored.root, tree, "a stored checkpoint")
    return tree, stored


class _Prefetched:
    """``reads`` whose proofs come from nodes already fetched (every one a proof needs)."""

    def __init__(self, reads: PostgresTree, found: Mapping[tuple[int, int], bytes]) -> None:
        self._reads = reads
        self._found = found
        self.where = reads.where

    def range_hashes(self, ranges: Sequence[merkle.LeafRange]) -> list[bytes]:
        return layout.range_hashes(lambda keys: self._found, ranges)

    def checkpoint_rows(self, at_most: int | None, limit: int) -> list[CheckpointRow]:
        return self._reads.checkpoint_rows(at_most, limit)

    def leaf(self, index: int) -> object | None:
        return self._reads.leaf(index)
