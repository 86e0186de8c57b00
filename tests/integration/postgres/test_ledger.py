"""The PostgreSQL ledger store on the machine's real server: the SQLite store's contract.

Reads, proofs against the reference Merkle implementation, the very same rows, roots and
checkpoint notes as a SQLite ledger fed the same entries, reopening, append-only enforced
by the database, and tampering caught on open and by ``prove``.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearance._internal.canonical import canonical_json
from clearance._internal.ledger import merkle
from clearance._internal.ledger.anchor import CheckpointAnchor
from clearance._internal.ledger.audit import verify
from clearance._internal.ledger.checkpoint import NoteSigner, parse_checkpoint
from clearance._internal.ledger.postgres import PostgresLedger
from clearance._internal.ledger.postgres_schema import MIGRATIONS
from clearance._internal.ledger.sqlite import SQLiteLedger
from clearance.errors import InputError, LedgerError, TamperError
from tests.integration.ledger.support import ORIGIN, entry

from .ledger_support import attacker, open_pg, raw

SRC = Path(__file__).resolve().parents[3] / "src" / "clearance" / "_internal" / "ledger"
FIXED_NOW = 1_795_860_000.0  # 2026-11-28T10:00:00Z, the day support.entry dates entries


@pytest.fixture
def signer() -> NoteSigner:
    return NoteSigner.generate(ORIGIN)


@pytest.fixture
def ledger(pg_url: str, signer: NoteSigner) -> Iterator[PostgresLedger]:
    store = open_pg(pg_url, signer)
    try:
        yield store
    finally:
        store.close()


# --- appending and reading -----------------------------------------------------------------


def test_append_get_scan_find_trace(ledger: PostgresLedger) -> None:
    assert ledger.shared is True
    assert ledger.size() == 0
    assert ledger.root() == merkle.EMPTY_ROOT
    assert [ledger.append(entry(i)) for i in range(3)] == [0, 1, 2]
    assert ledger.append_many([entry(i) for i in range(3, 10)]) == list(range(3, 10))
    assert ledger.append_many([]) == []
    assert ledger.size() == 10

    got = ledger.get(4)
    assert (got.index, got.entry, got.leaf) == (4, entry(4), canonical_json(entry(4)))
    assert ledger.prove(got) == got
    assert [e.index for e in ledger.scan()] == list(range(10))
    assert [e.index for e in ledger.scan(3, 6)] == [3, 4, 5]
    assert [e.index for e in ledger.scan(8, 100)] == [8, 9]
    assert [e.entry for e in ledger.find("decision", "req-7")] == [entry(7)]
    assert ledger.find("execution", "req-7") == []
    assert [e.index for e in ledger.trace("trace-2")] == [2, 7]
    assert ledger.trace("no-such-trace") == []
    last = ledger.last_in_trace("trace-2", "decision")
    assert last is not None
    assert last.index == 7
    assert ledger.last_in_trace("trace-2", "execution") is None
    assert [e.index for e in ledger.of_type("decision", 8)] == [8, 9]


def test_find_uses_the_index_ref_of_each_type(ledger: PostgresLedger) -> None:
    ledger.append({"type": "policy", "v": 1, "at": "t", "digest": "sha256:aa", "bundle": {}})
    ledger.append({"type": "key", "v": 1, "at": "t", "kid": "k1", "jwk": {}})
    ledger.append({"type": "trace", "v": 1, "at": "t", "trace_id": "tr", "mandate": {}})
    ledger.append({"type": "apikey", "v": 1, "at": "t", "name": "ci", "event": "created"})
    assert [e.index for e in ledger.find("policy", "sha256:aa")] == [0]
    assert [e.index for e in ledger.find("key", "k1")] == [1]
    assert [e.index for e in ledger.find("trace", "tr")] == [2]
    assert [e.index for e in ledger.find("apikey", "ci")] == [3]
    assert [e.index for e in ledger.trace("tr")] == [2]


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        (["not", "an", "object"], "JSON object"),
        ({"type": "gossip", "v": 1, "at": "t"}, "entry type"),
        ({"type": "decision", "at": "t"}, "'v'"),
        ({"type": "decision", "v": 1}, "'at'"),
        ({"type": "decision", "v": 1, "at": "t", "x": float("nan")}, "canonical"),
        ({"type": "decision", "v": 1, "at": "t", "trace_id": "a\x00b"}, "NUL"),
    ],
)
def test_malformed_entries_are_refused(ledger: PostgresLedger, bad: object, words: str) -> None:
    ledger.append(entry(0))
    with pytest.raises(InputError, match=words):
        ledger.append_many([entry(1), bad])  # type: ignore[list-item]
    assert ledger.size() == 1
    assert ledger.append(entry(1)) == 1


def test_a_nul_escape_inside_a_leaf_is_stored_and_checked_soundly(
    pg_url: str, signer: NoteSigner
) -> None:
    """jsonb refuses ``\\u0000``, which JSON allows: the row checks must not cry tamper."""
    with open_pg(pg_url, signer) as store, open_pg(pg_url, signer) as other:
        store.append(entry(0, note="before\x00after"))
        store.append(entry(1))
        assert other.refresh()  # the check of adopted rows (guarded statement) passes
        assert other.get(0).entry["note"] == "before\x00after"
    with open_pg(pg_url, signer) as store:  # the check on open (fast, then guarded) passes
        assert store.size() == 2
        assert verify(store).ok


def test_out_of_range_reads_raise_ledger_error(ledger: PostgresLedger) -> None:
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
        lambda: ledger.checkpoint_covering(-1),
    ):
        with pytest.raises(LedgerError):
            call()


# --- proofs agree with the reference implementation -------------------------------------------

N_LEAVES = 70


@pytest.fixture(scope="module")
def proof_ledger(pg_url_module: str) -> Iterator[PostgresLedger]:
    store = open_pg(pg_url_module, NoteSigner.generate(ORIGIN))
    for i in range(N_LEAVES):  # one commit per entry, so rows are written one at a time
        store.append(entry(i))
    try:
        yield store
    finally:
        store.close()


def _reference(store: PostgresLedger) -> list[bytes]:
    return [merkle.leaf_hash(e.leaf) for e in store.scan()]


def test_every_proof_matches_the_reference_for_small_trees(proof_ledger: PostgresLedger) -> None:
    leaves = _reference(proof_ledger)
    for size in range(1, 33):
        root = merkle.root_of(leaves[:size])
        assert proof_ledger.root(size) == root
        for index in range(size):
            proof = proof_ledger.inclusion_proof(index, size)
            assert proof == merkle.inclusion_proof(leaves[:size], index)
        for old in range(1, size + 1):
            proof = proof_ledger.consistency_proof(old, size)
            assert proof == merkle.consistency_proof(leaves[:size], old)
            merkle.verify_consistency(old, size, merkle.root_of(leaves[:old]), root, proof)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_proofs_match_the_reference(proof_ledger: PostgresLedger, data: st.DataObject) -> None:
    leaves = _reference(proof_ledger)
    size = data.draw(st.integers(1, N_LEAVES), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    old = data.draw(st.integers(1, size), label="old")
    assert proof_ledger.root(size) == merkle.root_of(leaves[:size])
    assert proof_ledger.inclusion_proof(index, size) == merkle.inclusion_proof(leaves[:size], index)
    assert proof_ledger.consistency_proof(old, size) == merkle.consistency_proof(leaves[:size], old)


# --- the same log as SQLite ----------------------------------------------------------------------


def _pg_rows(url: str) -> list[tuple[Any, ...]]:
    with raw(url) as conn:
        return conn.execute(
            "SELECT idx, hashes, type, ref, trace_id, leaf FROM entries ORDER BY idx"
        ).fetchall()


def _sqlite_rows(path: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT idx, hashes, type, ref, trace_id, leaf FROM entries ORDER BY idx"
        ).fetchall()
    finally:
        conn.close()


def test_the_same_entries_make_the_same_log_as_sqlite(
    tmp_path: Path, pg_url: str, signer: NoteSigner
) -> None:
    """Row for row, root for root and checkpoint note for checkpoint note, byte-identical."""

    def fixed_clock() -> float:
        return FIXED_NOW

    options: dict[str, Any] = {
        "signer": signer,
        "origin": ORIGIN,
        "checkpoint_interval": 3600,
        "grace": 86_400.0,
        "clock": fixed_clock,
    }
    path = tmp_path / "ledger.db"
    with (
        PostgresLedger.open(pg_url, **options) as pg,
        SQLiteLedger.open(path, **options) as lite,
    ):
        total = 0
        for batch, cover in ((1, True), (2, False), (5, True), (17, False), (40, True), (3, True)):
            entries = [entry(i, extra={"k": i}) for i in range(total, total + batch)]
            if batch == 1:
                assert pg.append(entries[0]) == lite.append(entries[0])
            else:
                assert pg.append_many(entries) == lite.append_many(entries)
            total += batch
            if cover:
                assert pg.checkpoint_covering(total - 1) == lite.checkpoint_covering(total - 1)
        for size in range(1, total + 1):
            assert pg.root(size) == lite.root(size)
        assert pg.consistency_proof(3, total) == lite.consistency_proof(3, total)
        assert pg.inclusion_proof(11, 50) == lite.inclusion_proof(11, 50)
    with (
        PostgresLedger.open(pg_url, **options) as pg,
        SQLiteLedger.open(path, **options) as lite,
    ):
        pg_checkpoints, lite_checkpoints = list(pg.checkpoints()), list(lite.checkpoints())
    assert [cp.size for cp in pg_checkpoints] == [1, 8, 65, 68]
    assert pg_checkpoints == lite_checkpoints  # the signed notes, byte for byte
    assert _pg_rows(pg_url) == _sqlite_rows(path)


# --- opening -------------------------------------------------------------------------------------


def test_reopen_keeps_entries_tree_and_checkpoints(pg_url: str, signer: NoteSigner) -> None:
    with open_pg(pg_url, signer) as store:
        store.append_many([entry(i) for i in range(37)])
        root = store.root()
        first = store.checkpoint_covering(36)
    with open_pg(pg_url, signer, durability="durable") as store:
        assert (store.size(), store.root(), store.latest_checkpoint()) == (37, root, first)
        assert store.get(20).entry == entry(20)
        assert store.append(entry(37)) == 37
        assert store.root() == merkle.root_of(_reference(store))
        merkle.verify_consistency(37, 38, root, store.root(), store.consistency_proof(37, 38))
    with open_pg(pg_url, signer) as store:
        assert [cp.size for cp in store.checkpoints()] == [37, 38]
        parsed = parse_checkpoint(
            store.checkpoint_covering(37).note, signer.verifier(), origin=ORIGIN
        )
        assert (parsed.size, parsed.root) == (38, store.root())
    with raw(pg_url) as conn:
        versions = conn.execute(
            "SELECT version FROM clearance_schema WHERE component = 'ledger'"
        ).fetchall()
    assert versions == [(len(MIGRATIONS),)]


def test_a_database_of_another_log_is_refused(pg_url: str, signer: NoteSigner) -> None:
    with open_pg(pg_url, signer) as store:
        store.append(entry(0))
    with pytest.raises(LedgerError, match="belongs to log"):
        PostgresLedger.open(pg_url, signer=signer, origin="other.example/log")
    with pytest.raises(LedgerError, match="another log"):
        open_pg(pg_url, NoteSigner.generate(ORIGIN))


def test_bad_options_are_input_errors(pg_url: str, signer: NoteSigner) -> None:
    with pytest.raises(InputError):
        PostgresLedger.open(pg_url, signer=signer, origin=ORIGIN, durability="fast")  # type: ignore[arg-type]
    with pytest.raises(InputError):
        PostgresLedger.open(pg_url, signer=signer, origin=ORIGIN, checkpoint_interval=0)
    with pytest.raises(InputError):
        PostgresLedger.open(pg_url, signer=signer, origin=ORIGIN, grace=10)
    with pytest.raises(InputError):
        PostgresLedger.open("mysql://db/x", signer=signer, origin=ORIGIN)


def test_closed_store_refuses_everything(pg_url: str, signer: NoteSigner) -> None:
    store = open_pg(pg_url, signer)
    store.append(entry(0))
    store.close()
    store.close()  # idempotent
    for call in (lambda: store.append(entry(1)), lambda: store.get(0), store.root, store.refresh):
        with pytest.raises(LedgerError, match="closed"):
            call()


# --- append-only, in the database ----------------------------------------------------------


def test_entries_checkpoints_and_meta_cannot_be_changed_through_sql(
    ledger: PostgresLedger,
) -> None:
    ledger.append_many([entry(i) for i in range(3)])
    ledger.checkpoint_covering(2)
    with raw(ledger.url) as conn:
        for sql in (
            "UPDATE entries SET leaf = '\\x00' WHERE idx = 1",
            "DELETE FROM entries WHERE idx = 2",
            "DELETE FROM entries WHERE idx > 1000",  # refused even when it matches nothing
            "TRUNCATE entries",
            "UPDATE checkpoints SET note = ''",
            "DELETE FROM checkpoints",
            "TRUNCATE checkpoints",
            "UPDATE meta SET value = 'x'",
            "DELETE FROM meta",
            "TRUNCATE meta",
        ):
            with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="append-only"):
                conn.execute(sql)
        assert conn.execute("SELECT count(*) FROM entries").fetchone() == (3,)
    assert verify(ledger).ok


def test_no_code_path_updates_or_deletes_rows() -> None:
    sources = "\n".join(p.read_text() for p in SRC.glob("postgres*.py"))
    sql = re.sub(r"BEFORE UPDATE OR DELETE OR TRUNCATE", "", sources)  # the triggers
    assert not re.search(r"\bUPDATE\s+(entries|checkpoints|meta)\b", sql, re.IGNORECASE)
    assert not re.search(r"\bDELETE\s+FROM\b", sql, re.IGNORECASE)
    assert not re.search(r"\bTRUNCATE\s+(TABLE\s+)?(entries|checkpoints|meta)\b", sql, re.I)
    assert not re.search(r"ON\s+CONFLICT[^;]*DO\s+UPDATE", sql, re.IGNORECASE)


# --- tampering -----------------------------------------------------------------------------------


def test_an_edited_leaf_is_caught_by_prove_and_by_the_audit(
    pg_url: str, signer: NoteSigner
) -> None:
    with open_pg(pg_url, signer) as store:
        store.append_many([entry(i) for i in range(12)])
        forged = canonical_json({**entry(5), "effect": "allow", "amount": 10**6})
        with attacker(pg_url) as conn:
            conn.execute("UPDATE entries SET leaf = %s WHERE idx = 5", (forged,))
        with pytest.raises(TamperError, match="entry 5 as stored") as caught:
            store.prove(store.get(5))
        assert caught.value.index == 5
        assert store.prove(store.get(6)).index == 6  # the others still prove
    report = verify(pg_url, vkey=signer.vkey(), origin=ORIGIN)
    assert (report.ok, report.first_bad_index) == (False, 5)


def test_an_edited_derived_column_is_refused_on_open(pg_url: str, signer: NoteSigner) -> None:
    with open_pg(pg_url, signer) as store:
        store.append_many([entry(i) for i in range(8)])
    with attacker(pg_url) as conn:
        conn.execute("UPDATE entries SET trace_id = NULL WHERE idx = 6")  # hide it from its trace
    with pytest.raises(TamperError, match="trace_id column") as caught:
        open_pg(pg_url, signer)
    assert caught.value.index == 6


@pytest.mark.parametrize("when", ["on open", "when adopted"])
def test_a_leaf_that_is_not_json_is_refused(pg_url: str, signer: NoteSigner, when: str) -> None:
    with open_pg(pg_url, signer) as store, open_pg(pg_url, signer) as other:
        store.append_many([entry(i) for i in range(4)])
        with attacker(pg_url) as conn:
            conn.execute("UPDATE entries SET leaf = '\\xfffe' WHERE idx = 2")
        if when == "when adopted":
            with pytest.raises(TamperError, match="entry 2 is not UTF-8") as caught:
                other.refresh()
            assert caught.value.index == 2
            with pytest.raises(TamperError, match="refuses further appends"):
                other.append(entry(9))
            return
    with pytest.raises(TamperError, match="entry 2 is not UTF-8") as caught:
        open_pg(pg_url, signer)
    assert caught.value.index == 2


def test_a_forged_stored_hash_is_refused_before_signing_and_on_open(
    pg_url: str, signer: NoteSigner
) -> None:
    with open_pg(pg_url, signer, interval=3600) as store:
        store.append_many([entry(i) for i in range(6)])  # the first commit is checkpointed
        store.append_many([entry(i) for i in range(6, 12)])
        # Forge the stored hash of subtree [4, 6) (row 5, level 1), which the
        # consistency proof from 6 to 12 uses; the in-memory frontier is untouched.
        with attacker(pg_url) as conn:
            conn.execute(
                "UPDATE entries SET hashes = substring(hashes from 1 for 32) || %s WHERE idx = 5",
                (bytes(32),),
            )
        with pytest.raises(TamperError, match="not consistent"):
            store.checkpoint_covering(11)
        with pytest.raises(TamperError):
            store.append(entry(12))  # fail closed from now on
    with pytest.raises(TamperError, match="not consistent"):
        open_pg(pg_url, signer)


def test_a_rollback_below_the_anchor_is_refused(
    tmp_path: Path, pg_url: str, signer: NoteSigner
) -> None:
    anchor = CheckpointAnchor.for_home(tmp_path / "checkpoints", origin=ORIGIN)
    options: dict[str, Any] = {"signer": signer, "origin": ORIGIN, "anchor": anchor}
    with PostgresLedger.open(pg_url, **options) as store:
        store.append_many([entry(i) for i in range(10)])
    assert anchor.files[0].path.read_text().startswith(f"{ORIGIN}\n10\n")
    with attacker(pg_url) as conn:  # back to a copy of the first 6 entries
        conn.execute("DELETE FROM entries WHERE idx >= 6")
        conn.execute("DELETE FROM checkpoints")
    with pytest.raises(TamperError, match="were removed") as caught:
        PostgresLedger.open(pg_url, **options)
    assert caught.value.index == 6


def test_entries_left_unsigned_beyond_the_grace_are_refused(
    pg_url: str, signer: NoteSigner
) -> None:
    with open_pg(pg_url, signer) as store:
        store.append_many([entry(i) for i in range(5)])
    with attacker(pg_url) as conn:  # as if the writer died before signing them
        conn.execute("DELETE FROM checkpoints")
    with pytest.raises(TamperError, match="covered by no signed checkpoint") as caught:
        PostgresLedger.open(
            pg_url, signer=signer, origin=ORIGIN, grace=60, clock=lambda: FIXED_NOW + 86_400
        )
    assert caught.value.index == 0
    with PostgresLedger.open(  # within the grace they are the writer's, and signed now
        pg_url, signer=signer, origin=ORIGIN, grace=3600, clock=lambda: FIXED_NOW
    ) as store:
        assert store.checkpoint_covering(4).size == 5
