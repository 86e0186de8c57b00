"""clearance: pre-execution authorization for autonomous AI agents.

The public API is the names in ``__all__`` (pinned by a test); everything else
is implementation and may change. Start with :func:`open_gate` and
:meth:`Gate.clearance`; executors in other processes use :func:`verify_grant`
with :func:`keys_from_jwks` (or import :mod:`clearance.executor`, which loads
only the grant verifier); auditors use :func:`verify_receipt`.

Names are resolved lazily (PEP 562): ``import clearance`` loads none of the
implementation, so a tool that only needs the errors or the grant verifier does
not pay for the policy engine, YAML or the SQLite ledger. The first access to a
name imports its defining module and caches the value here.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clearance._internal.entries import check_redacted
    from clearance._internal.gate.cleared import Authorization, Cleared
    from clearance._internal.gate.core import Gate
    from clearance._internal.gate.traces import Trace, carry
    from clearance._internal.grants.jti_store import ReplayGuard, SQLiteReplayGuard
    from clearance._internal.grants.keys import keys_from_jwks
    from clearance._internal.grants.token import GrantClaims, verify_grant
    from clearance._internal.guard.core import GrantGuard
    from clearance._internal.guard.headers import grant_headers
    from clearance._internal.guard.middleware import GrantGuardMiddleware
    from clearance._internal.guard.routes import ToolRoute
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
    from clearance._internal.remote.async_client import AsyncClient
    from clearance._internal.remote.client import Client
    from clearance._internal.wiring import open_gate
    from clearance.errors import (
        ApprovalRequired,
        BindingError,
        CheckFailed,
        Conflict,
        Denied,
        Error,
        InputError,
        InvalidGrant,
        LedgerError,
        NotFound,
        NotPermitted,
        OutcomeUnrecorded,
        PolicyError,
        ProofError,
        SigningKeyError,
        TamperError,
        Unauthenticated,
    )

__all__ = [
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
]

# Each public name and the module that defines it. Must list exactly the names of
# ``__all__`` (a test checks both ways) and agree with the TYPE_CHECKING imports
# above, which are what mypy sees.
_DEFINED_IN: dict[str, str] = {
    "ApprovalRequired": "clearance.errors",
    "AsyncClient": "clearance._internal.remote.async_client",
    "Authorization": "clearance._internal.gate.cleared",
    "BindingError": "clearance.errors",
    "CheckFailed": "clearance.errors",
    "Cleared": "clearance._internal.gate.cleared",
    "Client": "clearance._internal.remote.client",
    "Conflict": "clearance.errors",
    "Decision": "clearance._internal.policy.engine",
    "Denied": "clearance.errors",
    "Error": "clearance.errors",
    "EvaluationInput": "clearance._internal.policy.engine",
    "Gate": "clearance._internal.gate.core",
    "GrantClaims": "clearance._internal.grants.token",
    "GrantGuard": "clearance._internal.guard.core",
    "GrantGuardMiddleware": "clearance._internal.guard.middleware",
    "InputError": "clearance.errors",
    "Intent": "clearance._internal.intent",
    "InvalidGrant": "clearance.errors",
    "LedgerError": "clearance.errors",
    "NotFound": "clearance.errors",
    "NotPermitted": "clearance.errors",
    "OutcomeUnrecorded": "clearance.errors",
    "PolicyEngine": "clearance._internal.policy.engine",
    "PolicyError": "clearance.errors",
    "ProofError": "clearance.errors",
    "Reason": "clearance._internal.policy.engine",
    "ReplayGuard": "clearance._internal.grants.jti_store",
    "SQLiteReplayGuard": "clearance._internal.grants.jti_store",
    "SigningKeyError": "clearance.errors",
    "TamperError": "clearance.errors",
    "ToolRoute": "clearance._internal.guard.routes",
    "ToolSpec": "clearance._internal.policy.engine",
    "Trace": "clearance._internal.gate.traces",
    "Unauthenticated": "clearance.errors",
    "VerifiedReceipt": "clearance._internal.ledger.receipts",
    "carry": "clearance._internal.gate.traces",
    "check_redacted": "clearance._internal.entries",
    "grant_headers": "clearance._internal.guard.headers",
    "init_home": "clearance._internal.home",
    "keys_from_jwks": "clearance._internal.grants.keys",
    "open_gate": "clearance._internal.wiring",
    "receipt_for_request": "clearance._internal.ledger.receipts",
    "verify_grant": "clearance._internal.grants.token",
    "verify_receipt": "clearance._internal.ledger.receipts",
    "verify_tlog_proof": "clearance._internal.ledger.receipts",
}


def __getattr__(name: str) -> object:
    """Import a public name's defining module on first use (PEP 562)."""
    module_name = _DEFINED_IN.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # Imported here, not at the top, so the only global this module defines at
    # import time besides the dunders is TYPE_CHECKING.
    from importlib import import_module

    value = getattr(import_module(module_name), name)
    # Cache it, so later lookups are ordinary attribute reads and never come back here.
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public names, whether or not they are loaded yet, and the loaded globals."""
    return sorted(set(globals()) | set(__all__))
