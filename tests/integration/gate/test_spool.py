"""An outcome the ledger cannot take is spooled to disk and appended on the next open.

The spool is authenticated (fail-closed rule 13): only sealed execution outcomes of
requests whose ``allow`` decision is in the ledger are drained; anything planted in the
directory is quarantined and named, and no spool file name comes from untrusted input.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from clearance._internal.gate.core import Gate
from clearance._internal.gate.spool import Spool
from clearance._internal.home import Home, init_home
from clearance._internal.sealing import SPOOL_PURPOSE, derive_key
from clearance.errors import Denied

from .conftest import FailsExecutions, FixedClock, assemble_gate

SPOOL_NAME = re.compile(r"o-[0-9a-f]{32}\.json")


def spool_of(home: Home, directory: Path) -> Spool:
    """The spool as the gate of ``home`` writes it (sealed with the home's key)."""
    return Spool(directory, derive_key(home.read_log_skey(), SPOOL_PURPOSE))


def fill(path: Path) -> None:
    with path.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass


def build_gate(home_path: Path, spool_dir: Path, replay: Path, clock: FixedClock) -> Gate:
    return assemble_gate(home_path, clock, replay_path=replay, spool_dir=spool_dir)


def test_outcome_is_spooled_when_the_ledger_fails_and_drained_on_reopen(
    tmpfs: Path, tmp_path: Path, clock: FixedClock
) -> None:
    home = init_home(tmpfs / "home", now=clock())
    spool_dir = tmp_path / "spool"
    filler = tmpfs / "filler"
    intent = {
        "principal": "agent:ops-bot",
        "action": "write_file",
        "args": {"path": "a.txt", "content": "hello"},
    }
    with build_gate(home.path, spool_dir, tmp_path / "replay.db", clock) as gate:
        with gate.clearance(intent) as cleared:
            fill(filler)  # the disk fills up while the tool runs
            cleared.record_result({"written": 5})
        request_id = cleared.request_id
        assert not gate.ledger.find("execution", request_id)
        (spooled,) = list(spool_dir.glob("*.json"))
        assert SPOOL_NAME.fullmatch(spooled.name)
        assert json.loads(spooled.read_bytes())["entry"]["status"] == "ok"
        filler.unlink()  # space comes back before the gate closes and signs a checkpoint
    with build_gate(home.path, spool_dir, tmp_path / "replay.db", clock) as gate:
        (execution,) = gate.ledger.find("execution", request_id)
        assert execution.entry["status"] == "ok"
        assert execution.entry["result_digest"] is not None
    assert list(spool_dir.glob("*.json")) == []


def test_drain_skips_outcomes_already_logged(tmp_path: Path, clock: FixedClock) -> None:
    home = init_home(tmp_path / "home", now=clock())
    spool_dir = tmp_path / "spool"
    with build_gate(home.path, spool_dir, tmp_path / "replay.db", clock) as gate:
        with gate.clearance(
            {"principal": "agent:ops-bot", "action": "read_file", "args": {"path": "a"}}
        ) as cleared:
            pass
        (logged,) = gate.ledger.find("execution", cleared.request_id)
        # a crash between the append and the spool file's removal leaves both
        spool_of(home, spool_dir).put(logged.entry)
    with build_gate(home.path, spool_dir, tmp_path / "replay.db", clock) as gate:
        assert len(gate.ledger.find("execution", cleared.request_id)) == 1
    assert list(spool_dir.glob("*.json")) == []


def test_a_forged_rejection_cannot_suppress_a_spooled_outcome(
    tmp_path: Path, clock: FixedClock
) -> None:
    """A rejected entry names its request from an unverified grant; drain must ignore it."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from clearance.errors import InvalidGrant

    home = init_home(tmp_path / "home", now=clock())
    spool_dir = tmp_path / "spool"
    intent = {"principal": "agent:ops-bot", "action": "read_file", "args": {"path": "a"}}
    with build_gate(home.path, spool_dir, tmp_path / "replay.db", clock) as gate:
        auth = gate.authorize(intent, trace=gate.open_trace("Read a"))
        claims = jwt.decode(auth.grant, options={"verify_signature": False})
        forged = jwt.encode(
            claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": "forged"}
        )
        with pytest.raises(InvalidGrant):
            gate.execute(forged, auth.intent, lambda: None)
        (rejected,) = gate.ledger.find("execution", auth.request_id)
        assert rejected.entry["status"] == "rejected"
        assert rejected.entry["unverified_claims"] is True
        # the real outcome could not be logged and was spooled
        spool_of(home, spool_dir).put(
            {**rejected.entry, "status": "ok", "unverified_claims": False}
        )
    with build_gate(home.path, spool_dir, tmp_path / "replay.db", clock) as gate:
        statuses = [e.entry["status"] for e in gate.ledger.find("execution", auth.request_id)]
    assert statuses == ["rejected", "ok"]


def test_planted_spool_files_are_quarantined_never_appended(
    tmp_path: Path, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The reported attack: a planted decision with a negative amount reopened a used-up cap."""
    home = init_home(tmp_path / "home", now=clock())
    spool_dir = tmp_path / "spool"
    payment: dict[str, Any] = {
        "action": "pay_invoice",
        "args": {"to": "acme-supplies", "amount": 490, "currency": "EUR"},
    }
    with build_gate(home.path, spool_dir, tmp_path / "replay.db", clock) as gate:
        trace = gate.open_trace("Pay acme-supplies", bounds={"spend_cap": 600})
        with gate.clearance(payment, trace=trace) as paid:
            pass
        size = gate.ledger.size()
        (decision,) = gate.ledger.find("decision", paid.request_id)
    spool_dir.mkdir(exist_ok=True)
    refund = {**decision.entry, "request_id": "r" + "1" * 24}
    refund["intent"] = {**refund["intent"], "args": {**payment["args"], "amount": -490}}
    planted: dict[str, Any] = {
        "decision.json": refund,  # the old format: a bare entry
        "sealed-by-hand.json": {"entry": refund, "seal": "0" * 64},
        "trace.json": {
            "type": "trace",
            "v": 1,
            "at": "2026-01-01T00:00:00Z",
            "trace_id": trace.trace_id,
            "request_id": "x",
            "mandate": {"text": "pay evil-corp", "bounds": {}},
        },
    }
    for name, content in planted.items():
        (spool_dir / name).write_text(json.dumps(content))
    # a validly sealed outcome (as if the gate had written it) for a decision that does not exist
    orphan = spool_of(home, spool_dir).put(
        {
            "type": "execution",
            "v": 1,
            "at": "2026-01-01T00:00:00Z",
            "request_id": "r" + "2" * 24,
            "trace_id": None,
            "decision_index": 1,
            "jti": "j",
            "status": "ok",
            "error_type": None,
            "result_digest": None,
            "duration_us": 1,
            "executor": "x",
        }
    )
    ran: list[str] = []
    with (
        caplog.at_level(logging.WARNING, logger="clearance.spool"),
        build_gate(home.path, spool_dir, tmp_path / "replay.db", clock) as gate,
    ):
        assert gate.ledger.size() == size
        with (
            pytest.raises(Denied) as over,
            gate.clearance(payment, trace=gate.resume_trace(trace.trace_id)),
        ):
            ran.append("paid again")
    assert "payments-within-spend-cap" in over.value.reasons
    assert ran == []
    quarantined = sorted(p.name for p in (spool_dir / "quarantine").iterdir())
    assert len(quarantined) == 4
    assert list(spool_dir.glob("*.json")) == []
    for name in (*planted, orphan.name):
        assert name in caplog.text


def test_spool_file_names_never_come_from_a_grant(tmp_path: Path, clock: FixedClock) -> None:
    """The reported attack: an absolute ``rid`` in a forged grant overwrote jwks.json."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from clearance.errors import InvalidGrant

    home = init_home(tmp_path / "home", now=clock())
    spool_dir = tmp_path / "spool"
    jwks = home.grant_key_dir / "jwks.json"
    before = jwks.read_bytes()
    with assemble_gate(
        home.path,
        clock,
        replay_path=tmp_path / "replay.db",
        spool_dir=spool_dir,
        wrap_ledger=FailsExecutions,
    ) as gate:
        auth = gate.authorize(
            {"action": "read_file", "args": {"path": "a"}}, trace=gate.open_trace("Read a")
        )
        claims = jwt.decode(auth.grant, options={"verify_signature": False})
        for rid in (str(jwks.with_suffix("")), "../../keys/grant/jwks", "a/b"):
            forged = jwt.encode(
                {**claims, "rid": rid},
                Ed25519PrivateKey.generate(),
                algorithm="EdDSA",
                headers={"kid": "forged"},
            )
            with pytest.raises(InvalidGrant):
                gate.execute(forged, auth.intent, lambda: None)
    assert jwks.read_bytes() == before
    names = sorted(p.name for p in spool_dir.iterdir())
    assert len(names) == 3
    assert all(SPOOL_NAME.fullmatch(name) for name in names)
