"""An outcome the ledger cannot take is spooled to disk and appended on the next open."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clearance.gate import Gate
from clearance.home import init_home
from clearance.spool import Spool

from .conftest import FixedClock, assemble_gate


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
        spooled = list(spool_dir.glob("*.json"))
        assert [p.name for p in spooled] == [f"{request_id}.json"]
        assert json.loads(spooled[0].read_bytes())["status"] == "ok"
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
        Spool(spool_dir).put(logged.entry)
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
        auth = gate.authorize(intent)
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
        Spool(spool_dir).put({**rejected.entry, "status": "ok", "unverified_claims": False})
    with build_gate(home.path, spool_dir, tmp_path / "replay.db", clock) as gate:
        statuses = [e.entry["status"] for e in gate.ledger.find("execution", auth.request_id)]
    assert statuses == ["rejected", "ok"]
