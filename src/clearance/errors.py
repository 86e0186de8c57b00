"""The clearance error hierarchy.

Every failure that crosses a public entry point is a subclass of :class:`Error`,
split by who is at fault (the style of python-tuf):

* :class:`InputError` — the caller sent something malformed (an intent, a file,
  a command-line argument). The message says how to fix it. :class:`BindingError`
  is the kind for an intent that claims a trace, parent or principal it is not
  bound to.
* :class:`PolicyError` — a bundle failed to load or validate, or a rule failed.
* :class:`Denied` / :class:`ApprovalRequired` — the gate refused; these carry
  the decision so the caller can show the reasons.
* :class:`InvalidGrant` — one opaque error for every grant failure, so an
  untrusted caller learns nothing about which check failed (the precise reason
  is kept in ``audit_reason`` for the audit log, never in ``str()``).
* :class:`LedgerError` — the log could not be read or written (infrastructure).
  :class:`OutcomeUnrecorded` says a governed body ran but its outcome was lost.
* :class:`TamperError` — stored or received log data does not verify.
* :class:`CheckFailed` — a check the user asked for ran and failed (CLI exit status 1).
* :class:`NotFound`, :class:`Conflict`, :class:`NotPermitted`,
  :class:`Unauthenticated` — a well-formed request about something that does not
  exist, that was already done (a second vote, a grant collected twice), that the
  authenticated party may not do (approving its own request), or from a party that
  could not be authenticated (an unknown, expired or revoked API key). The runtime
  API answers them 404, 409, 403 and 401.

Programmer misuse (a wrong argument type, a negative limit) raises ``ValueError`` or
``TypeError``; :class:`InputError` is a ``ValueError`` too, so callers that validate
their own arguments catch one kind.

Foreign exceptions (sqlite3, jwt, cryptography, cel) never reach a caller raw:
each module wraps them into one of these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "ApprovalRequired",
    "BindingError",
    "CheckFailed",
    "Conflict",
    "Denied",
    "Error",
    "InputError",
    "InvalidGrant",
    "LedgerError",
    "NotFound",
    "NotPermitted",
    "OutcomeUnrecorded",
    "PolicyError",
    "ProofError",
    "SigningKeyError",
    "TamperError",
    "Unauthenticated",
]


class Error(Exception):
    """Root of every error clearance raises on purpose."""

    def diagnostics(self) -> str:
        """A human-readable explanation, suitable for printing on a terminal."""
        return str(self)


class InputError(Error, ValueError):
    """Caller-supplied input is malformed, oversized, or has unknown fields."""


class BindingError(InputError):
    """An intent claims a trace, parent or principal it is not bound to (fail-closed rule 11).

    Only trusted code opens traces, the parent is the running governed call, and the
    principal is the one the gate (or the API key) is bound to; the intent cannot
    choose any of them.
    """


class PolicyError(Error):
    """A policy bundle could not be loaded, validated or evaluated."""


class SigningKeyError(Error):
    """A signing key is missing, unreadable or malformed (fail-closed rule 5)."""


class LedgerError(Error):
    """The ledger could not be read or appended to (fail-closed rule 4)."""


class OutcomeUnrecorded(LedgerError):
    """The governed body RAN, but neither the ledger nor the spool took its outcome.

    ``request_id`` names the request. The gate also logs this on the
    ``clearance.gate`` logger and counts it (``gate.outcomes_unrecorded``), so an
    operator can reconcile the outcome by hand.
    """

    def __init__(self, message: str, *, request_id: str) -> None:
        super().__init__(message)
        self.request_id = request_id


class TamperError(LedgerError):
    """Stored or received log data does not verify: a hash, proof or signature differs.

    ``index`` names the first leaf index at which the difference was found, when known.
    """

    def __init__(self, message: str, *, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


class ProofError(Error):
    """A Merkle proof, checkpoint or receipt failed verification.

    ``step`` names the verification step that failed (for example ``"signature"``,
    ``"inclusion"``, ``"leaf-hash"``), so offline verifiers can say precisely what broke.
    """

    def __init__(self, message: str, *, step: str = "proof") -> None:
        super().__init__(message)
        self.step = step


class InvalidGrant(Error):
    """A grant failed verification. ``str()`` and :meth:`diagnostics` are deliberately opaque.

    ``audit_reason`` holds the precise cause (bad signature, expired, replayed, ...)
    for the audit log, which records it in the ``rejected`` execution entry; never
    show it to an untrusted caller (docs/design.md §4: no error oracles).
    """

    def __init__(self, audit_reason: str) -> None:
        super().__init__("grant rejected")
        self.audit_reason = audit_reason


class CheckFailed(Error):
    """A check the user asked for ran and failed (a denial, a log or receipt that does not
    verify, a replay mismatch, a failing policy test, a lint warning).

    The command line exits with :attr:`exit_code` (1) for it, and 2 for every other error.
    """

    exit_code = 1


class NotFound(Error):
    """The request, approval, trace, API key or entry named does not exist."""


class Conflict(Error):
    """The operation was already done and may happen only once (a vote, a collection)."""


class NotPermitted(Error):
    """An authenticated party asked for something it may not do (its scope or role forbids it)."""


class Unauthenticated(Error):
    """No credential, or one that is unknown, expired or revoked. Deliberately opaque."""


class Denied(Error):
    """The gate denied an intent. ``decision`` holds the effect, rule ids and messages."""

    def __init__(self, message: str, *, decision: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.decision: Mapping[str, Any] = decision or {}

    @property
    def reasons(self) -> list[str]:
        """The rule ids (or gate reasons) that decided the denial."""
        return [
            str(r.get("rule")) if isinstance(r, dict) else str(r)
            for r in self.decision.get("reasons", [])
        ]


class ApprovalRequired(Denied):
    """The policy requires a human approval first; ``approval_id`` names the pending record."""

    def __init__(
        self, message: str, *, approval_id: str, decision: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message, decision=decision)
        self.approval_id = approval_id
