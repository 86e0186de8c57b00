"""The public surface is exactly ``clearance.__all__``; changing it is a deliberate act."""

from __future__ import annotations

import clearance

EXPECTED = {
    "ApprovalRequired",
    "Authorization",
    "BindingError",
    "CheckFailed",
    "Cleared",
    "Decision",
    "Denied",
    "Error",
    "EvaluationInput",
    "Gate",
    "GrantClaims",
    "InputError",
    "Intent",
    "InvalidGrant",
    "LedgerError",
    "OutcomeUnrecorded",
    "PolicyEngine",
    "PolicyError",
    "ProofError",
    "Reason",
    "ReplayGuard",
    "SQLiteReplayGuard",
    "SigningKeyError",
    "TamperError",
    "ToolSpec",
    "Trace",
    "VerifiedReceipt",
    "carry",
    "check_redacted",
    "init_home",
    "keys_from_jwks",
    "open_gate",
    "receipt_for_request",
    "verify_grant",
    "verify_receipt",
    "verify_tlog_proof",
}


def test_all_is_pinned() -> None:
    assert set(clearance.__all__) == EXPECTED
    assert len(clearance.__all__) == len(EXPECTED)


def test_every_exported_name_exists_and_is_documented() -> None:
    for name in clearance.__all__:
        value = getattr(clearance, name)
        assert value.__doc__, f"{name} has no docstring"


def test_errors_share_one_root() -> None:
    for name in clearance.__all__:
        value = getattr(clearance, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, clearance.Error), name
