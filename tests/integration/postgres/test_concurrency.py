"""Four processes × eight threads on one PostgreSQL produce exactly one log.

issue 12, "Concurrency test": 4 processes × 8 threads authorize and record 5,000 actions
in total against one PostgreSQL. Afterwards the log audits clean, the entry count is
exact, every acknowledged request has its decision and its outcome, every receipt
verifies, no jti was accepted twice, and the shared trace's spend cap held across
processes (exactly cap / amount payments allowed, never more).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from clearance import open_gate
from clearance._internal.home import DATABASE_ENV, Home, init_home
from clearance._internal.ledger import merkle
from clearance._internal.ledger.receipts import verify_receipt
from clearance._internal.postgres import connect
from clearance._internal.wiring import open_ledger

PROCESSES, THREADS = 4, 8
TOTAL = int(os.environ.get("CLEARANCE_PG_LOAD_ACTIONS", "5000"))
CALLS = TOTAL // (PROCESSES * THREADS)
SPEND_CAP, AMOUNT = 1000, 100


def test_four_processes_make_one_consistent_log(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    init_home(home, now=time.time())
    monkeypatch.setenv(DATABASE_ENV, pg_url)
    with open_gate(home, principal="agent:ops-bot") as gate:
        trace = gate.open_trace(
            "Pay acme-supplies", bounds={"spend_cap": SPEND_CAP}, principal="agent:ops-bot"
        )
        trace_id = trace.trace_id
    outputs = [tmp_path / f"worker-{n}.json" for n in range(PROCESSES)]
    env = {**os.environ, DATABASE_ENV: pg_url}
    workers = [
        subprocess.Popen(
            [
                *(sys.executable, "-m", "tests.integration.postgres.load_worker"),
                *(str(home), trace_id, str(THREADS), str(CALLS), str(out)),
            ],
            env=env,
        )
        for out in outputs
    ]
    for worker in workers:
        assert worker.wait(timeout=240) == 0
    rows: list[dict[str, Any]] = [r for out in outputs for r in json.loads(out.read_text())]
    assert len(rows) == PROCESSES * THREADS * CALLS

    allowed = [r for r in rows if r["effect"] == "allow"]
    payments = [r for r in allowed if r["action"] == "pay_invoice"]
    assert len(payments) == SPEND_CAP // AMOUNT  # the cap held across processes, exactly
    refusals = Counter(rule for r in rows if r["effect"] == "deny" for rule in r["rules"])
    assert set(refusals) == {"payments-within-spend-cap"}

    jtis = [r["jti"] for r in allowed]
    assert len(set(jtis)) == len(jtis)
    with connect(pg_url, autocommit=True) as conn:
        consumed = conn.execute("SELECT count(*) FROM consumed_jti").fetchone()
    assert consumed == (len(jtis),)  # every grant consumed once, none twice

    with open_ledger(Home.load(home)) as ledger:
        size = ledger.size()
        entries = [s.entry for s in ledger.scan(0, size)]
        types = Counter(e["type"] for e in entries)
        assert types["decision"] == len(rows)  # one decision per call, denied ones too
        executions = [e for e in entries if e["type"] == "execution"]
        assert len(executions) == len(allowed)
        assert {e["request_id"] for e in executions} == {r["request_id"] for r in allowed}
        by_index = {r["decision_index"]: r for r in allowed}
        for index, row in by_index.items():
            entry = ledger.get(index).entry
            assert entry["type"] == "decision"
            assert entry["request_id"] == row["request_id"]
        assert set(types) <= {"policy", "trace", "decision", "execution", "key"}
        assert size == sum(types.values())

        checkpoint = ledger.checkpoint_covering(size - 1)
        leaves = [merkle.leaf_hash(s.leaf) for s in ledger.scan(0, checkpoint.size)]
        assert merkle.root_of(leaves) == checkpoint.root  # the stored tree, recomputed
        for index in sorted(by_index):  # every acknowledged decision's receipt
            proof = ledger.inclusion_proof(index, checkpoint.size)
            receipt = {
                "entry": ledger.get(index).entry,
                "leaf_index": index,
                "tree_size": checkpoint.size,
                "inclusion_proof": [base64.b64encode(h).decode() for h in proof],
                "checkpoint": checkpoint.note,
                "log_vkey": ledger.vkey,
            }
            verify_receipt(receipt, ledger.vkey)

    audit = subprocess.run(
        [sys.executable, "-m", "clearance", "log", "verify", "--home", str(home)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr
