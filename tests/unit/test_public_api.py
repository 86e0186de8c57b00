"""The public surface is exactly ``clearance.__all__``; changing it is a deliberate act.

The general rule (every public name is intended, documented and sorted) is in
``test_exported_members.py``; this file pins the exact set, so that removing or
adding a name shows up as a change to this list in review.
"""

from __future__ import annotations

import clearance
import clearance.errors
import clearance.executor

EXPECTED = {
    "ApprovalRequired",
    "AsyncClient",
    "Authorization",
    "BindingError",
    "CheckFailed",
    "Cleared",
    "Client",
    "Conflict",
    "Decision",
    "Denied",
    "Error",
    "EvaluationInput",
    "Gate",
    "GrantClaims",
    "GrantGuard",
    "GrantGuardMiddleware",
    "InputError",
    "Intent",
    "InvalidGrant",
    "LedgerError",
    "NotFound",
    "NotPermitted",
    "OutcomeUnrecorded",
    "PolicyEngine",
    "PolicyError",
    "ProofError",
    "Reason",
    "ReplayGuard",
    "SQLiteReplayGuard",
    "SigningKeyError",
    "TamperError",
    "ToolRoute",
    "ToolSpec",
    "Trace",
    "Unauthenticated",
    "VerifiedReceipt",
    "carry",
    "check_redacted",
    "grant_headers",
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


def test_errors_share_one_root() -> None:
    for name in clearance.__all__:
        value = getattr(clearance, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, clearance.Error), name


def test_every_error_is_exported_from_the_package_too() -> None:
    assert set(clearance.errors.__all__) <= set(clearance.__all__)
    for name in clearance.errors.__all__:
        assert getattr(clearance, name) is getattr(clearance.errors, name)


def test_the_executor_module_reexports_the_same_objects() -> None:
    # One class per concept: an executor catching clearance.executor.InvalidGrant
    # must catch what the gate raises, and vice versa.
    assert set(clearance.executor.__all__) <= set(clearance.__all__)
    for name in clearance.executor.__all__:
        assert getattr(clearance.executor, name) is getattr(clearance, name), name
