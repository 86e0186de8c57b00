"""A store's record of its signed checkpoints, whatever the database: the newest one, when
the next is due, failures to sign, and the anchor.

Each store (:mod:`.sqlite_checkpoints`, :mod:`.postgres`) signs and stores checkpoints in
its own transactions and keeps one :class:`CheckpointBook` of the outcome.

Invariants:

* :attr:`CheckpointBook.latest` only grows: :meth:`CheckpointBook.signed` and
  :meth:`CheckpointBook.adopt` ignore a checkpoint no larger than it.
* A checkpoint that could not be signed is retried later (the entries are committed);
  the failure is logged on the ``clearance.ledger`` logger at ERROR once per distinct
  problem, and the first success after it at INFO. A failure to anchor is logged by
  the anchor keeper on the same logger at WARNING.
* The very first checkpoint of a log is anchored at once; later ones are anchored off
  the append path (:class:`~clearance._internal.ledger.anchor.AnchorKeeper`).
* Two stores of one log that sign the same tree produce the same note byte for byte
  (one key, one tree, deterministic Ed25519): :meth:`CheckpointBook.check_same` accepts
  exactly that and calls anything else at that size a fork.
"""

from __future__ import annotations

import logging
import time

from clearance._internal.ledger.anchor import AnchorKeeper
from clearance._internal.ledger.store import Checkpoint
from clearance.errors import Error, TamperError

log = logging.getLogger("clearance.ledger")


class CheckpointBook:
    """The signed checkpoints of one open store (see the module invariants)."""

    def __init__(self, where: str, *, interval: float) -> None:
        """Keep the book of the log at ``where``; at most one checkpoint per ``interval`` s."""
        self._where = where
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

    def signed(self, cp: Checkpoint, at: float) -> None:
        """Record ``cp``, signed and stored at monotonic time ``at``; anchor a log's first."""
        if self.latest is not None and cp.size <= self.latest.size:
            return
        self.latest, self._last_signed = cp, at
        if self._failure is not None:
            log.info("checkpoint %d of %s signed: signing works again", cp.size, self._where)
            self._failure = None
        if self.keeper is not None:
            self.keeper.first(cp)  # a log's first checkpoint is anchored at once

    def adopt(self, cp: Checkpoint) -> None:
        """Take ``cp``, which another process signed and this store proved, as the newest.

        It counts as signed now: the processes of one log share the interval, so under
        load the log gets about one checkpoint per interval, not one per process.
        """
        if self.latest is None or cp.size > self.latest.size:
            self.latest, self._last_signed = cp, time.monotonic()

    def check_same(self, cp: Checkpoint, stored_note: object) -> None:
        """Accept ``cp`` when the checkpoint stored at its size is the very same note.

        Two processes of one log may both sign the tree of the same size. The log key and
        the tree are the same and Ed25519 signatures are deterministic (RFC 8032), so the
        notes are byte for byte equal and nothing needs storing. A different note at that
        size is a fork that C2SP tlog-checkpoint forbids: TamperError.
        """
        if stored_note != cp.note:
            raise TamperError(
                f"ledger at {self._where} already holds a different checkpoint of size "
                f"{cp.size}: two checkpoints of one size that disagree are a fork"
            )

    def failed(self, exc: Error, size: int) -> None:
        """Log that no checkpoint covers ``size`` entries because of ``exc`` (once per cause)."""
        if str(exc) != self._failure:
            self._failure = str(exc)
            log.error("no checkpoint signed for %d entries of %s: %s", size, self._where, exc)

    def anchor_quietly(self) -> None:
        """Bring the anchor up to the newest checkpoint; a failure is logged, retried later."""
        if self.keeper is not None and self.latest is not None:
            self.keeper.advance_quietly(self.latest)  # a no-op unless the keeper is behind

    def anchor(self) -> None:
        """Bring the anchor up to the newest checkpoint now; raises what the anchor raises."""
        if self.keeper is not None and self.latest is not None:
            self.keeper.advance(self.latest)
