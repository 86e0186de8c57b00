"""Offline-verifiable receipts: one ledger entry, its inclusion proof and a signed checkpoint.

A receipt (docs/design.md §5) is the JSON object::

    {"entry": {...}, "leaf_index": n, "tree_size": n,
     "inclusion_proof": ["<base64>", ...], "checkpoint": "<signed note>",
     "log_vkey": "<vkey>"}

The leaf is the RFC 8785 canonical JSON of ``entry``; ``inclusion_proof`` is the
RFC 9162 §2.1.3 path from that leaf to the root of the checkpointed tree, and
``checkpoint`` is a C2SP tlog-checkpoint signed by the log (see
:mod:`clearance._internal.ledger.checkpoint`).

Invariants of :func:`verify_receipt`:

* It trusts only the verifier key it is given. ``log_vkey`` inside the receipt
  is a label, compared with the trusted key and never used to verify anything.
* It checks, in order, and names the failed step in ``ProofError.step``:
  ``"format"`` (fields, types, base64), ``"vkey"`` (the trusted key, or a
  receipt naming another key), ``"signature"`` and ``"checkpoint-format"``
  (the checkpoint note), ``"origin"`` (only when an origin is expected),
  ``"tree-size"`` (the receipt's size differs from the signed size),
  ``"canonical"`` (the entry has no RFC 8785 form) and ``"inclusion"`` (the
  proof does not lead from the entry's leaf hash to the signed root).
* The returned entry is rebuilt from the canonical bytes that were proven, so
  it is detached from the input.

An inclusion proof does not bind a tree size by itself: the same hashes can
fit another ``(index, size)`` pair under the same root. That is why the size
always comes from the signed checkpoint, never from the receipt.

Receipts also export as C2SP ``tlog-proof@v1`` text (c2sp.org/tlog-proof)::

    c2sp.org/tlog-proof@v1
    extra <base64(RFC 8785 bytes of the entry)>     (optional)
    index <leaf index, decimal, no leading zeros>
    <base64 proof hash, from the leaf's sibling upward>   (zero or more lines)
    <empty line>
    <the checkpoint note, verbatim>

The spec leaves the ``extra`` data to the application and says it is not
authenticated. Clearance stores the entry's leaf bytes there so that a proof
file stands alone; :func:`verify_tlog_proof` only uses them when the caller
supplies no entry, and then only after the inclusion proof has authenticated
them. A ``tlog-proof`` carries no separate tree size: the checkpoint's is used.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from clearance._internal import strict_json
from clearance._internal.canonical import canonical_json
from clearance._internal.ledger import merkle
from clearance._internal.ledger.checkpoint import NoteVerifier, b64decode_strict, parse_checkpoint
from clearance._internal.ledger.store import Checkpoint, LedgerStore
from clearance.errors import InputError, ProofError

__all__ = [
    "MAX_RECEIPT_SIZE",
    "RECEIPT_FIELDS",
    "TLOG_PROOF_HEADER",
    "VerifiedReceipt",
    "build_receipt",
    "to_tlog_proof",
    "verify_receipt",
    "verify_tlog_proof",
]

RECEIPT_FIELDS = frozenset(
    {"entry", "leaf_index", "tree_size", "inclusion_proof", "checkpoint", "log_vkey"}
)
"""Exactly the fields of a receipt (docs/design.md §5); any other field is a format error."""

TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"
"""The first line of a C2SP tlog-proof."""

MAX_RECEIPT_SIZE = 16 << 20
"""Largest receipt or tlog-proof text (characters) we parse; policy entries hold whole bundles."""

_MAX_PROOF_HASHES = 64  # a tree of fewer than 2**64 leaves has paths of at most 64 hashes
_MAX_INDEX = 2**64 - 1
_SAFE_INT = 2**53 - 1
_INDEX_LINE = re.compile(r"index (0|[1-9][0-9]{0,19})")


@dataclass(frozen=True)
class VerifiedReceipt:
    """What a verified receipt proves: ``entry`` is leaf ``leaf_index`` of the signed tree."""

    entry: Mapping[str, Any]
    leaf_index: int
    tree_size: int
    root: bytes
    origin: str


def _fail(step: str, message: str) -> NoReturn:
    raise ProofError(message, step=step)


def _canonical_entry(entry: object) -> bytes:
    if not isinstance(entry, Mapping):
        _fail("format", "the entry must be a JSON object")
    try:
        return canonical_json(dict(entry))
    except InputError as exc:
        _fail("canonical", f"the entry has no RFC 8785 canonical form, so no leaf hash: {exc}")


def _json_int(text: str) -> int | float:
    # RFC 8785 numbers are IEEE-754 doubles: an integral float of 2**53 or more is
    # written as digits, and must read back as the float it was, not as an int
    # that canonical JSON refuses.
    value = int(text)
    return value if -_SAFE_INT <= value <= _SAFE_INT else float(value)


def _leaf_entry(leaf: bytes) -> dict[str, Any]:
    """Parse leaf bytes back into the entry, requiring them to be canonical."""
    try:
        entry = json.loads(leaf.decode("utf-8"), parse_int=_json_int)
        canonical = isinstance(entry, dict) and canonical_json(entry) == leaf
    except (UnicodeDecodeError, ValueError, OverflowError, RecursionError):
        canonical = False
    if not canonical:
        _fail("canonical", "the entry bytes are not the RFC 8785 canonical JSON of an object")
    return dict(entry)


def _decode_hash(value: object, position: int) -> bytes:
    if not isinstance(value, str):
        _fail("format", f"inclusion_proof[{position}] must be a base64 string")
    try:
        raw = b64decode_strict(value)
    except ValueError as exc:
        _fail("format", f"inclusion_proof[{position}]: {exc}")
    if len(raw) != merkle.HASH_SIZE:
        _fail("format", f"inclusion_proof[{position}] is {len(raw)} bytes, expected 32")
    return raw


def _load_receipt(receipt: Mapping[str, Any] | str) -> Mapping[str, Any]:
    if isinstance(receipt, str):
        if len(receipt) > MAX_RECEIPT_SIZE:
            _fail("format", f"the receipt is longer than {MAX_RECEIPT_SIZE} characters")
        try:
            receipt = strict_json.loads(receipt, parse_int=_json_int)
        except (ValueError, OverflowError, RecursionError) as exc:
            _fail("format", f"the receipt is not valid JSON: {exc}")
    if not isinstance(receipt, Mapping):
        _fail("format", "a receipt must be a JSON object")
    missing = sorted(RECEIPT_FIELDS - receipt.keys())
    extra = sorted(str(key) for key in receipt.keys() - RECEIPT_FIELDS)
    if missing:
        _fail("format", f"the receipt lacks the field(s) {', '.join(missing)}")
    if extra:
        _fail("format", f"the receipt has unknown field(s) {', '.join(extra)}")
    for field in ("leaf_index", "tree_size"):
        value = receipt[field]
        if type(value) is not int or not 0 <= value <= _MAX_INDEX:
            _fail("format", f"{field} must be a non-negative integer, got {value!r:.40}")
    for field in ("checkpoint", "log_vkey"):
        if not isinstance(receipt[field], str):
            _fail("format", f"{field} must be a string")
    proof = receipt["inclusion_proof"]
    if not isinstance(proof, list | tuple):
        _fail("format", "inclusion_proof must be a list of base64 hashes")
    if len(proof) > _MAX_PROOF_HASHES:
        _fail("format", f"inclusion_proof has more than {_MAX_PROOF_HASHES} hashes")
    if not isinstance(receipt["entry"], Mapping):
        _fail("format", "the entry must be a JSON object")
    return receipt


def _verify(
    *,
    entry: Mapping[str, Any] | bytes,
    leaf_index: int,
    proof: Sequence[bytes],
    note: str,
    verifier: NoteVerifier,
    tree_size: int | None,
    origin: str | None,
) -> VerifiedReceipt:
    """The checks after format and vkey: checkpoint, tree size, canonical entry, inclusion."""
    checkpoint = parse_checkpoint(note, verifier, origin=origin)
    if tree_size is not None and tree_size != checkpoint.size:
        _fail(
            "tree-size",
            f"the receipt claims tree_size {tree_size} but its signed checkpoint is for size "
            f"{checkpoint.size}: the receipt was altered",
        )
    if leaf_index >= checkpoint.size:
        _fail(
            "inclusion",
            f"leaf_index {leaf_index} is outside the signed tree of size {checkpoint.size}",
        )
    if isinstance(entry, bytes):
        leaf, proven = entry, _leaf_entry(entry)
    else:
        # Canonical by construction; parse the bytes back to detach the result.
        leaf = _canonical_entry(entry)
        proven = json.loads(leaf, parse_int=_json_int)
    try:
        merkle.verify_inclusion(
            leaf_index, checkpoint.size, merkle.leaf_hash(leaf), proof, checkpoint.root
        )
    except ProofError as exc:
        _fail(
            "inclusion",
            f"{exc}: the entry, its index or the proof hashes differ from what the log signed",
        )
    return VerifiedReceipt(
        entry=proven,
        leaf_index=leaf_index,
        tree_size=checkpoint.size,
        root=checkpoint.root,
        origin=checkpoint.origin,
    )


def build_receipt(
    entry: Mapping[str, Any],
    leaf_index: int,
    checkpoint: Checkpoint,
    proof: Sequence[bytes],
    vkey: str,
) -> dict[str, Any]:
    """Assemble the receipt for leaf ``leaf_index`` and check it verifies before returning it.

    ``proof`` is the inclusion proof of the leaf in the tree of
    ``checkpoint.size`` leaves; ``vkey`` is the log's verifier key. Raises
    ProofError (with the failing step) rather than return a receipt that
    would not verify.
    """
    leaf = _canonical_entry(entry)
    receipt: dict[str, Any] = {
        "entry": _leaf_entry(leaf),
        "leaf_index": leaf_index,
        "tree_size": checkpoint.size,
        "inclusion_proof": [base64.b64encode(bytes(p)).decode("ascii") for p in proof],
        "checkpoint": checkpoint.note,
        "log_vkey": vkey,
    }
    verify_receipt(receipt, vkey)
    return receipt


def receipt_for_request(
    store: LedgerStore, request_id: str, kind: str = "decision", *, timeout: float = 2.0
) -> dict[str, Any]:
    """The receipt of the ``kind`` entry (decision or execution) of ``request_id``.

    Waits up to ``timeout`` seconds for a checkpoint covering the entry. For an
    execution, a real outcome is preferred over ``rejected`` entries (those
    record grants the executor refused and name their request unverified).
    InputError when the log has no such entry.
    """
    found = store.find(kind, request_id)
    if not found:
        raise InputError(f"no {kind} entry for request id {request_id!r} in the ledger")
    chosen = next((e for e in found if e.entry.get("status") != "rejected"), found[-1])
    checkpoint = store.checkpoint_covering(chosen.index, timeout=timeout)
    proof = store.inclusion_proof(chosen.index, checkpoint.size)
    return build_receipt(chosen.entry, chosen.index, checkpoint, proof, store.vkey)


def verify_receipt(
    receipt: Mapping[str, Any] | str, vkey: str, *, origin: str | None = None
) -> VerifiedReceipt:
    """Verify a receipt (a mapping or its JSON text) offline against the log's ``vkey``.

    When ``origin`` is given, the checkpoint must be for that log. Raises
    ProofError whose ``step`` names the first check that failed (see the
    module docstring).
    """
    fields = _load_receipt(receipt)
    proof = [_decode_hash(value, i) for i, value in enumerate(fields["inclusion_proof"])]
    verifier = NoteVerifier.from_vkey(vkey)
    if fields["log_vkey"] != vkey:
        _fail(
            "vkey",
            f"the receipt was issued under log key {fields['log_vkey']!r:.120}, "
            f"not the trusted {vkey!r}: verify it with that log's key if you trust it",
        )
    return _verify(
        entry=fields["entry"],
        leaf_index=fields["leaf_index"],
        proof=proof,
        note=fields["checkpoint"],
        verifier=verifier,
        tree_size=fields["tree_size"],
        origin=origin,
    )


def to_tlog_proof(receipt: Mapping[str, Any] | str, *, include_entry: bool = True) -> str:
    """Export a receipt as C2SP ``tlog-proof@v1`` text.

    With ``include_entry`` the entry's canonical bytes travel in the ``extra``
    line. The receipt's shape is checked (``"format"``/``"canonical"``
    ProofErrors) but not its signature: verify the result with
    :func:`verify_tlog_proof`.
    """
    fields = _load_receipt(receipt)
    for i, value in enumerate(fields["inclusion_proof"]):
        _decode_hash(value, i)
    lines = [TLOG_PROOF_HEADER]
    if include_entry:
        leaf = _canonical_entry(fields["entry"])
        lines.append("extra " + base64.b64encode(leaf).decode("ascii"))
    lines.append(f"index {fields['leaf_index']}")
    lines.extend(fields["inclusion_proof"])
    note: str = fields["checkpoint"]
    return "\n".join(lines) + "\n\n" + note


def _parse_tlog_proof(text: str) -> tuple[bytes | None, int, list[bytes], str]:
    """Split tlog-proof text into (extra, index, proof hashes, checkpoint note)."""
    if not isinstance(text, str):
        _fail("format", "a tlog-proof must be text")
    if len(text) > MAX_RECEIPT_SIZE:
        _fail("format", f"the tlog-proof is longer than {MAX_RECEIPT_SIZE} characters")
    head, blank, note = text.partition("\n\n")
    if not blank or not note:
        _fail("format", "the tlog-proof has no empty line followed by a checkpoint")
    lines = head.split("\n")
    if lines[0] != TLOG_PROOF_HEADER:
        _fail("format", f"the first line must be {TLOG_PROOF_HEADER!r}")
    position = 1
    extra: bytes | None = None
    if len(lines) > 1 and lines[1].startswith("extra"):
        if not lines[1].startswith("extra "):
            _fail("format", "the extra line must be 'extra' followed by a space and base64")
        try:
            extra = b64decode_strict(lines[1][len("extra ") :])
        except ValueError as exc:
            _fail("format", f"the extra line: {exc}")
        if not extra:
            _fail("format", "the extra line is empty; omit it instead")
        position = 2
    match = _INDEX_LINE.fullmatch(lines[position]) if len(lines) > position else None
    if match is None or int(match.group(1)) > _MAX_INDEX:
        _fail("format", "expected an 'index N' line (decimal, no leading zeros)")
    hashes = lines[position + 1 :]
    if len(hashes) > _MAX_PROOF_HASHES:
        _fail("format", f"the inclusion proof has more than {_MAX_PROOF_HASHES} hashes")
    proof = [_decode_hash(value, i) for i, value in enumerate(hashes)]
    return extra, int(match.group(1)), proof, note


def verify_tlog_proof(
    text: str,
    vkey: str,
    *,
    entry: Mapping[str, Any] | bytes | None = None,
    origin: str | None = None,
) -> VerifiedReceipt:
    """Verify C2SP ``tlog-proof@v1`` text offline against the log's ``vkey``.

    ``entry`` is what the caller expects to be logged: an entry mapping, or the
    leaf bytes (its RFC 8785 JSON). When omitted, the entry carried in the
    ``extra`` line is the one checked. Steps are those of :func:`verify_receipt`,
    without ``"tree-size"``.
    """
    extra, leaf_index, proof, note = _parse_tlog_proof(text)
    verifier = NoteVerifier.from_vkey(vkey)
    if entry is None:
        if extra is None:
            _fail("format", "the tlog-proof carries no entry (no extra line): pass entry=")
        entry = extra
    elif not isinstance(entry, bytes | Mapping):
        _fail("format", "entry must be a mapping or the leaf bytes")
    return _verify(
        entry=entry,
        leaf_index=leaf_index,
        proof=proof,
        note=note,
        verifier=verifier,
        tree_size=None,
        origin=origin,
    )
