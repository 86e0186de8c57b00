"""What the gate hands out: an :class:`Authorization` (a grant for one intent) and,
inside ``with gate.clearance(...)``, a :class:`Cleared` for the body to use."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from clearance._internal.canonical import json_digest
from clearance._internal.grants.token import GrantClaims
from clearance._internal.intent import Intent
from clearance._internal.policy.engine import Decision
from clearance.errors import InputError


@dataclass(frozen=True)
class Authorization:
    """An ``allow`` decision with its grant, as the gate hands it to an executor.

    An executor verifies :attr:`grant` against :attr:`intent` exactly as given here:
    the gate filled in ``trace_id`` (and ``parent_id``), and the grant is bound to the
    digest of that bound intent, not of the intent as first submitted.
    """

    request_id: str
    intent: Intent
    decision: Decision
    decision_index: int
    grant: str
    facts: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    """The trace facts the decision was made with, as logged in its entry (None when
    the authorization was rebuilt from a grant, not decided here)."""
    expires_at: int | None = field(default=None, compare=False, repr=False)
    """The grant's ``exp`` (POSIX seconds) when this gate signed it (None otherwise: read
    it from the grant)."""


@dataclass
class Cleared:
    """What the body of ``with gate.clearance(intent) as cleared:`` may use."""

    authorization: Authorization
    claims: GrantClaims
    result: Any = field(default=None, repr=False)
    has_result: bool = False
    result_digest: str | None = None
    """``sha256:`` digest of the RFC 8785 form of the recorded result (None: none recorded)."""
    result_error: str | None = None
    """Why a result could not be recorded (set by ``@gate.governed`` for a non-JSON value)."""

    @property
    def request_id(self) -> str:
        """The request id of this governed call."""
        return self.authorization.request_id

    sign: Callable[[], str] | None = field(default=None, repr=False, compare=False)
    """Makes the signed grant on demand (in-process calls are not signed unless asked)."""

    @property
    def grant(self) -> str:
        """The grant of this call as an EdDSA JWT, addressed to the gate's in-process
        audience: no executor accepts it, so it cannot be presented again elsewhere.

        A call made with ``gate.clearance`` is authorized by the gate's own object
        handed to the body, not by a token; the token is signed here, once, only when
        someone asks for it.
        """
        if not self.authorization.grant and self.sign is not None:
            self.authorization = replace(self.authorization, grant=self.sign())
        return self.authorization.grant

    def record_result(self, value: Any) -> None:
        """Attach the body's result; its RFC 8785 digest goes into the execution entry.

        ``value`` must be a JSON value (objects, arrays, strings, finite numbers,
        booleans, null); anything else raises InputError at once, naming the type, so
        a result is never dropped silently: record a JSON summary instead (for a
        datetime, its ISO string).
        """
        try:
            digest = json_digest(value)
        except InputError as exc:
            raise InputError(
                f"record_result() takes a JSON value, not {type(value).__qualname__}: {exc}; "
                "record a JSON summary of it instead"
            ) from None
        self.result = value
        self.has_result = True
        self.result_digest = digest
        self.result_error = None

    def note_unrecordable(self, value: Any, why: str) -> None:
        """Say in the execution entry that the result ``value`` could not be recorded."""
        self.result = value
        self.has_result = False
        self.result_digest = None
        self.result_error = why[:300]
