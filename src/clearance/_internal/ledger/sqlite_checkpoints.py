"""A SQLite store's signed checkpoints: the newest one, signing the next, anchoring them.

:class:`~clearance._internal.ledger.sqlite.SQLiteLedger` owns one :class:`Checkpoints`
and calls it with the commit role held (from its group commit, its ticker and
``close``), so signing is never concurrent with an append.

Invariants (C2SP tlog-checkpoint, RFC 9162 §2.1.4):

* A checkpoint is signed only after proving the tree it covers consistent with the
  newest one signed before; otherwise :class:`~clearance.errors.TamperError`, and the
  store refuses every later append. A log never signs two inconsistent checkpoints.
* Checkpoints only grow: a tree no larger than the newest checkpoint is not signed again.
* The very first checkpoint of a log is anchored at once; later ones are anchored off
  the append path (:class:`~clearance._internal.ledger.anchor.AnchorKeeper`).
* A checkpoint that could not be signed is retried later (the entries are committed);
  failures and the anchor are kept by :class:`~.checkpoint_book.CheckpointBook`, which
  logs them on the ``clearance.ledger`` logger.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from clearance._internal.ledger.checkpoint import NoteSigner, sign_checkpoint
from clearance._internal.ledger.checkpoint_book import CheckpointBook
from clearance._internal.ledger.layout import Tree
from clearance._internal.ledger.sqlite_db import translate
from clearance._internal.ledger.sqlite_trust import check_extends
from clearance._internal.ledger.store import Checkpoint
from clearance.errors import Error, LedgerError

_INSERT_CHECKPOINT = "INSERT INTO checkpoints (size, root, note) VALUES (?, ?, ?)"


class Checkpoints(CheckpointBook):
    """The signed checkpoints of one open store (see the module invariants)."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        *,
        signer: NoteSigner,
        origin: str,
        interval: float,
    ) -> None:
        """Sign for the store writing through ``conn``; at most one per ``interval`` under load."""
        super().__init__(str(path), interval=interval)
        self._conn = conn
        self._path = path
        self._signer = signer
        self._origin = origin

    def sign(self, tree: Tree) -> Checkpoint | None:
        """Sign and store a checkpoint for ``tree`` after proving it extends the newest one.

        None for an empty tree; the newest checkpoint when it already covers ``tree``.
        TamperError when ``tree`` is not consistent with it; LedgerError when signing
        or storing fails.
        """
        latest = self.latest
        if tree.size == 0:
            return None
        if latest is not None and latest.size >= tree.size:
            return latest
        now = time.monotonic()
        with translate(self._path, "signing a checkpoint"):
            if latest is not None:
                check_extends(
                    self._conn, self._path, latest.size, latest.root, tree, "its signed checkpoint"
                )
            try:
                cp = sign_checkpoint(self._signer, self._origin, tree.size, tree.root)
            except Error as exc:
                raise LedgerError(f"cannot sign a checkpoint for {self._path}: {exc}") from exc
            try:
                self._conn.execute(_INSERT_CHECKPOINT, (cp.size, cp.root, cp.note))
            except sqlite3.IntegrityError:
                # Another process signed this very tree first (CheckpointBook.check_same).
                row = self._conn.execute(
                    "SELECT note FROM checkpoints WHERE size = ?", (cp.size,)
                ).fetchone()
                self.check_same(cp, None if row is None else row[0])
        self.signed(cp, now)
        return cp
