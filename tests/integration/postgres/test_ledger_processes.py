"""Many writers on one PostgreSQL log, and the failures between them and the server.

Two stores in one process and three real processes appending at once make one gap-free
log whose every checkpoint is consistent with the one before (the full audit); a store
adopts what others appended only after proving it; a writer backend killed in the middle
of a batch leaves no part of it; an unreachable server fails appends promptly and the
store recovers by itself when it answers again.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit, urlunsplit

import pytest

from clearance._internal.ledger import merkle
from clearance._internal.ledger.audit import verify
from clearance._internal.ledger.checkpoint import NoteSigner, parse_checkpoint
from clearance._internal.ledger.postgres import PostgresLedger
from clearance.errors import LedgerError, TamperError
from tests.integration.ledger.support import ORIGIN, entry

from .ledger_support import attacker, open_pg, raw
from .tcp_proxy import proxy_to

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def signer() -> NoteSigner:
    return NoteSigner.generate(ORIGIN)


def _check_one_log(url: str, signer: NoteSigner, acked: dict[str, int]) -> None:
    """Every acknowledged entry is at its index, indexes are 0..n-1, and the audit passes."""
    assert sorted(acked.values()) == list(range(len(acked)))  # no gap, no index twice
    with open_pg(url, signer) as store:
        assert store.size() == len(acked)
        stored = {e.entry["request_id"]: e.index for e in store.scan()}
        sizes = [cp.size for cp in store.checkpoints()]
    assert stored == acked
    assert sizes == sorted(set(sizes))
    assert len(sizes) > 1
    assert sizes[-1] == len(acked)  # the last close signed everything
    report = verify(url, vkey=signer.vkey(), origin=ORIGIN)  # chain of consistent checkpoints
    assert report.ok, report.message
    assert (report.size, report.checkpoints) == (len(acked), len(sizes))


def test_two_stores_in_one_process_make_one_log(pg_url: str, signer: NoteSigner) -> None:
    stores = [open_pg(pg_url, signer, interval=0.02) for _ in range(2)]
    acked: dict[str, int] = {}
    guard = threading.Lock()
    barrier = threading.Barrier(8)

    def work(store: PostgresLedger, name: str) -> None:
        barrier.wait()
        for k in range(60):
            request_id = f"{name}-{k}"
            index = store.append(entry(k, request_id=request_id))
            with guard:
                acked[request_id] = index

    threads = [
        threading.Thread(target=work, args=(stores[n % 2], f"s{n % 2}t{n}")) for n in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(store.generation > 0 for store in stores)  # each adopted the other's rows
    for store in stores:
        store.close()
    _check_one_log(pg_url, signer, acked)


def test_three_processes_make_one_log(tmp_path: Path, pg_url: str, signer: NoteSigner) -> None:
    open_pg(pg_url, signer).close()  # migrate once, so the workers race on appends only
    outputs = [tmp_path / f"worker-{n}.json" for n in range(3)]
    workers = [
        subprocess.Popen(
            [
                *(sys.executable, "-m", "tests.integration.postgres.ledger_worker"),
                *(pg_url, signer.skey(), "4", "40", f"p{n}", str(out)),
            ],
            cwd=ROOT,
        )
        for n, out in enumerate(outputs)
    ]
    time.sleep(0.3)
    for out in outputs:
        out.with_suffix(".go").touch()
    for worker in workers:
        assert worker.wait(timeout=60) == 0
    acked: dict[str, int] = {}
    for out in outputs:
        acked.update(json.loads(out.read_text()))
    assert len(acked) == 3 * 4 * 40
    _check_one_log(pg_url, signer, acked)


def test_a_store_adopts_another_writers_entries_before_reading_a_trace(
    pg_url: str, signer: NoteSigner
) -> None:
    with open_pg(pg_url, signer) as first, open_pg(pg_url, signer) as second:
        first.append_many([entry(i) for i in range(3)])
        assert second.refresh() is True
        assert second.refresh() is False  # one read when nothing changed
        before = second.generation
        index = first.append(entry(10, trace_id="shared"))
        assert second.last_in_trace("shared", "decision") is None  # not adopted yet
        with second.trace_lock("shared"):
            found = second.last_in_trace("shared", "decision")
        assert found is not None
        assert found.index == index
        assert second.generation == before + 1
        assert second.append(entry(11)) == index + 1
        # A receipt for the other store's entry: signed here, covering it.
        covering = second.checkpoint_covering(index)
        assert covering.size == index + 2
        assert first.checkpoint_covering(index + 1) == covering  # adopted, not signed twice
        parse_checkpoint(covering.note, signer.verifier(), origin=ORIGIN)


def test_rows_that_do_not_extend_the_proven_tree_are_refused(
    pg_url: str, signer: NoteSigner
) -> None:
    with open_pg(pg_url, signer) as store:
        store.append_many([entry(i) for i in range(7)])
        # Row 7 completes subtrees of levels 1-3; its leaf hash is right, its level-1
        # hash is not: the stored tree of 8 does not extend the tree of 7.
        leaf_hash = merkle.leaf_hash(b'{"forged":true}')
        with raw(pg_url) as conn:
            conn.execute(
                "INSERT INTO entries (idx, hashes, type, ref, trace_id, leaf) "
                "VALUES (7, %s, 'decision', 'x', NULL, %s)",
                (leaf_hash + bytes(96), b'{"at":"t","request_id":"x","type":"decision","v":1}'),
            )
        with pytest.raises(TamperError, match="not consistent with the tree this store proved"):
            store.append(entry(7))
        with pytest.raises(TamperError, match="refuses further appends"):
            store.append(entry(8))
        assert store.size() == 7


def test_rows_with_edited_derived_columns_are_not_adopted(pg_url: str, signer: NoteSigner) -> None:
    with open_pg(pg_url, signer) as first, open_pg(pg_url, signer) as second:
        first.append_many([entry(i) for i in range(4)])
        with attacker(pg_url) as conn:
            conn.execute("UPDATE entries SET trace_id = 'elsewhere' WHERE idx = 2")
        with pytest.raises(TamperError, match="trace_id column"):
            second.append(entry(9))
        assert second.size() == 0


def test_a_writer_killed_mid_batch_leaves_no_part_of_it(pg_url: str, signer: NoteSigner) -> None:
    """pg_terminate_backend of the writer while its INSERT is half done: nothing is visible."""
    with open_pg(pg_url, signer) as store, raw(pg_url) as blocker, raw(pg_url) as admin:
        store.append_many([entry(i) for i in range(5)])
        # An uncommitted row at index 7 makes the batch's INSERT (indexes 5-9) wait on the
        # unique index after writing rows 5 and 6: the batch is in flight, half inserted.
        blocker.execute("BEGIN")
        blocker.execute(
            "INSERT INTO entries (idx, hashes, type, ref, trace_id, leaf) "
            "VALUES (7, '\\x00', 'decision', NULL, NULL, '\\x7b7d')"
        )
        outcome: list[BaseException | list[int]] = []

        def append() -> None:
            try:
                outcome.append(store.append_many([entry(i) for i in range(5, 10)]))
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=append)
        thread.start()
        victim = None
        deadline = time.monotonic() + 10
        while victim is None and time.monotonic() < deadline:
            row = admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                (blocker.info.backend_pid,),
            ).fetchone()
            victim = None if row is None else row[0]
        assert victim is not None
        assert victim == store.writer_pid
        admin.execute("SELECT pg_terminate_backend(%s)", (victim,))
        thread.join(timeout=10)
        blocker.execute("ROLLBACK")
        assert len(outcome) == 1
        assert isinstance(outcome[0], LedgerError)
        assert "appending to the ledger" in str(outcome[0])
        assert admin.execute("SELECT count(*) FROM entries WHERE idx >= 5").fetchone() == (0,)
        assert store.size() == 5
        assert store.append(entry(5)) == 5  # a new writer connection, the same log
        assert store.writer_pid != victim
    assert verify(pg_url, vkey=signer.vkey(), origin=ORIGIN).ok


def test_an_unreachable_server_fails_appends_promptly_and_the_store_recovers(
    pg_url: str, signer: NoteSigner
) -> None:
    with proxy_to(pg_url) as proxy, open_pg(proxy.via(pg_url), signer) as store:
        store.append_many([entry(i) for i in range(3)])
        proxy.cut()
        for i in (3, 4):  # the connection is gone, then no new one can be made
            started = time.monotonic()
            with pytest.raises(LedgerError, match="unreachable") as caught:
                store.append(entry(i))
            assert time.monotonic() - started < 2
            assert "postgresql://" in str(caught.value)
        assert store.size() == 3
        proxy.restore()
        assert store.append(entry(3)) == 3  # no restart of the store
        deadline = time.monotonic() + 10
        while True:  # the read pool reconnects in the background
            try:
                assert store.get(3).entry == entry(3)
                break
            except LedgerError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
    assert verify(pg_url, vkey=signer.vkey(), origin=ORIGIN).ok


def test_opening_an_unreachable_server_is_a_prompt_ledger_error(signer: NoteSigner) -> None:
    started = time.monotonic()
    with pytest.raises(LedgerError, match="unreachable or refused"):
        PostgresLedger.open(
            "postgresql://clearance:secret@127.0.0.1:1/ledger", signer=signer, origin=ORIGIN
        )
    assert time.monotonic() - started < 2


def test_the_advisory_lock_serializes_a_batch_behind_another_processes(
    pg_url: str, signer: NoteSigner
) -> None:
    """While another session holds the sequencer, a batch waits (and then goes after it)."""
    from clearance._internal.ledger.postgres_db import sequencer_key

    with open_pg(pg_url, signer) as store, raw(pg_url) as other:
        store.append(entry(0))
        other.execute("BEGIN")
        other.execute("SELECT pg_advisory_xact_lock(%s)", (sequencer_key(ORIGIN),))
        done = threading.Event()

        def append() -> None:
            store.append(entry(1))
            done.set()

        thread = threading.Thread(target=append)
        thread.start()
        assert not done.wait(0.3)  # held up by the other holder
        other.execute("COMMIT")
        assert done.wait(5)
        thread.join()
        assert store.size() == 2


def test_deferred_appends_commit_without_waiting_for_the_flush(
    pg_url: str, signer: NoteSigner
) -> None:
    with open_pg(pg_url, signer, durability="durable") as store:
        assert store.append(entry(0), sync=False) == 0
        assert store.append(entry(1)) == 1
        with raw(pg_url) as conn:
            assert conn.execute("SELECT count(*) FROM entries").fetchone() == (2,)


_APPEND_FOREVER = """
import sys
from clearance._internal.ledger.checkpoint import NoteSigner
from clearance._internal.ledger.postgres import PostgresLedger
from tests.integration.ledger.support import ORIGIN, entry
store = PostgresLedger.open(
    sys.argv[1], signer=NoteSigner.from_skey(sys.argv[2]), origin=ORIGIN,
    checkpoint_interval=3600,
)
k = 0
while True:
    store.append_many([entry(k, request_id=f"killed-{k}"), entry(k + 1)])
    k += 2
"""


def test_a_process_killed_while_appending_stops_nobody_and_its_tail_gets_signed(
    pg_url: str, signer: NoteSigner
) -> None:
    """SIGKILL in the middle of appends (maybe holding the sequencer): the others go on."""
    with open_pg(pg_url, signer, interval=0.05) as survivor:
        survivor.append(entry(0))
        victim = subprocess.Popen(
            [sys.executable, "-c", _APPEND_FOREVER, pg_url, signer.skey()], cwd=ROOT
        )
        try:
            with raw(pg_url) as conn:
                deadline = time.monotonic() + 30
                while (conn.execute("SELECT count(*) FROM entries").fetchone() or (0,))[0] < 200:
                    assert time.monotonic() < deadline
                    time.sleep(0.01)
        finally:
            victim.kill()
            victim.wait()
        started = time.monotonic()
        index = survivor.append(entry(1, request_id="after"))
        assert time.monotonic() - started < 5
        assert survivor.get(index).entry["request_id"] == "after"
        # The victim signed only its first commit; its tail is adopted and signed here.
        deadline = time.monotonic() + 10
        while (cp := survivor.latest_checkpoint()) is None or cp.size < index + 1:
            assert time.monotonic() < deadline, "nobody signed the killed process's tail"
            time.sleep(0.02)
    report = verify(pg_url, vkey=signer.vkey(), origin=ORIGIN)
    assert report.ok, report.message
    assert report.size == index + 1


def test_a_writer_connection_that_died_while_idle_is_replaced_unnoticed(
    pg_url: str, signer: NoteSigner
) -> None:
    """A server restart between batches costs no append: nothing of the next one had run."""
    with open_pg(pg_url, signer) as store, raw(pg_url) as admin:
        store.append(entry(0))
        victim = store.writer_pid
        admin.execute("SELECT pg_terminate_backend(%s)", (victim,))
        time.sleep(0.05)  # the backend is gone; the client has not noticed yet
        assert store.append(entry(1)) == 1
        assert store.writer_pid not in (None, victim)


def test_a_serializable_server_default_does_not_stale_the_head(
    pg_url: str, signer: NoteSigner
) -> None:
    """The sequencer's transactions are READ COMMITTED whatever the database's default: a
    snapshot taken before the lock was granted would miss the previous holder's rows."""
    parts = urlsplit(pg_url)
    options = parse_qs(parts.query)["options"][0] + " -cdefault_transaction_isolation=serializable"
    url = urlunsplit(parts._replace(query=f"options={quote(options, safe='')}"))
    with raw(url) as conn:
        assert conn.execute("SHOW default_transaction_isolation").fetchone() == ("serializable",)
    stores = [open_pg(url, signer) for _ in range(2)]
    acked: list[int] = []
    guard = threading.Lock()

    def work(store: PostgresLedger, n: int) -> None:
        for k in range(25):
            index = store.append(entry(k, request_id=f"{n}-{k}"))
            with guard:
                acked.append(index)

    threads = [threading.Thread(target=work, args=(stores[n % 2], n)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close()
    assert sorted(acked) == list(range(100))
    assert verify(url, vkey=signer.vkey(), origin=ORIGIN).ok
