"""RFC 9162 §2.1 Merkle tree hashing and proofs, as pure functions.

Definitions (RFC 9162 §2.1.1):

* the hash of the empty tree is ``SHA-256()``;
* a leaf hash is ``SHA-256(0x00 || leaf_bytes)``;
* an interior node hash is ``SHA-256(0x01 || left || right)``, where a range of
  ``n > 1`` leaves splits at ``k``, the largest power of two smaller than ``n``.

Proofs are generated without holding the whole tree: :func:`inclusion_ranges`
and :func:`consistency_ranges` name the leaf ranges whose hashes make up a
proof (RFC 9162 §2.1.3.1 and §2.1.4.1), :func:`perfect_subtrees` splits each
range into aligned perfect subtrees that a store keeps by ``(level, index)``,
and :func:`fold_range` combines those back into the range's hash. A store can
therefore answer any proof with O(log n) reads.

Verification follows RFC 9162 §2.1.3.2 and §2.1.4.2. Choices where the RFC
leaves room (pinned by ``../shared/vectors``):

* every hash must be exactly 32 bytes;
* a consistency proof *from* size 0 is rejected (an empty tree commits to
  nothing, so such a proof proves nothing), as is any proof to a smaller size;
* equal sizes need an empty proof and equal roots (compared as given).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import NewType

from clearance.errors import ProofError

Hash = NewType("Hash", bytes)
"""A 32-byte SHA-256 value."""

HASH_SIZE = 32
EMPTY_ROOT = Hash(hashlib.sha256(b"").digest())

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def leaf_hash(leaf: bytes) -> Hash:
    """``SHA-256(0x00 || leaf)`` (RFC 9162 §2.1.1)."""
    return Hash(hashlib.sha256(_LEAF_PREFIX + leaf).digest())


def node_hash(left: bytes, right: bytes) -> Hash:
    """``SHA-256(0x01 || left || right)`` (RFC 9162 §2.1.1)."""
    return Hash(hashlib.sha256(_NODE_PREFIX + left + right).digest())


def split_point(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n >= 2``)."""
    if n < 2:
        raise ValueError(f"split_point needs n >= 2, got {n}")
    return 1 << ((n - 1).bit_length() - 1)


# --- proof planning: which leaf ranges a proof consists of -----------------------------

LeafRange = tuple[int, int]
"""A half-open range ``[start, end)`` of leaf indices."""


def inclusion_ranges(index: int, size: int) -> list[LeafRange]:
    """The ranges whose hashes form the inclusion proof of ``index`` in a tree of ``size``.

    Ordered from the leaf upward, as RFC 9162 §2.1.3.1 ``PATH(m, D[n])`` emits them.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    ranges: list[LeafRange] = []
    start, end = 0, size
    while end - start > 1:
        k = split_point(end - start)
        if index < start + k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start = start + k
    ranges.reverse()
    return ranges


def consistency_ranges(size1: int, size2: int) -> list[LeafRange]:
    """The ranges whose hashes form the consistency proof from ``size1`` to ``size2``.

    RFC 9162 §2.1.4.1 ``PROOF(m, D[n])``; empty when the sizes are equal.
    """
    if not 0 < size1 <= size2:
        raise ValueError(f"no consistency proof from size {size1} to size {size2}")
    if size1 == size2:
        return []
    ranges: list[LeafRange] = []
    start, end, whole = 0, size2, True
    m = size1
    while True:
        n = end - start
        if m == n:
            if not whole:
                ranges.append((start, end))
            break
        k = split_point(n)
        if m <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start, m = start + k, m - k
            whole = False
    ranges.reverse()
    return ranges


def perfect_subtrees(start: int, end: int) -> list[tuple[int, int]]:
    """Split ``[start, end)`` into aligned perfect subtrees, left to right.

    Each subtree is ``(level, index)``: it covers leaves
    ``[index * 2**level, (index + 1) * 2**level)``.
    """
    if not 0 <= start < end:
        raise ValueError(f"empty or negative leaf range [{start}, {end})")
    parts: list[tuple[int, int]] = []
    while start < end:
        level = (start & -start).bit_length() - 1 if start else (end - start).bit_length() - 1
        while (1 << level) > end - start:
            level -= 1
        parts.append((level, start >> level))
        start += 1 << level
    return parts


def fold_range(parts: Sequence[tuple[int, bytes]]) -> Hash:
    """Combine perfect-subtree hashes (``(level, hash)``, left to right) into the range's hash.

    Valid for the ranges proofs use, whose subtrees strictly shrink from left to
    right: the range then splits exactly after its first subtree.
    """
    if not parts:
        raise ValueError("cannot fold an empty range")
    level, acc = parts[-1]
    for prev_level, prev in reversed(parts[:-1]):
        if prev_level <= level:
            raise ValueError("subtrees must strictly shrink from left to right")
        acc, level = node_hash(prev, acc), prev_level
    return Hash(acc)


def range_hashes(ranges: Sequence[LeafRange], subtree: Callable[[int, int], bytes]) -> list[Hash]:
    """Hash each range from ``subtree(level, index)`` lookups (for in-memory trees and tests)."""
    out: list[Hash] = []
    for start, end in ranges:
        parts = perfect_subtrees(start, end)
        out.append(fold_range([(lv, subtree(lv, ix)) for lv, ix in parts]))
    return out


# --- reference tree over a list of leaf hashes (tests, small logs) ---------------------


def root_of(leaf_hashes: Sequence[bytes]) -> Hash:
    """RFC 9162 §2.1.1 ``MTH`` over already-hashed leaves."""
    n = len(leaf_hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return Hash(leaf_hashes[0])
    k = split_point(n)
    return node_hash(root_of(leaf_hashes[:k]), root_of(leaf_hashes[k:]))


def _memory_subtree(leaf_hashes: Sequence[bytes]) -> Callable[[int, int], bytes]:
    def subtree(level: int, index: int) -> bytes:
        return root_of(leaf_hashes[index << level : (index + 1) << level])

    return subtree


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[Hash]:
    """The inclusion proof of leaf ``index`` in the tree of ``leaf_hashes``."""
    return range_hashes(inclusion_ranges(index, len(leaf_hashes)), _memory_subtree(leaf_hashes))


def consistency_proof(leaf_hashes: Sequence[bytes], size1: int) -> list[Hash]:
    """The consistency proof from the first ``size1`` leaves to all of ``leaf_hashes``."""
    return range_hashes(consistency_ranges(size1, len(leaf_hashes)), _memory_subtree(leaf_hashes))


# --- verification -----------------------------------------------------------------------


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} is {len(value)} bytes, expected {HASH_SIZE}", step="proof")


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> Hash:
    """Recompute the root from a leaf hash and its inclusion proof (RFC 9162 §2.1.3.2)."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}", step="inclusion")
    _check_hash(leaf, "leaf hash")
    fn, sn, r = index, size - 1, bytes(leaf)
    for p in proof:
        _check_hash(p, "proof hash")
        if sn == 0:
            raise ProofError("inclusion proof is longer than the tree allows", step="inclusion")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the tree requires", step="inclusion")
    return Hash(r)


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise :class:`ProofError` unless ``proof`` shows ``leaf`` at ``index`` under ``root``."""
    _check_hash(root, "root hash")
    if root_from_inclusion_proof(index, size, leaf, proof) != root:
        raise ProofError("inclusion proof does not lead to the root hash", step="inclusion")


def verify_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> None:
    """Raise :class:`ProofError` unless ``proof`` shows tree ``size2`` extends tree ``size1``.

    RFC 9162 §2.1.4.2. A proof from size 0 is rejected (see the module docstring).
    """
    if size1 < 0 or size2 < size1:
        raise ProofError(f"no consistency from size {size1} to size {size2}", step="consistency")
    if size1 == size2:
        if proof:
            raise ProofError("equal tree sizes need an empty proof", step="consistency")
        # Equal sizes compare the roots as given; lengths are the caller's concern here
        # (the transparency-dev vectors use placeholder roots for this case).
        if root1 != root2:
            raise ProofError("equal tree sizes with different roots", step="consistency")
        if size1 == 0:
            raise ProofError("consistency with an empty tree proves nothing", step="consistency")
        return
    if size1 == 0:
        raise ProofError("consistency with an empty tree proves nothing", step="consistency")
    _check_hash(root1, "first root")
    _check_hash(root2, "second root")
    if not proof:
        raise ProofError("consistency proof is empty", step="consistency")
    for p in proof:
        _check_hash(p, "proof hash")
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, bytes(root1))
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long", step="consistency")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is too short", step="consistency")
    if fr != root1:
        raise ProofError("consistency proof does not match the first root", step="consistency")
    if sr != root2:
        raise ProofError("consistency proof does not match the second root", step="consistency")
