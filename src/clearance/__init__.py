"""clearance: pre-execution authorization for autonomous AI agents.

The public API is the names in ``__all__`` (pinned by a test); everything else
is implementation and may change. Start with :func:`open_gate` and
:meth:`Gate.clearance`; executors in other processes use :func:`verify_grant`
with :func:`keys_from_jwks`; auditors use :func:`verify_receipt`.
"""

from clearance.cleared import Authorization, Cleared
from clearance.entries import check_redacted
from clearance.errors import (
    ApprovalRequired,
    BindingError,
    Denied,
    Error,
    GateError,
    InputError,
    InvalidGrant,
    LedgerError,
    OutcomeUnrecorded,
    PolicyError,
    ProofError,
    SigningKeyError,
    TamperError,
)
from clearance.gate import Gate
from clearance.grants import GrantClaims, verify_grant
from clearance.home import init_home
from clearance.intent import Intent
from clearance.keys import keys_from_jwks
from clearance.ledger.receipts import (
    VerifiedReceipt,
    receipt_for_request,
    verify_receipt,
    verify_tlog_proof,
)
from clearance.local import open_gate
from clearance.policy.engine import Decision, EvaluationInput, PolicyEngine, Reason, ToolSpec
from clearance.replay import ReplayGuard, SQLiteReplayGuard
from clearance.traces import Trace, carry

__all__ = [
    "ApprovalRequired",
    "Authorization",
    "BindingError",
    "Cleared",
    "Decision",
    "Denied",
    "Error",
    "EvaluationInput",
    "Gate",
    "GateError",
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
]
