"""The one grant of an approved request: its claims, built from the logged approval.

Invariants (docs/design.md §5 "Grant", §9):

* The claims are those :meth:`~clearance._internal.grants.token.GrantClaims.for_intent`
  builds for an allowed request, but from the ledger: ``sub`` and ``act`` are the
  decision's principal and action, ``idg`` the *approved* intent digest, ``pol`` the
  bundle that decided it, ``rid`` the request id and ``lix`` the decision entry's index;
  ``trc`` and ``par`` the logged intent's trace and parent; ``jti`` is new. So the
  grant is good for exactly the approved intent, and the gate never needs the
  unredacted intent to issue it.
* It is as short-lived as any grant (``grant_lifetime`` from ``floor(now)``) and signed
  only with a key that has a ``key`` entry in the ledger (logged here first if needed).
* No signing key means no grant: :class:`~clearance.errors.SigningKeyError`, and the
  approval stays approved, to be collected once the key is back (fail-closed rule 5).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from clearance._internal.approvals.model import Approval
from clearance._internal.gate.key_trust import GateKeys
from clearance._internal.grants.keys import SigningKey
from clearance._internal.grants.token import GrantClaims, new_jti
from clearance.errors import SigningKeyError

__all__ = ["ApprovalGrants"]


class ApprovalGrants:
    """Builds and signs the grants of approved requests for one gate."""

    def __init__(self, *, keys: GateKeys, issuer: str, lifetime: int) -> None:
        """Sign with ``keys`` as ``issuer``; grants live ``lifetime`` seconds."""
        self._keys = keys
        self._issuer = issuer
        self._lifetime = lifetime

    def claims(
        self, approval: Approval, *, audience: str, now: float
    ) -> tuple[GrantClaims, SigningKey]:
        """The claims of ``approval``'s grant for ``audience`` at ``now``, and the key to sign
        them with; SigningKeyError when no key is available."""
        key, why = self._keys.signing_key(now)
        if key is None:
            raise SigningKeyError(
                f"cannot issue the grant of approval {approval.approval_id}: {why}; the "
                "approval stays approved and can be collected once the key is readable"
            )
        if key.kid not in self._keys.logged:
            self._keys.log(key.kid, now)
        iat = math.floor(now)
        claims = GrantClaims(
            iss=self._issuer,
            aud=audience,
            sub=approval.principal,
            jti=new_jti(),
            iat=iat,
            nbf=iat,
            exp=iat + self._lifetime,
            act=approval.action,
            idg=approval.intent_digest,
            pol=approval.policy_digest,
            rid=approval.request_id,
            lix=approval.decision_index,
            trc=_member(approval.intent, "trace_id"),
            par=_member(approval.intent, "parent_id"),
        )
        return claims, key


def _member(intent: Mapping[str, Any], key: str) -> str | None:
    value = intent.get(key)
    return value if isinstance(value, str) and value else None
