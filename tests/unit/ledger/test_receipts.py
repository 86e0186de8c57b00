"""Receipts and C2SP tlog-proofs over a real in-memory tree and a real Ed25519 log key."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearance._internal.canonical import canonical_json
from clearance._internal.ledger import merkle
from clearance._internal.ledger.checkpoint import NoteSigner, sign_checkpoint
from clearance._internal.ledger.receipts import (
    RECEIPT_FIELDS,
    TLOG_PROOF_HEADER,
    VerifiedReceipt,
    build_receipt,
    to_tlog_proof,
    verify_receipt,
    verify_tlog_proof,
)
from clearance._internal.ledger.store import Checkpoint
from clearance.errors import ProofError

ORIGIN = "clearance.test/receipts"
SIGNER = NoteSigner.generate(ORIGIN)
VKEY = SIGNER.vkey()
STRANGER = NoteSigner.generate(ORIGIN)  # same name, another key: an impostor log


def make_entry(i: int) -> dict[str, Any]:
    return {
        "type": "decision",
        "v": 1,
        "at": f"2025-01-01T00:00:{i % 60:02d}Z",
        "request_id": f"req-{i}",
        "effect": "allow" if i % 3 else "deny",
        "args": {"amount": 12.5 + i, "memo": "caf\u00e9 \u2603", "tags": [i, None, True]},
    }


@dataclass
class Log:
    """An in-memory log: entries, their leaf hashes and a signed checkpoint of all of them."""

    entries: list[dict[str, Any]]
    hashes: list[bytes]
    checkpoint: Checkpoint

    def receipt(self, index: int) -> dict[str, Any]:
        proof = merkle.inclusion_proof(self.hashes, index)
        return build_receipt(self.entries[index], index, self.checkpoint, proof, VKEY)


def make_log(size: int, signer: NoteSigner = SIGNER) -> Log:
    entries = [make_entry(i) for i in range(size)]
    hashes: list[bytes] = [merkle.leaf_hash(canonical_json(e)) for e in entries]
    checkpoint = sign_checkpoint(signer, ORIGIN, size, merkle.root_of(hashes))
    return Log(entries, hashes, checkpoint)


LOG = make_log(11)
INDEX = 6
RECEIPT = LOG.receipt(INDEX)


def fresh() -> dict[str, Any]:
    return copy.deepcopy(RECEIPT)


def failed_step(receipt: Any, vkey: str = VKEY, **kwargs: Any) -> str:
    with pytest.raises(ProofError) as info:
        verify_receipt(receipt, vkey, **kwargs)
    return info.value.step


def _flip_b64(value: str, byte: int = 0) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[byte] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


# --- the happy path -------------------------------------------------------------------------


def test_receipt_has_exactly_the_design_fields() -> None:
    assert set(RECEIPT) == RECEIPT_FIELDS
    assert RECEIPT["entry"] == LOG.entries[INDEX]
    assert RECEIPT["leaf_index"] == INDEX
    assert RECEIPT["tree_size"] == 11
    assert RECEIPT["checkpoint"] == LOG.checkpoint.note
    assert RECEIPT["log_vkey"] == VKEY
    proof = [base64.b64decode(p) for p in RECEIPT["inclusion_proof"]]
    assert proof == merkle.inclusion_proof(LOG.hashes, INDEX)
    json.dumps(RECEIPT)  # plain JSON all the way down


def test_receipt_verifies_offline_from_a_mapping_or_its_json_text() -> None:
    want = VerifiedReceipt(
        entry=LOG.entries[INDEX],
        leaf_index=INDEX,
        tree_size=11,
        root=LOG.checkpoint.root,
        origin=ORIGIN,
    )
    assert verify_receipt(RECEIPT, VKEY) == want
    assert verify_receipt(json.dumps(RECEIPT), VKEY) == want
    assert verify_receipt(RECEIPT, VKEY, origin=ORIGIN) == want


def test_verified_entry_is_detached_from_the_input() -> None:
    receipt = fresh()
    result = verify_receipt(receipt, VKEY)
    receipt["entry"]["effect"] = "changed"
    assert result.entry == LOG.entries[INDEX]


def test_every_leaf_of_the_log_gets_a_verifying_receipt() -> None:
    for index in range(11):
        result = verify_receipt(LOG.receipt(index), VKEY)
        assert result.entry == LOG.entries[index]
        assert result.leaf_index == index


def test_build_refuses_to_return_a_receipt_that_would_not_verify() -> None:
    wrong_proof = merkle.inclusion_proof(LOG.hashes, INDEX + 1)
    with pytest.raises(ProofError) as info:
        build_receipt(LOG.entries[INDEX], INDEX, LOG.checkpoint, wrong_proof, VKEY)
    assert info.value.step == "inclusion"
    proof = merkle.inclusion_proof(LOG.hashes, INDEX)
    with pytest.raises(ProofError) as info:
        build_receipt(LOG.entries[INDEX], INDEX, LOG.checkpoint, proof, STRANGER.vkey())
    assert info.value.step == "signature"
    with pytest.raises(ProofError) as info:
        build_receipt({"x": float("nan")}, INDEX, LOG.checkpoint, proof, VKEY)
    assert info.value.step == "canonical"


# --- each verification step, triggered by one specific mutation ----------------------------

Mutation = Callable[[dict[str, Any]], Any]


def _set(field: str, value: Any) -> Mutation:
    def mutate(r: dict[str, Any]) -> Any:
        r[field] = value
        return r

    return mutate


def _drop(field: str) -> Mutation:
    def mutate(r: dict[str, Any]) -> Any:
        del r[field]
        return r

    return mutate


def _proof(change: Callable[[list[str]], list[Any] | Any]) -> Mutation:
    def mutate(r: dict[str, Any]) -> Any:
        r["inclusion_proof"] = change(r["inclusion_proof"])
        return r

    return mutate


def _entry(change: Callable[[dict[str, Any]], None]) -> Mutation:
    def mutate(r: dict[str, Any]) -> Any:
        change(r["entry"])
        return r

    return mutate


def _checkpoint(change: Callable[[str], str]) -> Mutation:
    def mutate(r: dict[str, Any]) -> Any:
        r["checkpoint"] = change(r["checkpoint"])
        return r

    return mutate


def _flip_signature(note: str) -> str:
    head, _, line = note.rpartition(" ")
    return f"{head} {_flip_b64(line.rstrip(), 10)}\n"


def _text(change: Callable[[str], str]) -> Mutation:
    return lambda r: change(json.dumps(r))


_root_line = base64.b64encode(LOG.checkpoint.root).decode()

FORMAT_CASES: dict[str, Mutation] = {
    "missing-field": _drop("tree_size"),
    "extra-field": _set("comment", "hi"),
    "index-as-string": _set("leaf_index", "6"),
    "index-as-bool": _set("leaf_index", True),
    "negative-index": _set("leaf_index", -1),
    "size-as-float": _set("tree_size", 11.0),
    "proof-not-a-list": _proof(lambda p: " ".join(p)),
    "proof-item-not-string": _proof(lambda p: [1, *p[1:]]),
    "proof-bad-base64": _proof(lambda p: ["!" + p[0][1:], *p[1:]]),
    "proof-non-canonical-base64": _proof(lambda p: [p[0][:-2] + "B=", *p[1:]]),
    "proof-short-hash": _proof(lambda p: [base64.b64encode(bytes(31)).decode(), *p[1:]]),
    "proof-too-long": _proof(lambda p: p * 30),
    "checkpoint-not-string": _set("checkpoint", ["not", "text"]),
    "vkey-not-string": _set("log_vkey", None),
    "entry-not-object": _set("entry", ["decision"]),
    "not-an-object": lambda r: [r],
    "invalid-json": _text(lambda t: t[:-1]),
    "duplicate-key": _text(lambda t: t[:-1] + ', "tree_size": 11}'),
    "nan-constant": _text(lambda t: t.replace('"v": 1', '"v": NaN')),
}

STEP_CASES: dict[str, tuple[Mutation, str]] = {
    "signature-flipped": (_checkpoint(_flip_signature), "signature"),
    "checkpoint-size-edited": (_checkpoint(lambda n: n.replace("\n11\n", "\n12\n")), "signature"),
    "checkpoint-root-edited": (
        _checkpoint(lambda n: n.replace(_root_line, _flip_b64(_root_line))),
        "signature",
    ),
    "checkpoint-by-impostor": (
        _set("checkpoint", make_log(11, STRANGER).checkpoint.note),
        "signature",
    ),
    "checkpoint-truncated": (_checkpoint(lambda n: n[:-1]), "checkpoint-format"),
    "checkpoint-body-malformed": (
        _set("checkpoint", SIGNER.sign(f"{ORIGIN}\n011\n{_root_line}\n")),
        "checkpoint-format",
    ),
    "tree-size-changed": (_set("tree_size", 12), "tree-size"),
    "tree-size-smaller": (_set("tree_size", 10), "tree-size"),
    "entry-not-canonicalizable": (_entry(lambda e: e.update(big=2**60)), "canonical"),
    "entry-nan": (_entry(lambda e: e.update(x=float("nan"))), "canonical"),
    "entry-value-changed": (_entry(lambda e: e.update(effect="allow!")), "inclusion"),
    "entry-field-added": (_entry(lambda e: e.update(extra=1)), "inclusion"),
    "entry-byte-flipped": (_entry(lambda e: e.update(request_id="req-7")), "inclusion"),
    "proof-byte-flipped": (_proof(lambda p: [p[0], _flip_b64(p[1], 31), *p[2:]]), "inclusion"),
    "proof-truncated": (_proof(lambda p: p[:-1]), "inclusion"),
    "proof-extended": (_proof(lambda p: [*p, p[0]]), "inclusion"),
    "proof-reordered": (_proof(lambda p: p[::-1]), "inclusion"),
    "other-index": (_set("leaf_index", INDEX + 1), "inclusion"),
    "index-beyond-tree": (_set("leaf_index", 11), "inclusion"),
}


@pytest.mark.parametrize("case", sorted(FORMAT_CASES))
def test_malformed_receipts_fail_at_the_format_step(case: str) -> None:
    assert failed_step(FORMAT_CASES[case](fresh())) == "format"


@pytest.mark.parametrize("case", sorted(STEP_CASES))
def test_each_mutation_fails_at_its_step(case: str) -> None:
    mutate, step = STEP_CASES[case]
    assert failed_step(mutate(fresh())) == step


def test_a_float_index_in_json_text_fails_at_format() -> None:
    assert failed_step(json.dumps(fresh()).replace('"leaf_index": 6', '"leaf_index": 6.0')) == (
        "format"
    )


def test_the_trusted_vkey_decides_not_the_receipt() -> None:
    # A self-consistent receipt from an impostor log that names its own key.
    impostor = make_log(11, STRANGER)
    proof = merkle.inclusion_proof(impostor.hashes, INDEX)
    forged = build_receipt(
        impostor.entries[INDEX], INDEX, impostor.checkpoint, proof, STRANGER.vkey()
    )
    assert failed_step(forged, VKEY) == "vkey"
    # Relabelled as ours, its checkpoint signature is what fails.
    forged["log_vkey"] = VKEY
    assert failed_step(forged, VKEY) == "signature"
    # Our genuine receipt checked against another key: refused before any crypto.
    assert failed_step(fresh(), STRANGER.vkey()) == "vkey"
    assert failed_step(fresh(), "not a vkey") == "vkey"


def test_origin_is_checked_when_expected() -> None:
    assert failed_step(fresh(), origin="another.log") == "origin"


def test_messages_say_what_broke() -> None:
    cases = {
        "tree_size": FORMAT_CASES["missing-field"],
        "comment": FORMAT_CASES["extra-field"],
        "signed checkpoint is for size 11": STEP_CASES["tree-size-changed"][0],
        "trusted key": STEP_CASES["checkpoint-by-impostor"][0],
        "proof hashes differ": STEP_CASES["entry-value-changed"][0],
        "outside the signed tree of size 11": STEP_CASES["index-beyond-tree"][0],
    }
    for phrase, mutate in cases.items():
        with pytest.raises(ProofError, match=phrase):
            verify_receipt(mutate(fresh()), VKEY)


# --- C2SP tlog-proof -----------------------------------------------------------------------


def test_tlog_proof_follows_the_c2sp_layout() -> None:
    text = to_tlog_proof(RECEIPT)
    head, blank, note = text.partition("\n\n")
    assert blank
    assert note == LOG.checkpoint.note
    lines = head.split("\n")
    leaf = canonical_json(LOG.entries[INDEX])
    assert lines[0] == TLOG_PROOF_HEADER == "c2sp.org/tlog-proof@v1"
    assert lines[1] == "extra " + base64.b64encode(leaf).decode()
    assert lines[2] == f"index {INDEX}"
    assert lines[3:] == RECEIPT["inclusion_proof"]
    bare = to_tlog_proof(RECEIPT, include_entry=False)
    assert bare.split("\n")[1] == f"index {INDEX}"


def test_tlog_proof_round_trips() -> None:
    want = verify_receipt(RECEIPT, VKEY)
    text = to_tlog_proof(RECEIPT)
    assert verify_tlog_proof(text, VKEY) == want
    assert verify_tlog_proof(text, VKEY, entry=LOG.entries[INDEX], origin=ORIGIN) == want
    bare = to_tlog_proof(json.dumps(RECEIPT), include_entry=False)
    leaf = canonical_json(LOG.entries[INDEX])
    assert verify_tlog_proof(bare, VKEY, entry=leaf) == want
    assert verify_tlog_proof(bare, VKEY, entry=LOG.entries[INDEX]) == want


def test_tlog_proof_of_a_single_leaf_tree_has_no_hashes() -> None:
    single = make_log(1)
    text = to_tlog_proof(single.receipt(0))
    assert "\nindex 0\n\n" in text
    assert verify_tlog_proof(text, VKEY).tree_size == 1


def _tlog_step(text: Any, **kwargs: Any) -> str:
    with pytest.raises(ProofError) as info:
        verify_tlog_proof(text, VKEY, **kwargs)
    return info.value.step


def test_tlog_proof_checks_the_entry_the_caller_holds() -> None:
    text = to_tlog_proof(RECEIPT)
    other = LOG.entries[INDEX + 1]
    assert _tlog_step(text, entry=other) == "inclusion"
    assert _tlog_step(text, entry=canonical_json(other)) == "inclusion"
    # The unauthenticated extra data cannot smuggle in another entry either.
    forged_extra = "extra " + base64.b64encode(canonical_json(other)).decode()
    assert _tlog_step(text.replace(text.split("\n")[1], forged_extra)) == "inclusion"
    assert _tlog_step(text, entry=b'{"a": 1}') == "canonical"
    assert _tlog_step(text, entry=b"\xff") == "canonical"
    assert _tlog_step(text, entry=b"[1]") == "canonical"
    assert _tlog_step(to_tlog_proof(RECEIPT, include_entry=False)) == "format"
    assert _tlog_step(text, entry=12) == "format"


def _tlog_cases() -> dict[str, str]:
    text = to_tlog_proof(RECEIPT)
    lines = text.split("\n")
    return {
        "wrong-header": text.replace(TLOG_PROOF_HEADER, "c2sp.org/tlog-proof@v2"),
        "extra-without-space": text.replace("extra ", "extra"),
        "extra-bad-base64": text.replace("extra ", "extra !"),
        "extra-empty": text.replace(lines[1], "extra "),
        "index-leading-zero": text.replace(f"index {INDEX}", f"index 0{INDEX}"),
        "index-negative": text.replace(f"index {INDEX}", f"index -{INDEX}"),
        "index-missing": text.replace(f"index {INDEX}\n", ""),
        "hash-not-base64": text.replace(lines[3], lines[3][:-2] + "B="),
        "hash-short": text.replace(lines[3], base64.b64encode(bytes(31)).decode()),
        "no-blank-line": text.replace("\n\n", "\n", 1),
        "no-checkpoint": text.partition("\n\n")[0] + "\n\n",
        "too-many-hashes": text.replace(lines[3], "\n".join([lines[3]] * 65)),
    }


@pytest.mark.parametrize("case", sorted(_tlog_cases()))
def test_malformed_tlog_proofs_fail_at_the_format_step(case: str) -> None:
    assert _tlog_step(_tlog_cases()[case]) == "format"


def test_tlog_proof_steps_after_format() -> None:
    text = to_tlog_proof(RECEIPT)
    lines = text.split("\n")
    assert _tlog_step(text.replace(lines[3], _flip_b64(lines[3], 5))) == "inclusion"
    assert _tlog_step(text.replace(f"index {INDEX}", f"index {INDEX - 1}")) == "inclusion"
    assert _tlog_step(text.replace("\n11\n", "\n12\n")) == "signature"
    assert _tlog_step(text, origin="another.log") == "origin"
    assert _tlog_step(b"bytes") == "format"
    with pytest.raises(ProofError) as info:
        verify_tlog_proof(text, STRANGER.vkey())
    assert info.value.step == "signature"


# --- hypothesis over tree sizes ------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 150), st.data())
def test_receipts_verify_for_every_size_and_index_and_resist_proof_tampering(
    size: int, data: st.DataObject
) -> None:
    log = make_log(size)
    index = data.draw(st.integers(0, size - 1), label="index")
    receipt = log.receipt(index)
    result = verify_receipt(receipt, VKEY)
    assert (result.leaf_index, result.tree_size, result.entry) == (index, size, log.entries[index])
    assert verify_tlog_proof(to_tlog_proof(receipt), VKEY) == result
    if receipt["inclusion_proof"]:
        j = data.draw(st.integers(0, len(receipt["inclusion_proof"]) - 1), label="hash")
        byte = data.draw(st.integers(0, 31), label="byte")
        receipt["inclusion_proof"][j] = _flip_b64(receipt["inclusion_proof"][j], byte)
        assert failed_step(receipt) == "inclusion"


_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text(alphabet=st.characters(codec="utf-8"), max_size=8), inner, max_size=4
        )
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(max_size=8), _json_values, max_size=5))
def test_any_json_entry_gets_a_receipt_that_verifies(entry: dict[str, Any]) -> None:
    leaf = canonical_json(entry)
    hashes = [merkle.leaf_hash(b"before"), merkle.leaf_hash(leaf)]
    checkpoint = sign_checkpoint(SIGNER, ORIGIN, 2, merkle.root_of(hashes))
    receipt = build_receipt(entry, 1, checkpoint, merkle.inclusion_proof(hashes, 1), VKEY)
    result = verify_receipt(json.dumps(receipt), VKEY)
    assert canonical_json(result.entry) == leaf
    assert verify_tlog_proof(to_tlog_proof(receipt), VKEY) == result
