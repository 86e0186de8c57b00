"""RFC 9162 Merkle tree: public vectors, a naive reference tree, and hypothesis properties."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearance._internal.ledger import merkle
from clearance.errors import ProofError

VECTORS = Path(__file__).resolve().parents[2] / "assets" / "vectors"
"""RFC 9162 proof vectors and C2SP signed-note vectors (sources and licence: README there)."""
INCLUSION = sorted((VECTORS / "inclusion").glob("**/*.json"))
CONSISTENCY = sorted((VECTORS / "consistency").glob("**/*.json"))

# The leaves of the tree the transparency-dev vectors are built on (vectors/README.md).
VECTOR_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]

MAX_SIZE = 300
PROPERTY_SETTINGS = settings(max_examples=300, deadline=None)


def _ids(paths: Sequence[Path]) -> list[str]:
    return [str(p.relative_to(VECTORS)) for p in paths]


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _b64(value: str) -> bytes:
    return base64.b64decode(value, validate=True)


# --- an independent reference: RFC 9162 §2.1 definitions, written recursively -------------


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(data: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over raw leaf data (RFC 9162 §2.1.1)."""
    if not data:
        return hashlib.sha256(b"").digest()
    if len(data) == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = _k(len(data))
    return hashlib.sha256(b"\x01" + ref_mth(data[:k]) + ref_mth(data[k:])).digest()


def ref_path(m: int, start: int, end: int) -> list[tuple[int, int]]:
    """The leaf ranges of PATH(m, D[start:end]) (RFC 9162 §2.1.3.1)."""
    n = end - start
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*ref_path(m, start, start + k), (start + k, end)]
    return [*ref_path(m - k, start + k, end), (start, start + k)]


def ref_subproof(m: int, start: int, end: int, whole: bool) -> list[tuple[int, int]]:
    """The leaf ranges of SUBPROOF(m, D[start:end], b) (RFC 9162 §2.1.4.1)."""
    n = end - start
    if m == n:
        return [] if whole else [(start, end)]
    k = _k(n)
    if m <= k:
        return [*ref_subproof(m, start, start + k, whole), (start + k, end)]
    return [*ref_subproof(m - k, start + k, end, False), (start, start + k)]


class RefTree:
    """Memoized reference hashes of any leaf range of a fixed list of leaf data."""

    def __init__(self, data: Sequence[bytes]) -> None:
        self.data = list(data)
        self.hashes = [merkle.leaf_hash(d) for d in self.data]
        self.range_hash = functools.lru_cache(maxsize=None)(self._range_hash)

    def _range_hash(self, start: int, end: int) -> bytes:
        if end - start == 1:
            return hashlib.sha256(b"\x00" + self.data[start]).digest()
        k = _k(end - start)
        left, right = self.range_hash(start, start + k), self.range_hash(start + k, end)
        return hashlib.sha256(b"\x01" + left + right).digest()

    def root(self, size: int) -> bytes:
        return self.range_hash(0, size) if size else hashlib.sha256(b"").digest()

    def subtree(self, level: int, index: int) -> bytes:
        return self.range_hash(index << level, (index + 1) << level)


def _leaf_data(salt: bytes, count: int) -> list[bytes]:
    # Distinct leaves: a duplicated leaf could make a mutated proof verify by coincidence.
    return [salt + i.to_bytes(4, "big") for i in range(count)]


BIG = RefTree(_leaf_data(b"clearance", MAX_SIZE + 1))


def _verifies_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    try:
        merkle.verify_inclusion(index, size, leaf, proof, root)
    except ProofError:
        return False
    return True


def _verifies_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> bool:
    try:
        merkle.verify_consistency(size1, size2, root1, root2, proof)
    except ProofError:
        return False
    return True


def _flip(value: bytes, byte: int, bit: int) -> bytes:
    out = bytearray(value)
    out[byte] ^= 1 << bit
    return bytes(out)


# --- the public vectors ------------------------------------------------------------------


def test_vectors_folder_is_present() -> None:
    # Without it the parametrized vector tests below would be silently empty.
    assert VECTORS.is_dir(), f"missing {VECTORS}: the repository's test vectors"
    assert len(INCLUSION) >= 90
    assert len(CONSISTENCY) >= 90


@pytest.mark.parametrize("path", INCLUSION, ids=_ids(INCLUSION))
def test_inclusion_vector(path: Path) -> None:
    v = _load(path)
    args = (
        v["leafIdx"],
        v["treeSize"],
        _b64(v["leafHash"]),
        [_b64(p) for p in v["proof"] or []],
        _b64(v["root"]),
    )
    if v["wantErr"]:
        with pytest.raises(ProofError):
            merkle.verify_inclusion(*args)
    else:
        merkle.verify_inclusion(*args)


@pytest.mark.parametrize("path", CONSISTENCY, ids=_ids(CONSISTENCY))
def test_consistency_vector(path: Path) -> None:
    v = _load(path)
    args = (
        v["size1"],
        v["size2"],
        _b64(v["root1"]),
        _b64(v["root2"]),
        [_b64(p) for p in v["proof"] or []],
    )
    if v["wantErr"]:
        with pytest.raises(ProofError):
            merkle.verify_consistency(*args)
    else:
        merkle.verify_consistency(*args)


def test_generated_proofs_equal_the_happy_path_vectors() -> None:
    hashes = [merkle.leaf_hash(d) for d in VECTOR_LEAVES]
    happy = [p for p in INCLUSION + CONSISTENCY if p.name == "happy-path.json"]
    assert len(happy) == 10
    for path in happy:
        v = _load(path)
        want = [_b64(p) for p in v["proof"] or []]
        if "leafIdx" in v:
            tree = hashes[: v["treeSize"]]
            assert merkle.inclusion_proof(tree, v["leafIdx"]) == want, path
            assert merkle.root_of(tree) == _b64(v["root"]), path
            assert hashes[v["leafIdx"]] == _b64(v["leafHash"]), path
        else:
            tree = hashes[: v["size2"]]
            assert merkle.consistency_proof(tree, v["size1"]) == want, path
            assert merkle.root_of(hashes[: v["size1"]]) == _b64(v["root1"]), path
            assert merkle.root_of(tree) == _b64(v["root2"]), path


# --- the tree and the proof plans against the reference -----------------------------------


def test_root_of_matches_naive_mth_for_every_small_size() -> None:
    data = _leaf_data(b"root", 70)
    for size in range(71):
        assert merkle.root_of([merkle.leaf_hash(d) for d in data[:size]]) == ref_mth(data[:size])
    assert merkle.root_of([]) == merkle.EMPTY_ROOT == hashlib.sha256(b"").digest()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=80))
def test_root_of_matches_naive_mth(data: list[bytes]) -> None:
    assert merkle.root_of([merkle.leaf_hash(d) for d in data]) == ref_mth(data)


def test_inclusion_ranges_follow_rfc_path_for_every_size_and_index() -> None:
    for size in range(1, MAX_SIZE + 1):
        for index in range(size):
            assert merkle.inclusion_ranges(index, size) == ref_path(index, 0, size), (index, size)


def test_consistency_ranges_follow_rfc_subproof_for_every_pair() -> None:
    for size2 in range(1, 129):
        for size1 in range(1, size2 + 1):
            want = ref_subproof(size1, 0, size2, True)
            assert merkle.consistency_ranges(size1, size2) == want, (size1, size2)


def _proof_ranges(limit: int) -> set[tuple[int, int]]:
    ranges: set[tuple[int, int]] = set()
    for size in range(1, limit + 1):
        for index in range(size):
            ranges.update(merkle.inclusion_ranges(index, size))
            ranges.update(merkle.consistency_ranges(index + 1, size))
    return ranges


def test_proof_ranges_split_and_fold_to_the_reference_hash() -> None:
    ranges = _proof_ranges(MAX_SIZE)
    assert len(ranges) > 1000
    for start, end in ranges:
        parts = merkle.perfect_subtrees(start, end)
        covered = start
        for level, index in parts:
            assert index << level == covered, (start, end, parts)
            covered += 1 << level
        assert covered == end
        folded = merkle.fold_range([(lv, BIG.subtree(lv, ix)) for lv, ix in parts])
        assert folded == BIG.range_hash(start, end), (start, end)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 5000), st.integers(1, 5000))
def test_perfect_subtrees_are_aligned_maximal_and_cover_the_range(start: int, length: int) -> None:
    end = start + length
    covered = start
    for level, index in merkle.perfect_subtrees(start, end):
        assert index << level == covered
        # Maximal: the next larger aligned block would be misaligned or overshoot.
        assert covered % (2 << level) != 0 or covered + (2 << level) > end
        covered += 1 << level
    assert covered == end


def test_fold_range_rejects_empty_and_non_shrinking_parts() -> None:
    h = merkle.leaf_hash(b"x")
    with pytest.raises(ValueError, match="empty"):
        merkle.fold_range([])
    with pytest.raises(ValueError, match="shrink"):
        merkle.fold_range([(0, h), (0, h)])
    with pytest.raises(ValueError, match="shrink"):
        merkle.fold_range([(0, h), (1, h)])


def test_planning_rejects_impossible_requests() -> None:
    for index, size in ((0, 0), (-1, 3), (3, 3)):
        with pytest.raises(ValueError, match="outside"):
            merkle.inclusion_ranges(index, size)
    with pytest.raises(ValueError, match="empty"):
        merkle.perfect_subtrees(4, 4)
    with pytest.raises(ValueError, match="n >= 2"):
        merkle.split_point(1)


# --- size 0 and what a proof does not bind --------------------------------------------------


def test_consistency_from_size_zero_is_rejected() -> None:
    """Documented choice (merkle module docstring): an empty tree commits to nothing.

    C2SP tlog-witness accepts an empty proof from size 0; clearance does not, matching
    the transparency-dev vectors. Callers that start from an empty tree skip the check.
    """
    root1 = BIG.root(1)
    with pytest.raises(ProofError, match="empty tree"):
        merkle.verify_consistency(0, 1, merkle.EMPTY_ROOT, root1, [])
    with pytest.raises(ProofError, match="empty tree"):
        merkle.verify_consistency(0, 0, merkle.EMPTY_ROOT, merkle.EMPTY_ROOT, [])
    with pytest.raises(ValueError, match="size 0"):
        merkle.consistency_ranges(0, 5)
    with pytest.raises(ValueError, match="size 0"):
        merkle.consistency_proof(BIG.hashes[:5], 0)


def test_an_inclusion_proof_alone_does_not_bind_the_tree_size() -> None:
    # Leaf 0's path in a tree of 3 is (leaf 1, leaf 2); in a tree of 4 it has the same
    # shape, so the same proof and root also "verify" at size 4. Receipts and checkpoint
    # users therefore take the size from the signed checkpoint, never from the proof.
    proof = merkle.inclusion_proof(BIG.hashes[:3], 0)
    merkle.verify_inclusion(0, 3, BIG.hashes[0], proof, BIG.root(3))
    merkle.verify_inclusion(0, 4, BIG.hashes[0], proof, BIG.root(3))
    assert not _verifies_inclusion(0, 4, BIG.hashes[0], proof, BIG.root(4))


# --- exhaustive small trees ----------------------------------------------------------------


def test_every_byte_of_every_small_proof_matters() -> None:
    for size in range(1, 17):
        root = BIG.root(size)
        for index in range(size):
            proof = merkle.inclusion_proof(BIG.hashes[:size], index)
            assert _verifies_inclusion(index, size, BIG.hashes[index], proof, root)
            for j, h in enumerate(proof):
                for byte in range(merkle.HASH_SIZE):
                    bad = [*proof[:j], _flip(h, byte, byte % 8), *proof[j + 1 :]]
                    assert not _verifies_inclusion(index, size, BIG.hashes[index], bad, root)
        for size1 in range(1, size):
            proof = merkle.consistency_proof(BIG.hashes[:size], size1)
            root1 = BIG.root(size1)
            assert _verifies_consistency(size1, size, root1, root, proof)
            for j, h in enumerate(proof):
                for byte in range(merkle.HASH_SIZE):
                    bad = [*proof[:j], _flip(h, byte, 7 - byte % 8), *proof[j + 1 :]]
                    assert not _verifies_consistency(size1, size, root1, root, bad)


# --- hypothesis properties over sizes 1..MAX_SIZE ------------------------------------------


@PROPERTY_SETTINGS
@given(st.data(), st.integers(1, MAX_SIZE), st.binary(max_size=8))
def test_inclusion_proofs_verify_and_resist_mutation(
    data: st.DataObject, size: int, salt: bytes
) -> None:
    tree = RefTree(_leaf_data(salt, MAX_SIZE + 1))
    leaves = tree.hashes[:size]
    index = data.draw(st.integers(0, size - 1), label="index")
    root = merkle.root_of(leaves)
    assert root == tree.root(size)
    proof = merkle.inclusion_proof(leaves, index)
    assert proof == [tree.range_hash(s, e) for s, e in ref_path(index, 0, size)]
    leaf = leaves[index]
    assert merkle.root_from_inclusion_proof(index, size, leaf, proof) == root
    assert _verifies_inclusion(index, size, leaf, proof, root)

    byte, bit = data.draw(st.integers(0, 31), label="byte"), data.draw(st.integers(0, 7))
    assert not _verifies_inclusion(index, size, _flip(leaf, byte, bit), proof, root)
    assert not _verifies_inclusion(index, size, leaf, proof, _flip(root, byte, bit))
    if proof:
        j = data.draw(st.integers(0, len(proof) - 1), label="hash")
        bad = [*proof[:j], _flip(proof[j], byte, bit), *proof[j + 1 :]]
        assert not _verifies_inclusion(index, size, leaf, bad, root)
        assert not _verifies_inclusion(index, size, leaf, proof[:-1], root)
        assert not _verifies_inclusion(index, size, leaf, proof[1:], root)
    extra = data.draw(st.binary(min_size=32, max_size=32), label="extra")
    with pytest.raises(ProofError, match="longer than the tree allows"):
        merkle.verify_inclusion(index, size, leaf, [*proof, extra], root)
    assert not _verifies_inclusion(index, size, leaf, [extra, *proof], root)
    if size > 1:
        other = data.draw(st.integers(0, size - 1).filter(lambda i: i != index), label="other")
        assert not _verifies_inclusion(other, size, leaf, proof, root)
    # Another size, with the root a checkpoint of that size would carry.
    size2 = data.draw(st.integers(index + 1, MAX_SIZE + 1).filter(lambda s: s != size))
    assert not _verifies_inclusion(index, size2, leaf, proof, tree.root(size2))


@PROPERTY_SETTINGS
@given(st.data(), st.integers(1, MAX_SIZE), st.binary(max_size=8))
def test_consistency_proofs_verify_and_resist_mutation(
    data: st.DataObject, size2: int, salt: bytes
) -> None:
    tree = RefTree(_leaf_data(salt, MAX_SIZE + 1))
    size1 = data.draw(st.integers(1, size2), label="size1")
    root1, root2 = tree.root(size1), tree.root(size2)
    proof = merkle.consistency_proof(tree.hashes[:size2], size1)
    want = [tree.range_hash(s, e) for s, e in ref_subproof(size1, 0, size2, True)]
    assert proof == want
    assert _verifies_consistency(size1, size2, root1, root2, proof)
    if size1 == size2:
        assert proof == []
        return

    byte, bit = data.draw(st.integers(0, 31), label="byte"), data.draw(st.integers(0, 7))
    j = data.draw(st.integers(0, len(proof) - 1), label="hash")
    bad = [*proof[:j], _flip(proof[j], byte, bit), *proof[j + 1 :]]
    assert not _verifies_consistency(size1, size2, root1, root2, bad)
    assert not _verifies_consistency(size1, size2, _flip(root1, byte, bit), root2, proof)
    assert not _verifies_consistency(size1, size2, root1, _flip(root2, byte, bit), proof)
    assert not _verifies_consistency(size1, size2, root1, root2, proof[:-1])
    assert not _verifies_consistency(size1, size2, root1, root2, proof[1:])
    extra = data.draw(st.binary(min_size=32, max_size=32), label="extra")
    with pytest.raises(ProofError, match="too long"):
        merkle.verify_consistency(size1, size2, root1, root2, [*proof, extra])
    assert not _verifies_consistency(size1, size2, root1, root2, [extra, *proof])
    assert not _verifies_consistency(size1, size2, root2, root1, proof)
    other1 = data.draw(st.integers(1, size2).filter(lambda s: s != size1), label="other1")
    assert not _verifies_consistency(other1, size2, tree.root(other1), root2, proof)
    other2 = data.draw(st.integers(size1, MAX_SIZE + 1).filter(lambda s: s != size2))
    assert not _verifies_consistency(size1, other2, root1, tree.root(other2), proof)


_hash_like = st.one_of(st.binary(min_size=32, max_size=32), st.binary(max_size=40))


@settings(max_examples=300, deadline=None)
@given(
    st.integers(-3, 40),
    st.integers(-3, 40),
    _hash_like,
    _hash_like,
    st.lists(_hash_like, max_size=8),
)
def test_verifiers_fail_only_with_proof_error(
    a: int, b: int, h1: bytes, h2: bytes, proof: list[bytes]
) -> None:
    # Garbage in: a ProofError or (by astronomically unlikely luck) success, never a crash.
    _verifies_inclusion(a, b, h1, proof, h2)
    _verifies_consistency(a, b, h1, h2, proof)
