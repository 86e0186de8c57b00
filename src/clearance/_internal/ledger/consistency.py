"""Proving a log extends a checkpoint saved earlier, outside the ledger file.

Invariant: :func:`check_consistency_with` returns only a checkpoint signed by the
trusted key that the saved checkpoint is proven consistent with (RFC 9162 §2.1.4).
It needs no full pass over the log, and it catches a rewrite even by someone who
holds the log's signing key: they can sign a new history, not one that extends the
checkpoint the user kept.
"""

from __future__ import annotations

from clearance._internal.ledger import merkle
from clearance._internal.ledger.checkpoint import NoteVerifier, parse_checkpoint
from clearance._internal.ledger.store import Checkpoint, LedgerStore
from clearance.errors import ProofError, TamperError


def check_consistency_with(
    store: LedgerStore, saved_note: str, verifier: NoteVerifier
) -> Checkpoint:
    """Prove the log in ``store`` extends the checkpoint ``saved_note`` saved earlier.

    Returns a checkpoint covering the whole current log (signed now if needed),
    verified with ``verifier``, to which the saved one is proven consistent. Raises
    ProofError when ``saved_note`` itself does not verify, and TamperError when the
    log no longer contains what the saved checkpoint committed to (truncated, or a
    different root at that size) or its current checkpoint is not signed by the
    trusted key.
    """
    saved = parse_checkpoint(saved_note, verifier, origin=store.origin)
    size = store.size()
    if saved.size > size:
        raise TamperError(
            f"the saved checkpoint covers {saved.size} entries but the log holds {size}: "
            "the log was truncated",
            index=size,
        )
    if saved.size == 0:
        raise ProofError("a checkpoint of the empty log proves nothing", step="consistency")
    if store.root(saved.size) != saved.root:
        raise TamperError(
            f"the log's root at size {saved.size} differs from the saved checkpoint: "
            f"entries before index {saved.size} were rewritten"
        )
    latest = store.checkpoint_covering(size - 1)  # signs one now if entries are uncovered
    try:
        head = parse_checkpoint(latest.note, verifier, origin=store.origin)
    except ProofError as exc:
        raise TamperError(f"the log's latest checkpoint does not verify: {exc}") from exc
    if head.size == saved.size:
        if head.root != saved.root:
            raise TamperError(f"two different checkpoints were signed at size {saved.size}")
        return head
    proof = store.consistency_proof(saved.size, head.size)
    try:
        merkle.verify_consistency(saved.size, head.size, saved.root, head.root, proof)
    except ProofError as exc:
        raise TamperError(
            f"the log at size {head.size} does not extend the saved checkpoint at size "
            f"{saved.size}: {exc}"
        ) from exc
    return head
