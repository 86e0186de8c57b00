"""docs/design.md §4 fail-closed rules 1-9: each test proves the governed body did not run.

The body of every governed call here appends to ``ran``; every test ends by
asserting ``ran`` is empty (and, where it matters, that no grant was issued).
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clearance._internal.gate.core import Gate
from clearance._internal.gate.traces import Trace
from clearance._internal.grants.token import verify_grant
from clearance._internal.home import Home, init_home
from clearance._internal.intent import Intent
from clearance._internal.policy.engine import Decision, EvaluationInput, ToolSpec
from clearance._internal.wiring import open_gate
from clearance.errors import (
    ApprovalRequired,
    Denied,
    InputError,
    InvalidGrant,
    LedgerError,
    PolicyError,
)

from .conftest import FixedClock, assemble_gate, remount

PAYMENT: dict[str, Any] = {
    "principal": "agent:ops-bot",
    "action": "pay_invoice",
    "args": {"to": "acme-supplies", "amount": 120.0, "currency": "EUR"},
}


def governed_attempt(
    gate: Gate, intent: Mapping[str, Any], ran: list[str], trace: Trace | None = None
) -> None:
    """One governed call in a trace whose mandate has a spend cap (a fresh one by default)."""
    with gate.clearance(intent, trace=trace or capped(gate)):
        ran.append("body")


def capped(gate: Gate) -> Trace:
    """A trace whose mandate allows payments (the example bundle denies them without a cap)."""
    return gate.open_trace("Pay acme-supplies", bounds={"spend_cap": 10_000})


def write_bundle(home: Home, text: str) -> None:
    for old in home.policy_dir.glob("*.yaml"):
        old.unlink()
    (home.policy_dir / "bundle.yaml").write_text(text, encoding="utf-8")


def decisions(gate: Gate) -> list[Mapping[str, Any]]:
    return [e.entry for e in gate.ledger.scan() if e.entry["type"] == "decision"]


# --- rule 1: no bundle, or a bundle with no rules ---------------------------------------


def test_rule1_no_bundle_denies_everything(home: Home, clock: FixedClock) -> None:
    ran: list[str] = []
    with assemble_gate(home.path, clock, policy=None) as gate, pytest.raises(Denied) as denied:
        governed_attempt(gate, PAYMENT, ran)
    assert ran == []
    assert [r["rule"] for r in denied.value.decision["reasons"]] == ["default-deny"]


def test_rule1_bundle_without_rules_denies_everything(home: Home, clock: FixedClock) -> None:
    write_bundle(home, "version: 1\nrules: []\n")
    ran: list[str] = []
    with (
        open_gate(home.path, principal="agent:ops-bot", clock=clock) as gate,
        pytest.raises(Denied),
    ):
        governed_attempt(gate, PAYMENT, ran)
    assert ran == []


# --- rule 2: a bad bundle is refused; the last good one stays -------------------------


def test_rule2_bad_bundle_refuses_to_start(home: Home, clock: FixedClock) -> None:
    write_bundle(home, "version: 1\nrules:\n  - id: x\n    effect: allow\n    when: 'args.('\n")
    with pytest.raises(PolicyError, match="refusing to start"):
        open_gate(home.path, principal="agent:ops-bot", clock=clock)


def test_rule2_bad_reload_keeps_last_good_bundle(home: Home, clock: FixedClock) -> None:
    ran: list[str] = []
    with open_gate(home.path, principal="agent:ops-bot", clock=clock) as gate:
        good = gate.engine.digest
        write_bundle(
            home, "version: 1\nrules:\n  - id: allow-all\n    effect: allow\n    bogus: 1\n"
        )
        clock.advance(5)
        assert gate.engine.digest == good
        with pytest.raises(Denied):
            governed_attempt(
                gate,
                {"principal": "agent:ops-bot", "action": "delete_file", "args": {"path": "x"}},
                ran,
            )
    assert ran == []


# --- rule 3: a rule that errors denies, naming the rule --------------------------------


def test_rule3_rule_error_denies_and_names_rule(home: Home, clock: FixedClock) -> None:
    write_bundle(
        home,
        "version: 1\nrules:\n"
        "  - id: allow-small\n    effect: allow\n    when: args.amount < 100.0\n"
        "  - id: broken\n    effect: allow\n    when: args.missing_field == 'x'\n",
    )
    ran: list[str] = []
    with open_gate(home.path, principal="agent:ops-bot", clock=clock) as gate:
        with pytest.raises(Denied) as denied:
            governed_attempt(gate, {**PAYMENT, "args": {"amount": 1.0}}, ran)
        reasons = denied.value.decision["reasons"]
    assert ran == []
    assert any(r["rule"] == "broken" and "missing_field" in r["message"] for r in reasons)


# --- rule 4: ledger failure denies; no grant --------------------------------------------


def test_rule4_read_only_ledger_refuses_to_open(tmpfs: Path, clock: FixedClock) -> None:
    """A ledger that cannot be written is never opened for authorizing (nothing can run)."""
    home = init_home(tmpfs / "home", now=clock())
    with open_gate(home.path, principal="agent:ops-bot", clock=clock) as gate:
        gate.authorize({"principal": "agent:ops-bot", "action": "read_file", "args": {"path": "a"}})
    remount(tmpfs, "ro")
    try:
        with pytest.raises(LedgerError, match="read-only"):
            open_gate(home.path, principal="agent:ops-bot", clock=clock)
    finally:
        remount(tmpfs, "rw")


def test_rule4_full_disk_denies_without_grant(tmpfs: Path, clock: FixedClock) -> None:
    home = init_home(tmpfs / "home", now=clock())
    ran: list[str] = []
    with open_gate(home.path, principal="agent:ops-bot", clock=clock) as gate:
        trace = capped(gate)
        filler = tmpfs / "filler"
        with filler.open("wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
            except OSError:
                pass
        try:
            with pytest.raises(Denied) as denied:
                for _ in range(50):  # small entries can fit in the last free pages
                    governed_attempt(gate, PAYMENT, ran, trace)
        finally:
            filler.unlink()
    assert denied.value.reasons == ["ledger-unavailable"]
    assert len(ran) < 50


# --- rule 5: signing key missing or unreadable -------------------------------------------


def test_rule5_missing_signing_key_denies(home: Home, clock: FixedClock) -> None:
    shutil.rmtree(home.grant_key_dir)
    ran: list[str] = []
    with open_gate(home.path, principal="agent:ops-bot", clock=clock) as gate:
        with pytest.raises(Denied) as denied:
            governed_attempt(gate, PAYMENT, ran)
        (decision,) = decisions(gate)
    assert ran == []
    assert denied.value.reasons == ["signing-key-unavailable"]
    assert decision["grant"] is None
    assert "override" in decision


def test_rule5_corrupt_signing_key_denies(home: Home, clock: FixedClock) -> None:
    for pem in home.grant_key_dir.glob("*.pem"):
        pem.write_bytes(b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
    ran: list[str] = []
    with (
        open_gate(home.path, principal="agent:ops-bot", clock=clock) as gate,
        pytest.raises(Denied) as denied,
    ):
        governed_attempt(gate, PAYMENT, ran)
    assert ran == []
    assert denied.value.reasons == ["signing-key-unavailable"]


# --- rule 6: every grant check -------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def reforge(token: str, key: Ed25519PrivateKey, **changes: Any) -> str:
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    claims.update(changes)
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": header["kid"]})


def signing_key(home: Home) -> Ed25519PrivateKey:
    from clearance._internal.grants.keys import GrantKeyRing

    return GrantKeyRing.load(home.grant_key_dir).signing_key().private_key


def attempt_execute(gate: Gate, token: str, intent: Intent, ran: list[str]) -> str:
    with pytest.raises(InvalidGrant) as rejected:
        gate.execute(token, intent, lambda: ran.append("body"))
    assert str(rejected.value) == "grant rejected"  # opaque outward
    return rejected.value.audit_reason


@pytest.mark.parametrize(
    "case",
    [
        "bad-signature",
        "foreign-key",
        "unknown-kid",
        "alg-none",
        "alg-hs256",
        "expired",
        "not-yet-valid",
        "wrong-audience",
        "wrong-action",
        "digest-mismatch",
        "replayed",
    ],
)
def test_rule6_grant_rejections(home: Home, clock: FixedClock, case: str) -> None:
    ran: list[str] = []
    with open_gate(home.path, principal="agent:ops-bot", clock=clock) as gate:
        auth = gate.authorize(PAYMENT, trace=capped(gate))
        token, intent = auth.grant, auth.intent
        own_key = signing_key(home)
        header, payload, signature = token.split(".")
        if case == "bad-signature":
            sig = bytearray(base64.urlsafe_b64decode(signature + "=="))
            sig[0] ^= 1
            token = f"{header}.{payload}.{b64url(bytes(sig))}"
        elif case == "foreign-key":
            token = reforge(token, Ed25519PrivateKey.generate())
        elif case == "unknown-kid":
            claims = jwt.decode(token, options={"verify_signature": False})
            token = jwt.encode(claims, own_key, algorithm="EdDSA", headers={"kid": "nope"})
        elif case == "alg-none":
            head = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
            token = f"{head}.{payload}."
        elif case == "alg-hs256":
            claims = jwt.decode(token, options={"verify_signature": False})
            kid = jwt.get_unverified_header(token)["kid"]
            from cryptography.hazmat.primitives import serialization

            public = own_key.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            hs_key = public * 2  # PyJWT wants HMAC keys of 32+ bytes
            token = jwt.encode(claims, hs_key, algorithm="HS256", headers={"kid": kid})
        elif case == "expired":
            clock.advance(gate.grant_lifetime + 6)
        elif case == "not-yet-valid":
            token = reforge(token, own_key, nbf=int(clock()) + 30, exp=int(clock()) + 50)
        elif case == "wrong-audience":
            token = reforge(token, own_key, aud="payments-service")
        elif case == "wrong-action":
            token = reforge(token, own_key, act="delete_file")
        elif case == "digest-mismatch":
            intent = Intent.from_json(
                {**intent.to_json(), "args": {**intent.args, "amount": 999.0}}
            )
        elif case == "replayed":
            gate.execute(token, intent, lambda: ran.append("first use"))
            ran.clear()
        reason = attempt_execute(gate, token, intent, ran)
        rejected = [
            e.entry
            for e in gate.ledger.scan()
            if e.entry["type"] == "execution" and e.entry["status"] == "rejected"
        ]
    assert ran == []
    assert reason  # precise reason kept for the audit log ...
    assert rejected[-1]["error_type"] == reason  # ... and recorded there


# --- rule 7: approval pending -> no grant ---------------------------------------------------


def test_rule7_approval_required_issues_no_grant(gate: Gate) -> None:
    ran: list[str] = []
    with pytest.raises(ApprovalRequired) as pending:
        governed_attempt(gate, {**PAYMENT, "args": {**PAYMENT["args"], "amount": 5000.0}}, ran)
    assert ran == []
    (decision,) = decisions(gate)
    assert decision["effect"] == "approval_required"
    assert decision["grant"] is None
    assert decision["approval_id"] == pending.value.approval_id


# --- rule 8: malformed, oversized, unknown fields -------------------------------------------


@pytest.mark.parametrize(
    ("intent", "message"),
    [
        ({**PAYMENT, "sudo": True}, "sudo"),
        ({**PAYMENT, "action": "pay invoice; rm -rf /"}, "action"),
        ({**PAYMENT, "args": {"blob": "x" * 70_000}}, "args"),
        ({**PAYMENT, "args": ["not", "an", "object"]}, "args"),
        ({**PAYMENT, "principal": "agent ops-bot"}, "principal"),
        ({**PAYMENT, "args": {"n": float("nan")}}, "args"),
    ],
)
def test_rule8_malformed_intents_are_rejected(
    gate: Gate, intent: dict[str, Any], message: str
) -> None:
    ran: list[str] = []
    with pytest.raises(InputError, match=message):
        governed_attempt(gate, intent, ran)
    assert ran == []
    assert decisions(gate) == []


# --- rule 9: an unexpected exception inside the gate denies -------------------------------


class ExplodingEngine:
    """A real PolicyEngine plug-in whose evaluation crashes."""

    digest = "sha256:" + "ab" * 32

    def document(self) -> dict[str, Any]:
        return {"version": 1}

    def tool(self, action: str) -> ToolSpec | None:
        return None

    def principal_attributes(self, principal: str) -> Mapping[str, Any]:
        return {}

    def evaluate(self, request: EvaluationInput) -> Decision:
        raise RuntimeError("engine bug")


def test_rule9_unexpected_exception_denies(home: Home, clock: FixedClock) -> None:
    ran: list[str] = []
    gate = assemble_gate(home.path, clock, policy=ExplodingEngine())
    with gate, pytest.raises(Denied) as denied:
        governed_attempt(gate, PAYMENT, ran)
    assert ran == []
    assert denied.value.reasons == ["gate-error"]


def test_rule6_an_in_process_grant_cannot_be_presented_again(gate: Gate) -> None:
    """clearance() grants are addressed to the in-process verifier, which used them once."""
    from clearance._internal.grants.jti_store import SQLiteReplayGuard
    from clearance._internal.grants.keys import keys_from_jwks

    ran: list[str] = []
    with gate.clearance(PAYMENT, trace=capped(gate)) as cleared:
        pass
    assert cleared.claims.aud == gate.in_process_audience != gate.audience
    (decision,) = decisions(gate)
    assert decision["grant"]["aud"] == gate.in_process_audience
    # presented to this gate's executor path ...
    with pytest.raises(InvalidGrant) as rejected:
        gate.execute(cleared.grant, cleared.authorization.intent, lambda: ran.append("body"))
    assert "audience" in rejected.value.audit_reason
    # ... or to a tool service that verifies with the published keys
    assert gate.ledger.size() > 0
    jwks = {"keys": [e.entry["jwk"] for e in gate.ledger.scan() if e.entry["type"] == "key"]}
    guard = SQLiteReplayGuard.open(gate.ledger.path.parent / "tool-replay.db")  # type: ignore[attr-defined]
    try:
        with pytest.raises(InvalidGrant):
            verify_grant(
                cleared.grant,
                cleared.authorization.intent,
                keys=keys_from_jwks(jwks),
                audience=gate.audience,
                now=cleared.claims.iat + 1,
                replay=guard,
            )
    finally:
        guard.close()
    assert ran == []
