"""The full audit (``verify``) and consistency with a saved checkpoint, on real files."""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearance._bench.ledger import bench_verify
from clearance._internal.canonical import canonical_json
from clearance._internal.ledger.audit import AuditReport, verify
from clearance._internal.ledger.checkpoint import NoteSigner
from clearance._internal.ledger.consistency import check_consistency_with
from clearance._internal.ledger.leaves import parse_leaf
from clearance.errors import Error, InputError, LedgerError, ProofError, TamperError

from .support import ORIGIN, attacker, entry, open_ledger


@pytest.fixture
def signer() -> NoteSigner:
    return NoteSigner.generate(ORIGIN)


def _ledger(path: Path, signer: NoteSigner, count: int) -> None:
    with open_ledger(path, signer, interval=3600) as store:
        for start in range(0, count, 7):
            store.append_many([entry(i) for i in range(start, min(count, start + 7))])
            store.checkpoint_covering(store.size() - 1)


def _replace_leaf(path: Path, idx: int, leaf: bytes) -> None:
    """Store ``leaf`` at ``idx`` with a matching leaf hash (the rest of the row as it was)."""
    conn = attacker(path)
    try:
        (hashes,) = conn.execute("SELECT hashes FROM entries WHERE idx = ?", (idx,)).fetchone()
        digest = hashlib.sha256(b"\x00" + leaf).digest()
        conn.execute(
            "UPDATE entries SET leaf = ?, hashes = ? WHERE idx = ?",
            (leaf, digest + bytes(hashes)[32:], idx),
        )
    finally:
        conn.close()


def test_a_clean_ledger_verifies(tmp_path: Path, signer: NoteSigner) -> None:
    path = tmp_path / "ledger.db"
    _ledger(path, signer, 50)
    report = verify(path, vkey=signer.vkey())
    assert report == AuditReport(
        ok=True,
        size=50,
        checkpoints=8,
        first_bad_index=None,
        message="ledger verified: 50 entries, 8 checkpoints",
    )
    report.raise_for_problems()
    with open_ledger(path, signer) as store:
        assert verify(store).ok
    assert verify(str(path)).key_from_store


def test_an_empty_ledger_verifies(tmp_path: Path, signer: NoteSigner) -> None:
    path = tmp_path / "ledger.db"
    open_ledger(path, signer).close()
    report = verify(path, vkey=signer.vkey())
    assert (report.ok, report.size, report.checkpoints) == (True, 0, 0)


def test_a_non_canonical_leaf_is_reported(tmp_path: Path, signer: NoteSigner) -> None:
    path = tmp_path / "ledger.db"
    _ledger(path, signer, 20)
    spaced = canonical_json(entry(9)).replace(b",", b", ")
    _replace_leaf(path, 9, spaced)
    report = verify(path, vkey=signer.vkey())
    assert report.first_bad_index == 9
    assert any("entry 9 is not in RFC 8785 canonical form" in p for p in report.problems)


@pytest.mark.parametrize(
    ("leaf", "words"),
    [
        (b'{"type":"decision","v":1}', "lacks 'at'"),
        (b'["type","v","at"]', "must be a JSON object"),
        (b"\xff not json", "is not valid JSON"),
    ],
)
def test_a_leaf_that_is_not_an_entry_is_reported(
    tmp_path: Path, signer: NoteSigner, leaf: bytes, words: str
) -> None:
    path = tmp_path / "ledger.db"
    _ledger(path, signer, 20)
    _replace_leaf(path, 4, leaf)
    report = verify(path, vkey=signer.vkey())
    assert report.first_bad_index == 4
    assert any(words in p for p in report.problems)


def test_a_wrong_key_fails_without_an_index(tmp_path: Path, signer: NoteSigner) -> None:
    path = tmp_path / "ledger.db"
    _ledger(path, signer, 10)
    report = verify(path, vkey=NoteSigner.generate(ORIGIN).vkey())
    assert not report.ok
    assert report.first_bad_index is None
    with pytest.raises(TamperError) as failure:
        report.raise_for_problems()
    assert failure.value.index is None
    assert not verify(path, vkey=signer.vkey(), origin="other.example/log").ok


def test_unreadable_sources_raise(tmp_path: Path, signer: NoteSigner) -> None:
    with pytest.raises(LedgerError, match="no ledger"):
        verify(tmp_path / "missing.db")
    plain = tmp_path / "plain.db"
    sqlite3.connect(plain).close()
    with pytest.raises(LedgerError, match="not a clearance ledger"):
        verify(plain)
    path = tmp_path / "ledger.db"
    _ledger(path, signer, 3)
    with pytest.raises(InputError, match="verifier key"):
        verify(path, vkey="not a key")


def test_verify_reads_a_snapshot_while_appends_continue(tmp_path: Path, signer: NoteSigner) -> None:
    path = tmp_path / "ledger.db"
    with open_ledger(path, signer, interval=0.01) as store:
        store.append_many([entry(i) for i in range(200)])
        stop = threading.Event()

        def writer() -> None:
            i = 200
            while not stop.is_set():
                store.append(entry(i))
                i += 1

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            reports = [verify(store) for _ in range(5)]
        finally:
            stop.set()
            thread.join()
        assert all(r.ok for r in reports), [r.message for r in reports]
        assert reports[-1].size >= 200


def test_consistency_with_a_saved_checkpoint(tmp_path: Path, signer: NoteSigner) -> None:
    path = tmp_path / "ledger.db"
    with open_ledger(path, signer, interval=3600) as store:
        store.append_many([entry(i) for i in range(13)])
        saved = store.checkpoint_covering(12).note
        store.append_many([entry(i) for i in range(13, 30)])
        head = check_consistency_with(store, saved, signer.verifier())
        assert head.size == 30  # signed on demand to cover the current log
        assert check_consistency_with(store, head.note, signer.verifier()) == head
        with pytest.raises(ProofError):
            check_consistency_with(store, saved, NoteSigner.generate(ORIGIN).verifier())
        with pytest.raises(ProofError):
            check_consistency_with(store, saved.replace("13\n", "14\n"), signer.verifier())


def test_bench_verify_runs_small(tmp_path: Path) -> None:
    result = bench_verify(tmp_path, size=500)
    assert result["entries"] == 500
    assert result["seconds"] > 0


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


def _by_definition(leaf: bytes) -> bool:
    try:
        return canonical_json(json.loads(leaf)) == leaf
    except Error:
        return False


@settings(max_examples=400, deadline=None)
@given(value=JSON)
def test_parse_leaf_agrees_with_the_definition_of_canonical(value: object) -> None:
    leaves = [
        json.dumps(value).encode(),
        json.dumps(value, sort_keys=True, separators=(",", ":")).encode(),
        json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
            "utf-8", "surrogatepass"
        ),
    ]
    with contextlib.suppress(Error):
        leaves.append(canonical_json(value))
    for leaf in leaves:
        try:
            expected = _by_definition(leaf)
        except ValueError:
            with pytest.raises(ValueError):
                parse_leaf(leaf)
            continue
        assert parse_leaf(leaf)[1] == expected, leaf
