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
  the failure is logged on the ``clearance.ledger`` logger at ERROR once per distinct
  problem, and the first success after it at INFO. A failure to anchor is logged by
  the anchor keeper on the same logger at WARNING.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

from clearance._internal.ledger.anchor import AnchorKeeper
from clearance._internal.ledger.checkpoint import NoteSigner, sign_checkpoint
from clearance._internal.ledger.sqlite_db import Tree, translate
from clearance._internal.ledger.sqlite_trust import check_extends
from clearance._internal.ledger.store import Checkpoint
from clearance.errors import Error, LedgerError, TamperError

log = logging.getLogger("clearance.ledger")

_INSERT_CHECKPOINT = "INSERT INTO checkpoints (size, root, note) VALUES (?, ?, ?)"


class Checkpoints:
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
        self._conn = conn
        self._path = path
        self._signer = signer
        self._origin = origin
        self._interval = interval
        self._last_signed = float("-inf")
        self._failure: str | None = None  # the last failure logged, so as not to repeat it
        self.latest: Checkpoint | None = None
        """The newest signed checkpoint (proven when the store opened, or signed since)."""
        self.keeper: AnchorKeeper | None = None
        """The anchor's keeper, once the store checked the anchor at open."""

    def due(self) -> bool:
        """True when the newest checkpoint is at least one interval old (monotonic clock)."""
        return time.monotonic() - self._last_signed >= self._interval

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
                self._same_as_stored(cp)  # another process signed this very tree first
        self.latest, self._last_signed = cp, now
        if self._failure is not None:
            log.info("checkpoint %d of %s signed: signing works again", cp.size, self._path)
            self._failure = None
        if self.keeper is not None:
            self.keeper.first(cp)  # a log's first checkpoint is anchored at once
        return cp

    def _same_as_stored(self, cp: Checkpoint) -> None:
        """Accept ``cp`` when the checkpoint stored at its size is the very same note.

        Two processes of one log (a CLI appending beside a server) may both sign the tree
        of the same size. The log key and the tree are the same and Ed25519 signatures
        are deterministic (RFC 8032), so the notes are byte for byte equal and nothing
        needs storing. A different note at that size is a fork that C2SP tlog-checkpoint
        forbids: TamperError.
        """
        row = self._conn.execute("SELECT note FROM checkpoints WHERE size = ?", (cp.size,))
        stored = row.fetchone()
        if stored is None or stored[0] != cp.note:
            raise TamperError(
                f"ledger at {self._path} already holds a different checkpoint of size "
                f"{cp.size}: two checkpoints of one size that disagree are a fork"
            )

    def failed(self, exc: Error, size: int) -> None:
        """Log that no checkpoint covers ``size`` entries because of ``exc`` (once per cause)."""
        if str(exc) != self._failure:
            self._failure = str(exc)
            log.error("no checkpoint signed for %d entries of %s: %s", size, self._path, exc)

    def anchor_quietly(self) -> None:
        """Bring the anchor up to the newest checkpoint; a failure is logged, retried later."""
        if self.keeper is not None and self.latest is not None:
            self.keeper.advance_quietly(self.latest)  # a no-op unless the keeper is behind

    def anchor(self) -> None:
        """Bring the anchor up to the newest checkpoint now; raises what the anchor raises."""
        if self.keeper is not None and self.latest is not None:
            self.keeper.advance(self.latest)
