"""The SQLite ledger store on real files: reads, proofs, group commit, checkpoints, errors."""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearance._bench.ledger import bench_all, bench_appends, bench_proofs
from clearance._internal.canonical import canonical_json
from clearance._internal.ledger import merkle
from clearance._internal.ledger.audit import verify
from clearance._internal.ledger.checkpoint import NoteSigner, parse_checkpoint
from clearance._internal.ledger.sqlite import SQLiteLedger
from clearance.errors import InputError, LedgerError, SigningKeyError, TamperError
from tests.integration.conftest import mounted_tmpfs

from .support import ORIGIN, attacker, entry, open_ledger

SRC = Path(__file__).resolve().parents[3] / "src" / "clearance" / "_internal" / "ledger"


@pytest.fixture
def signer() -> NoteSigner:
    return NoteSigner.generate(ORIGIN)


@pytest.fixture
def ledger(tmp_path: Path, signer: NoteSigner) -> Iterator[SQLiteLedger]:
    store = open_ledger(tmp_path / "ledger.db", signer)
    try:
        yield store
    finally:
        store.close()


# --- appending and reading -----------------------------------------------------------------


def test_append_get_scan_find_trace(ledger: SQLiteLedger) -> None:
    assert ledger.size() == 0
    assert ledger.root() == merkle.EMPTY_ROOT
    assert [ledger.append(entry(i)) for i in range(3)] == [0, 1, 2]
    assert ledger.append_many([entry(i) for i in range(3, 10)]) == list(range(3, 10))
    assert ledger.append_many([]) == []
    assert ledger.size() == 10

    got = ledger.get(4)
    assert got.index == 4
    assert got.entry == entry(4)
    assert got.leaf == canonical_json(entry(4))

    assert [e.index for e in ledger.scan()] == list(range(10))
    assert [e.index for e in ledger.scan(3, 6)] == [3, 4, 5]
    assert [e.index for e in ledger.scan(8, 100)] == [8, 9]
    assert [e.entry for e in ledger.find("decision", "req-7")] == [entry(7)]
    assert ledger.find("execution", "req-7") == []
    assert [e.index for e in ledger.trace("trace-2")] == [2, 7]
    assert ledger.trace("no-such-trace") == []


def test_find_uses_the_index_ref_of_each_type(ledger: SQLiteLedger) -> None:
    ledger.append({"type": "policy", "v": 1, "at": "t", "digest": "sha256:aa", "bundle": {}})
    ledger.append({"type": "key", "v": 1, "at": "t", "kid": "k1", "jwk": {}})
    ledger.append({"type": "trace", "v": 1, "at": "t", "trace_id": "tr", "mandate": {}})
    assert [e.index for e in ledger.find("policy", "sha256:aa")] == [0]
    assert [e.index for e in ledger.find("key", "k1")] == [1]
    assert [e.index for e in ledger.find("trace", "tr")] == [2]
    assert [e.index for e in ledger.trace("tr")] == [2]


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        (["not", "an", "object"], "JSON object"),
        ({"type": "gossip", "v": 1, "at": "t"}, "entry type"),
        ({"type": "decision", "at": "t"}, "'v'"),
        ({"type": "decision", "v": 1}, "'at'"),
        ({"type": "decision", "v": 1, "at": "t", "x": float("nan")}, "canonical"),
    ],
)
def test_malformed_entries_are_refused(ledger: SQLiteLedger, bad: object, words: str) -> None:
    ledger.append(entry(0))
    with pytest.raises(InputError, match=words):
        ledger.append_many([entry(1), bad])  # type: ignore[list-item]
    assert ledger.size() == 1
    assert ledger.append(entry(1)) == 1


def test_out_of_range_reads_raise_ledger_error(ledger: SQLiteLedger) -> None:
    ledger.append_many([entry(i) for i in range(4)])
    for call in (
        lambda: ledger.get(4),
        lambda: ledger.get(-1),
        lambda: ledger.root(5),
        lambda: ledger.inclusion_proof(4, 4),
        lambda: ledger.inclusion_proof(0, 5),
        lambda: ledger.consistency_proof(0, 4),
        lambda: ledger.consistency_proof(3, 2),
        lambda: ledger.consistency_proof(1, 5),
        lambda: list(ledger.scan(-1)),
    ):
        with pytest.raises(LedgerError):
            call()


# --- proofs agree with the reference implementation ---------------------------------------

N_LEAVES = 70


@pytest.fixture(scope="module")
def proof_ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SQLiteLedger]:
    path = tmp_path_factory.mktemp("proofs") / "ledger.db"
    store = open_ledger(path, NoteSigner.generate(ORIGIN))
    for i in range(N_LEAVES):  # one commit per entry, so rows are written one at a time
        store.append(entry(i))
    try:
        yield store
    finally:
        store.close()


def _reference(store: SQLiteLedger) -> list[bytes]:
    return [merkle.leaf_hash(e.leaf) for e in store.scan()]


def test_every_proof_matches_the_reference_for_small_trees(proof_ledger: SQLiteLedger) -> None:
    leaves = _reference(proof_ledger)
    for size in range(1, 33):
        root = merkle.root_of(leaves[:size])
        assert proof_ledger.root(size) == root
        for index in range(size):
            proof = proof_ledger.inclusion_proof(index, size)
            assert proof == merkle.inclusion_proof(leaves[:size], index)
            merkle.verify_inclusion(index, size, leaves[index], proof, root)
        for old in range(1, size + 1):
            proof = proof_ledger.consistency_proof(old, size)
            assert proof == merkle.consistency_proof(leaves[:size], old)
            merkle.verify_consistency(old, size, merkle.root_of(leaves[:old]), root, proof)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_proofs_match_the_reference(proof_ledger: SQLiteLedger, data: st.DataObject) -> None:
    leaves = _reference(proof_ledger)
    size = data.draw(st.integers(1, N_LEAVES), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    old = data.draw(st.integers(1, size), label="old")
    assert proof_ledger.root(size) == merkle.root_of(leaves[:size])
    assert proof_ledger.inclusion_proof(index, size) == merkle.inclusion_proof(leaves[:size], index)
    assert proof_ledger.consistency_proof(old, size) == merkle.consistency_proof(leaves[:size], old)


def test_batched_appends_store_the_same_tree(tmp_path: Path, signer: NoteSigner) -> None:
    with open_ledger(tmp_path / "batched.db", signer) as store:
        sizes = [1, 2, 5, 1, 17, 3, 40, 1]
        for n in sizes:
            base = store.size()
            store.append_many([entry(i) for i in range(base, base + n)])
        leaves = [merkle.leaf_hash(canonical_json(entry(i))) for i in range(sum(sizes))]
        assert _reference(store) == leaves
        for size in (1, 3, 8, 24, 69, 70):
            assert store.root(size) == merkle.root_of(leaves[:size])
            assert store.inclusion_proof(size - 1, 70) == merkle.inclusion_proof(leaves, size - 1)


def test_a_batch_larger_than_one_statement_is_one_transaction(
    tmp_path: Path, signer: NoteSigner
) -> None:
    with open_ledger(tmp_path / "big.db", signer) as store:
        store.append_many([entry(i) for i in range(9000)])
        assert store.size() == 9000
        assert store.commits == 1
        assert verify(store).ok


# --- reopening ---------------------------------------------------------------------------------


def test_reopen_keeps_entries_tree_and_checkpoints(tmp_path: Path, signer: NoteSigner) -> None:
    path = tmp_path / "ledger.db"
    with open_ledger(path, signer) as store:
        store.append_many([entry(i) for i in range(37)])
        root = store.root()
        first = store.checkpoint_covering(36)
    with open_ledger(path, signer, durability="durable") as store:
        assert store.size() == 37
        assert store.root() == root
        assert store.latest_checkpoint() == first
        assert store.get(20).entry == entry(20)
        assert store.append(entry(37)) == 37
        leaves = _reference(store)
        assert store.root() == merkle.root_of(leaves)
        proof = store.consistency_proof(37, 38)
        merkle.verify_consistency(37, 38, root, store.root(), proof)
    with open_ledger(path, signer) as store:
        assert store.size() == 38
        assert [cp.size for cp in store.checkpoints()] == [37, 38]


def test_reopen_with_another_origin_is_refused(tmp_path: Path, signer: NoteSigner) -> None:
    path = tmp_path / "ledger.db"
    with open_ledger(path, signer) as store:
        store.append(entry(0))
    with pytest.raises(LedgerError, match="belongs to log"):
        SQLiteLedger.open(path, signer=signer, origin="other.example/log")


def test_reopen_with_another_key_is_refused(tmp_path: Path, signer: NoteSigner) -> None:
    path = tmp_path / "ledger.db"
    with open_ledger(path, signer) as store:
        store.append(entry(0))
    with pytest.raises(TamperError, match="does not verify"):
        open_ledger(path, NoteSigner.generate(ORIGIN))


def test_opening_a_non_ledger_file_fails_cleanly(tmp_path: Path, signer: NoteSigner) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LedgerError, match="corrupt or not a SQLite database"):
        open_ledger(junk, signer)
    with pytest.raises(LedgerError, match="cannot open"):
        open_ledger(tmp_path / "missing-dir" / "ledger.db", signer)


def test_bad_options_are_input_errors(tmp_path: Path, signer: NoteSigner) -> None:
    with pytest.raises(InputError):
        SQLiteLedger.open(tmp_path / "a.db", signer=signer, origin=ORIGIN, durability="fast")  # type: ignore[arg-type]
    with pytest.raises(InputError):
        SQLiteLedger.open(tmp_path / "a.db", signer=signer, origin=ORIGIN, checkpoint_interval=0)


def test_closed_store_refuses_everything(tmp_path: Path, signer: NoteSigner) -> None:
    store = open_ledger(tmp_path / "ledger.db", signer)
    store.append(entry(0))
    store.close()
    store.close()  # idempotent
    for call in (lambda: store.append(entry(1)), lambda: store.get(0), store.root):
        with pytest.raises(LedgerError, match="closed"):
            call()


# --- group commit ------------------------------------------------------------------------------


def test_eight_writers_get_unique_consecutive_indices(tmp_path: Path, signer: NoteSigner) -> None:
    per_thread, writers = 150, 8
    with open_ledger(tmp_path / "ledger.db", signer, durability="durable") as store:
        got: dict[int, list[int]] = {}
        barrier = threading.Barrier(writers)

        def work(w: int) -> None:
            barrier.wait()
            got[w] = [store.append(entry(w * 1000 + k)) for k in range(per_thread)]

        threads = [threading.Thread(target=work, args=(w,)) for w in range(writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        total = per_thread * writers
        indices = sorted(i for ids in got.values() for i in ids)
        assert indices == list(range(total))
        assert store.size() == total
        assert store.commits < total  # appends shared commits
        for w, ids in got.items():
            assert ids == sorted(ids)  # one thread's appends keep their order
            for k, index in enumerate(ids):
                assert store.get(index).entry == entry(w * 1000 + k)
        assert verify(store).ok


def test_a_commit_that_meets_another_writers_rows_adopts_them_and_goes_again(
    tmp_path: Path, signer: NoteSigner
) -> None:
    path = tmp_path / "ledger.db"
    with open_ledger(path, signer) as store:
        store.append_many([entry(i) for i in range(5)])
        root = store.root()
        # A second writer (a CLI creating an API key beside a server) takes index 5.
        with open_ledger(path, signer) as intruder:
            assert intruder.append(entry(100)) == 5
        # The first attempt fails on index 5; the store proves and adopts the row, then
        # commits the batch after it. It never hands out 5.
        assert store.append(entry(5)) == 6
        assert store.generation == 1
        assert store.size() == 7
        assert store.root(5) == root
        assert store.get(5).entry == entry(100)
        assert store.get(6).entry == entry(5)
        assert store.append(entry(6)) == 7
        assert verify(store).ok


# --- checkpoints ----------------------------------------------------------------------------


def test_two_stores_signing_the_same_tree_agree_on_one_checkpoint(
    tmp_path: Path, signer: NoteSigner
) -> None:
    """A CLI beside a server: both sign size 8; the second finds the same note stored."""
    path = tmp_path / "ledger.db"
    with open_ledger(path, signer, interval=3600) as first:
        first.append_many([entry(i) for i in range(5)])  # the first commit is checkpointed
        first.append_many([entry(i) for i in range(5, 8)])
        with open_ledger(path, signer, interval=3600) as second:
            signed = first.checkpoint_covering(7)
            assert signed.size == 8
            again = second.checkpoint_covering(7)  # stored already: the very same note
            assert again == signed
            assert second.append(entry(8)) == 8
        assert verify(first).ok


def test_checkpoint_covering_signs_on_demand(tmp_path: Path, signer: NoteSigner) -> None:
    with open_ledger(tmp_path / "ledger.db", signer, interval=3600) as store:
        store.append_many([entry(i) for i in range(3)])
        first = store.latest_checkpoint()
        assert first is not None
        assert first.size == 3  # the first commit is always checkpointed
        store.append_many([entry(i) for i in range(3, 10)])
        assert store.latest_checkpoint() == first  # within the interval: no new one
        cp = store.checkpoint_covering(9)
        assert cp.size == 10
        assert store.checkpoint_covering(5) == cp
        parsed = parse_checkpoint(cp.note, signer.verifier(), origin=ORIGIN)
        assert (parsed.size, parsed.root) == (10, store.root())
        with pytest.raises(LedgerError, match="not committed"):
            store.checkpoint_covering(10, timeout=0.05)


def test_checkpoint_covering_waits_for_the_index(tmp_path: Path, signer: NoteSigner) -> None:
    with open_ledger(tmp_path / "ledger.db", signer, interval=3600) as store:
        store.append(entry(0))
        timer = threading.Timer(0.1, lambda: store.append_many([entry(1), entry(2)]))
        timer.start()
        cp = store.checkpoint_covering(2, timeout=5)
        timer.join()
        assert cp.size == 3


def test_at_most_one_checkpoint_per_interval_and_a_final_one(
    tmp_path: Path, signer: NoteSigner
) -> None:
    path = tmp_path / "ledger.db"
    interval = 0.05
    with open_ledger(path, signer, interval=interval) as store:
        start = time.monotonic()
        while time.monotonic() - start < 0.4:
            store.append(entry(store.size()))
        elapsed = time.monotonic() - start
        size = store.size()
    with open_ledger(path, signer) as store:
        sizes = [cp.size for cp in store.checkpoints()]
    assert sizes == sorted(set(sizes))
    assert len(sizes) <= elapsed / interval + 2  # rate-limited, plus the final one
    assert sizes[-1] == size  # close signed the rest


def test_a_checkpoint_that_cannot_be_signed_is_logged_and_retried(
    tmp_path: Path,
    signer: NoteSigner,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from clearance._internal.ledger import sqlite_checkpoints

    def unavailable(*args: object) -> None:
        raise SigningKeyError("the log key's token was unplugged (simulated)")

    with open_ledger(tmp_path / "ledger.db", signer, interval=3600) as store:
        with caplog.at_level(logging.INFO, logger="clearance.ledger"):
            monkeypatch.setattr(sqlite_checkpoints, "sign_checkpoint", unavailable)
            store.append(entry(0))  # committed, but not signed
            store.append(entry(1))  # the same failure again: logged once
            assert store.latest_checkpoint() is None
            monkeypatch.undo()
            store.append(entry(2))  # retried on the next commit
        cp = store.latest_checkpoint()
        assert cp is not None
        assert cp.size == 3
    records = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "clearance.ledger"]
    assert records == [
        (
            logging.ERROR,
            f"no checkpoint signed for 1 entries of {tmp_path / 'ledger.db'}: cannot sign a "
            f"checkpoint for {tmp_path / 'ledger.db'}: the log key's token was unplugged "
            "(simulated)",
        ),
        (logging.INFO, f"checkpoint 3 of {tmp_path / 'ledger.db'} signed: signing works again"),
    ]


def test_the_ticker_checkpoints_an_idle_log(tmp_path: Path, signer: NoteSigner) -> None:
    with open_ledger(tmp_path / "ledger.db", signer, interval=0.3) as store:
        store.append(entry(0))  # the first commit is signed at once
        started = time.monotonic()
        store.append_many([entry(1), entry(2)])
        if time.monotonic() - started < 0.3:  # within the interval: left to the ticker
            cp = store.latest_checkpoint()
            assert cp is not None
            assert cp.size == 1
        deadline = time.monotonic() + 5
        while (cp := store.latest_checkpoint()) is None or cp.size < 3:
            assert time.monotonic() < deadline, "no checkpoint covered the idle log"
            time.sleep(0.01)


def test_refuses_to_sign_a_tree_inconsistent_with_its_checkpoint(
    tmp_path: Path, signer: NoteSigner
) -> None:
    path = tmp_path / "ledger.db"
    with open_ledger(path, signer, interval=3600) as store:
        store.append_many([entry(i) for i in range(6)])  # the first commit is checkpointed
        store.append_many([entry(i) for i in range(6, 12)])
        # Forge the stored hash of subtree [4, 6) (row 5, level 1), which the
        # consistency proof from 6 to 12 uses; the in-memory frontier is untouched.
        raw = attacker(path)
        (hashes,) = raw.execute("SELECT hashes FROM entries WHERE idx = 5").fetchone()
        raw.execute(
            "UPDATE entries SET hashes = ? WHERE idx = 5", (bytes(hashes[:32]) + bytes(32),)
        )
        raw.close()
        with pytest.raises(TamperError, match="not consistent"):
            store.checkpoint_covering(11)
        with pytest.raises(TamperError):
            store.append(entry(12))  # fail closed from now on
        assert store.size() == 12
        assert store.latest_checkpoint() is not None
    with pytest.raises(TamperError, match="not consistent"):
        open_ledger(path, signer)


def test_entries_and_checkpoints_cannot_be_changed_through_sqlite(
    ledger: SQLiteLedger,
) -> None:
    ledger.append_many([entry(i) for i in range(3)])
    ledger.checkpoint_covering(2)
    conn = sqlite3.connect(ledger.path)
    try:
        for sql in (
            "UPDATE entries SET leaf = x'00' WHERE idx = 1",
            "DELETE FROM entries WHERE idx = 2",
            "UPDATE checkpoints SET note = ''",
            "DELETE FROM checkpoints",
            "UPDATE meta SET value = 'x'",
            "DELETE FROM meta",
        ):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(sql)
    finally:
        conn.close()


def test_no_code_path_updates_or_deletes_rows() -> None:
    sources = "\n".join(p.read_text() for p in SRC.glob("sqlite*.py"))
    sources += (SRC / "audit.py").read_text()
    assert not re.search(r"\bUPDATE\s+(entries|checkpoints|meta)\b", sources, re.IGNORECASE)
    assert not re.search(r"\bDELETE\s+FROM\b", sources, re.IGNORECASE)
    assert not re.search(r"\bINSERT\s+OR\s+REPLACE\b|\bREPLACE\s+INTO\b", sources, re.IGNORECASE)


# --- read-only file and full disk ------------------------------------------------------------


def test_read_only_ledger_file_fails_appends(tmp_path: Path, signer: NoteSigner) -> None:
    path = tmp_path / "ledger.db"
    with open_ledger(path, signer) as store:
        store.append_many([entry(i) for i in range(3)])
    if os.geteuid() == 0:  # root ignores file modes; the immutable attribute binds root too
        if subprocess.run(["chattr", "+i", str(path)], check=False).returncode != 0:
            pytest.skip("chattr +i is not supported on this filesystem")
        undo = ["chattr", "-i", str(path)]
    else:
        path.chmod(0o444)
        undo = ["chmod", "644", str(path)]
    try:
        store = open_ledger(path, signer)
        try:
            assert store.get(2).entry == entry(2)  # reads still work
            with pytest.raises(LedgerError, match="read-only"):
                store.append(entry(3))
            assert store.size() == 3
        finally:
            store.close()
    finally:
        subprocess.run(undo, check=True)
    with open_ledger(path, signer) as store:
        assert store.append(entry(3)) == 3


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs (needs root)."""
    with mounted_tmpfs(tmp_path / "tiny", "256k") as mount:
        yield mount


def test_full_disk_fails_appends_and_recovers(tiny_fs: Path, signer: NoteSigner) -> None:
    path = tiny_fs / "ledger.db"
    store = open_ledger(path, signer)
    try:
        padding = "x" * 2000
        failure: LedgerError | None = None
        for i in range(10_000):
            try:
                assert store.append(entry(i, padding=padding)) == i
            except LedgerError as exc:
                failure = exc
                break
        assert failure is not None
        assert "disk full" in failure.diagnostics()
        size = store.size()
        assert size == i
        assert size > 0
        assert store.get(size - 1).entry == entry(size - 1, padding=padding)
        subprocess.run(["mount", "-o", "remount,size=16m", str(tiny_fs)], check=True)
        assert store.append(entry(size, padding=padding)) == size  # no index was lost
        assert verify(store).ok
    finally:
        store.close()


def test_read_only_filesystem_is_named_as_such(tiny_fs: Path, signer: NoteSigner) -> None:
    path = tiny_fs / "ledger.db"
    with open_ledger(path, signer) as store:
        store.append(entry(0))
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_fs)], check=True)
    with pytest.raises(LedgerError, match="read-only"):
        open_ledger(path, signer)


# --- benchmark functions run small ------------------------------------------------------------


def test_bench_functions_return_numbers(tmp_path: Path) -> None:
    appends = bench_appends(tmp_path, count=80, writers=(1, 4), modes=("relaxed",), repeats=1)
    assert set(appends) == {"relaxed/1w", "relaxed/4w"}
    assert all(v["appends_per_s"] > 0 for v in appends.values())
    proofs = bench_proofs(tmp_path, sizes=(100, 300), samples=20)
    assert set(proofs) == {100, 300}
    assert all(v["inclusion_p50_ms"] > 0 and v["consistency_p50_ms"] > 0 for v in proofs.values())


def test_bench_all_runs_small(tmp_path: Path) -> None:
    result = bench_all(tmp_path, append_count=16, sizes=(50, 120), samples=5, repeats=1)
    assert set(result["appends"]) == {"durable/1w", "durable/8w", "relaxed/1w", "relaxed/8w"}
    assert set(result["proofs"]) == {50, 120}
    assert result["verify"]["entries"] == 120
