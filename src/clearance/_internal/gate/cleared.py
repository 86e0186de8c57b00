"""What the gate hands out: an :class:`Authorization` (a grant for one intent) and,
inside ``with gate.clearance(...)``, a :class:`Cleared` for the body to use."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from clearance._internal.grants.token import GrantClaims
from clearance._internal.intent import Intent
from clearance._internal.policy.engine import Decision


@dataclass(frozen=True)
class Authorization:
    """An ``allow`` decision with its grant, as the gate hands it to an executor."""

    request_id: str
    intent: Intent
    decision: Decision
    decision_index: int
    grant: str


@dataclass
class Cleared:
    """What the body of ``with gate.clearance(intent) as cleared:`` may use."""

    authorization: Authorization
    claims: GrantClaims
    result: Any = field(default=None, repr=False)
    has_result: bool = False

    @property
    def request_id(self) -> str:
        """The request id of this governed call."""
        return self.authorization.request_id

    @property
    def grant(self) -> str:
        """The verified grant (already consumed: it cannot be presented again)."""
        return self.authorization.grant

    def record_result(self, value: Any) -> None:
        """Attach the body's result; its RFC 8785 digest goes into the execution entry."""
        self.result = value
        self.has_result = True
