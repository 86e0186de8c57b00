"""Keys, spool, outcomes and dry runs under an attacker who writes files in the home.

The attacker can write any file in the clearance home but cannot read its private
keys. Every governed body appends to ``ran``; a refusal therefore also proves
nothing executed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clearance._internal.gate.core import Gate
from clearance._internal.gate.spool import DrainReport
from clearance._internal.grants.jwk import jwk_thumbprint, public_jwk
from clearance._internal.grants.keys import JWKS_FILE, SigningKey
from clearance._internal.grants.token import GrantClaims, issue_grant, new_jti
from clearance._internal.home import Home
from clearance._internal.ids import new_id
from clearance._internal.intent import Intent
from clearance._internal.wiring import open_gate
from clearance.errors import Denied, InvalidGrant, LedgerError, OutcomeUnrecorded

from .conftest import FailsExecutions, FixedClock, assemble_gate

PRINCIPAL = "agent:ops-bot"


def attacker_key_in_ring(home: Home, now: float) -> SigningKey:
    """The reported attack: add one's own key to jwks.json as a retired key."""
    private = Ed25519PrivateKey.generate()
    path = home.grant_key_dir / JWKS_FILE
    document = json.loads(path.read_text())
    document["keys"].append(
        {
            **public_jwk(private.public_key()),
            "clearance": {"created": now - 100, "retired": now - 50, "expires": now + 3600},
        }
    )
    path.write_text(json.dumps(document))
    return SigningKey(jwk_thumbprint(private.public_key()), private)


def forged_payment(gate: Gate, key: SigningKey, now: float) -> tuple[str, Intent]:
    intent = Intent.create(
        principal=PRINCIPAL,
        action="pay_invoice",
        args={"to": "evil-corp", "amount": 9000, "currency": "EUR"},
        trace_id=new_id("t", now),
    )
    claims = GrantClaims.for_intent(
        intent,
        issuer=gate.issuer,
        audience=gate.audience,
        policy_digest="sha256:" + "0" * 64,
        request_id=new_id("r", now),
        ledger_index=0,
        now=now,
        lifetime=30,
        jti=new_jti(),
    )
    return issue_grant(key, claims), intent


# --- C9: key injection -----------------------------------------------------------------------


def test_injected_retired_key_in_a_sealed_ring_denies_everything(
    home: Home, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    key = attacker_key_in_ring(home, clock())
    ran: list[str] = []
    with caplog.at_level(logging.ERROR, logger="clearance.gate"):
        gate = open_gate(home.path, principal=PRINCIPAL, clock=clock, durability="relaxed")
    assert "grant key ring refused" in caplog.text
    with gate:
        token, intent = forged_payment(gate, key, clock())
        with pytest.raises(InvalidGrant):
            gate.execute(token, intent, lambda: ran.append("paid"))
        with (
            gate.trace("Pay acme-supplies", bounds={"spend_cap": 600}),
            pytest.raises(Denied) as denied,
            gate.clearance(
                {
                    "action": "pay_invoice",
                    "args": {"to": "acme-supplies", "amount": 1, "currency": "EUR"},
                }
            ),
        ):
            ran.append("legit")
    assert denied.value.reasons == ["signing-key-unavailable"]
    assert ran == []


def test_a_ring_key_never_logged_as_a_key_entry_is_not_trusted(
    home: Home, clock: FixedClock
) -> None:
    # A gate wired with an unsealed ring (as a tool might read it) still refuses a key
    # that the gate never logged while active: the ledger is the second line.
    key = attacker_key_in_ring(home, clock())
    ran: list[str] = []
    with assemble_gate(home.path, clock) as gate:
        token, intent = forged_payment(gate, key, clock())
        with pytest.raises(InvalidGrant) as refused:
            gate.execute(token, intent, lambda: ran.append("paid"))
        assert "kid" in refused.value.audit_reason
        (rejected,) = [e.entry for e in gate.ledger.scan() if e.entry["type"] == "execution"]
        assert rejected["status"] == "rejected"
    assert ran == []


def test_a_logged_key_still_verifies_after_restart(home: Home, clock: FixedClock) -> None:
    ran: list[str] = []
    with (
        open_gate(home.path, principal=PRINCIPAL, clock=clock, durability="relaxed") as gate,
        gate.trace("Read the notes"),
    ):
        auth = gate.authorize({"action": "read_file", "args": {"path": "a.md"}})
    with open_gate(home.path, principal=PRINCIPAL, clock=clock, durability="relaxed") as gate:
        gate.execute(auth.grant, auth.intent, lambda: ran.append("read"))
    assert ran == ["read"]


# --- C12: an outcome that can be recorded nowhere --------------------------------------------


class _FailingSpool:
    def drain(self, append: Any, classify: Any) -> DrainReport:
        return DrainReport()  # nothing spooled yet

    def put(self, entry: Any) -> Path:
        raise LedgerError("spool directory is read-only (simulated by the test)")


def test_outcome_lost_after_the_body_ran_is_a_distinct_error(
    home: Home, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []
    with assemble_gate(
        home.path, clock, wrap_ledger=FailsExecutions, spool=_FailingSpool()
    ) as gate:
        with (
            caplog.at_level(logging.ERROR, logger="clearance.gate"),
            pytest.raises(OutcomeUnrecorded) as lost,
            gate.clearance(
                {"principal": PRINCIPAL, "action": "read_file", "args": {"path": "a.md"}}
            ) as cleared,
        ):
            ran.append("body")
        assert gate.outcomes_unrecorded == 1
    assert ran == ["body"]
    assert lost.value.request_id == cleared.request_id
    assert "ran, but its outcome" in str(lost.value)
    assert f"outcome of request {cleared.request_id} UNRECORDED" in caplog.text


# --- D13: an overridden allow is logged as what happened ----------------------------------------


def test_allow_overridden_by_a_missing_key_is_logged_as_deny(home: Home, clock: FixedClock) -> None:
    for pem in home.grant_key_dir.glob("*.pem"):
        pem.unlink()
    ran: list[str] = []
    with open_gate(home.path, principal=PRINCIPAL, clock=clock, durability="relaxed") as gate:
        with gate.trace("Pay acme-supplies", bounds={"spend_cap": 600}) as trace:
            for _ in range(2):
                with (
                    pytest.raises(Denied),
                    gate.clearance(
                        {
                            "action": "pay_invoice",
                            "args": {"to": "acme-supplies", "amount": 400, "currency": "EUR"},
                        }
                    ),
                ):
                    ran.append("paid")
        first, second = [e.entry for e in gate.ledger.scan() if e.entry["type"] == "decision"]
        assert (first["effect"], first["policy_effect"]) == ("deny", "allow")
        assert first["override"]["reason"].startswith("signing-key-unavailable")
        # nothing was spent: the second decision's facts count no allowed payment
        assert second["facts"]["totals"] == {}
        assert second["facts"]["actions"] == []
        assert gate.replay(first["request_id"]).status == "match"
        assert trace.trace_id == first["trace_id"]
    assert ran == []


# --- D18: check writes nothing -----------------------------------------------------------------


def _snapshot(root: Path) -> dict[str, str]:
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.name.endswith("-shm"):
            files[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def test_check_writes_nothing_in_the_home(home: Home, clock: FixedClock, tmp_path: Path) -> None:
    with (
        open_gate(home.path, principal=PRINCIPAL, clock=clock, durability="relaxed") as gate,
        gate.trace("Read the notes"),
        gate.clearance({"action": "read_file", "args": {"path": "a"}}),
    ):
        pass
    intent = tmp_path / "intent.json"
    intent.write_text(
        json.dumps({"principal": PRINCIPAL, "action": "read_file", "args": {"path": "notes.md"}})
    )
    before = _snapshot(home.path)
    result = subprocess.run(
        [sys.executable, "-m", "clearance", "check", str(intent), "--home", str(home.path)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "CLEARANCE_HOME": ""},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["effect"] == "allow"
    assert _snapshot(home.path) == before
