"""clearance: pre-execution authorization for autonomous AI agents.

The public API is the names in ``__all__`` (pinned by a test); everything else
is implementation and may change. Start with :func:`open_gate` and
:meth:`Gate.clearance`; executors in other processes use :func:`verify_grant`
with :func:`keys_from_jwks`; auditors use :func:`verify_receipt`.
"""

from clearance._internal.entries import check_redacted
from clearance._internal.gate.cleared import Authorization, Cleared
from clearance._internal.gate.core import Gate
from clearance._internal.gate.traces import Trace, carry
from clearance._internal.grants.jti_store import ReplayGuard, SQLiteReplayGuard
from clearance._internal.grants.keys import keys_from_jwks
from clearance._internal.grants.token import GrantClaims, verify_grant
from clearance._internal.home import init_home
from clearance._internal.intent import Intent
from clearance._internal.ledger.receipts import (
    VerifiedReceipt,
    receipt_for_request,
    verify_receipt,
    verify_tlog_proof,
)
from clearance._internal.policy.engine import (
    Decision,
    EvaluationInput,
    PolicyEngine,
    Reason,
    ToolSpec,
)
from clearance._internal.wiring import open_gate
from clearance.errors import (
    ApprovalRequired,
    BindingError,
    CheckFailed,
    Denied,
    Error,
    InputError,
    InvalidGrant,
    LedgerError,
    OutcomeUnrecorded,
    PolicyError,
    ProofError,
    SigningKeyError,
    TamperError,
)

__all__ = [
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
]
