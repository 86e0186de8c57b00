"""The local check of every grant the gateway hands out, before any body runs.

A reply that says ``allow`` is untrusted data until it passes all of these, in order
(any failure is :class:`~clearance.errors.InvalidGrant` with the precise reason in
``audit_reason``, and the body does not run):

1. the reply has the contract's shape (``request_id``, ``ledger_index``, ``grant``,
   ``intent``, ``intent_digest``, ``policy_digest``, ``reasons``);
2. the normalized intent it returns is the intent the client sent, with only what
   the gateway fills in filled in: the principal (when the client sent none) and the
   trace id (when the context gave none, which the reply must then carry). Parent,
   action, resource, args, purpose and input must be exactly the ones sent (the
   digest over the whole normalized intent is compared);
3. ``intent_digest`` is that intent's digest, and the principal is the one this
   client saw before (pinned on first use, or given);
4. :func:`~clearance._internal.grants.token.verify_grant` accepts the grant for that
   intent: signature against the gateway's JWKS, ``alg``, ``iss``, ``aud``,
   ``exp``/``nbf`` with the leeway, ``act``, ``sub``, ``idg``, ``trc``, ``par``, and the
   client's replay guard takes its ``jti`` for the first time;
5. the grant's ``rid``, ``lix`` and ``pol`` are the reply's request id, ledger index
   and policy digest.

``iss`` and ``aud`` are the ones the client was given; a client given none pins the
first ones a grant verified under the gateway's own JWKS carried, and refuses any
other afterwards (the JWKS comes from the same gateway, so this trusts nothing
the keys do not already).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from clearance._internal.gate.cleared import Authorization
from clearance._internal.grants.token import GrantClaims, peek_claims, verify_grant
from clearance._internal.intent import FIELDS, Intent
from clearance._internal.policy.engine import Decision, Reason
from clearance.errors import InputError, InvalidGrant

if TYPE_CHECKING:
    # An annotation only: the jti store module loads sqlite3.
    from clearance._internal.grants.jti_store import ReplayGuard


@dataclass
class Pins:
    """The issuer, audience and principal this client accepts; None until known."""

    issuer: str | None = None
    audience: str | None = None
    principal: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def adopt(self, claims: GrantClaims) -> None:
        """Pin what is still unknown from verified ``claims``; InvalidGrant on a change."""
        with self._lock:
            for name, value in (
                ("issuer", claims.iss),
                ("audience", claims.aud),
                ("principal", claims.sub),
            ):
                pinned = getattr(self, name)
                if pinned is None:
                    setattr(self, name, value)
                elif pinned != value:
                    raise InvalidGrant(f"{name} changed: pinned {pinned!r}, grant {value!r}")


def _member(body: Mapping[str, Any], name: str, kind: type) -> Any:
    value = body.get(name)
    if type(value) is not kind or (kind is str and not value):
        raise InvalidGrant(f"reply member {name!r} is missing or not a {kind.__name__}")
    return value


def returned_intent(body: Any) -> Intent:
    """The normalized intent of an ``allow`` reply (InvalidGrant if it is not one)."""
    if not isinstance(body, dict):
        raise InvalidGrant("reply is not a JSON object")
    raw = body.get("intent")
    if not isinstance(raw, dict):
        raise InvalidGrant("reply member 'intent' is missing or not an object")
    try:
        return Intent.from_json(raw)
    except InputError as exc:
        raise InvalidGrant(f"reply intent is malformed: {exc}") from None


def expected_intent(sent: Mapping[str, Any], returned: Intent) -> Intent:
    """The intent the body will run: ``sent``, with what the gateway fills in, checked."""
    if returned.trace_id is None:
        raise InvalidGrant("reply intent has no trace_id (the gateway must fill it in)")
    if sent.get("trace_id") is not None and sent["trace_id"] != returned.trace_id:
        raise InvalidGrant(
            f"reply intent runs in trace {returned.trace_id!r}, sent {sent['trace_id']!r}"
        )
    completed = {
        **sent,
        "principal": sent.get("principal") or returned.principal,
        "trace_id": returned.trace_id,
    }
    try:
        expected = Intent.from_json(completed)
    except InputError as exc:
        raise InvalidGrant(f"sent intent does not validate: {exc}") from None
    if expected.digest != returned.digest:
        mine, theirs = expected.to_json(), returned.to_json()
        changed = [name for name in FIELDS if mine[name] != theirs[name]] or ["(canonical form)"]
        raise InvalidGrant(
            f"the reply's intent is not the one sent: {', '.join(changed)} differ "
            f"({expected.digest} sent, {returned.digest} returned)"
        )
    return expected


def check_allowed(
    body: Any,
    sent: Mapping[str, Any],
    *,
    keys: Mapping[str, Ed25519PublicKey],
    pins: Pins,
    replay: ReplayGuard,
    now: float,
    leeway: float,
) -> tuple[Authorization, GrantClaims]:
    """Checks 1-5 of the module docstring on an ``allow`` reply; the Authorization to run."""
    returned = returned_intent(body)
    request_id = _member(body, "request_id", str)
    ledger_index = _member(body, "ledger_index", int)
    grant = _member(body, "grant", str)
    digest = _member(body, "intent_digest", str)
    policy_digest = _member(body, "policy_digest", str)
    raw_reasons = body.get("reasons", [])
    if not isinstance(raw_reasons, list):
        raise InvalidGrant("reply member 'reasons' is not a list")
    expected = expected_intent(sent, returned)
    if digest != expected.digest:
        raise InvalidGrant(f"reply intent_digest {digest!r} is not {expected.digest}")
    if pins.principal is not None and expected.principal != pins.principal:
        raise InvalidGrant(
            f"reply intent is for principal {expected.principal!r}, not {pins.principal!r}"
        )
    unverified = peek_claims(grant) or {}
    issuer = pins.issuer or unverified.get("iss")
    audience = pins.audience or unverified.get("aud")
    if not isinstance(audience, str) or not audience or not isinstance(issuer, str):
        raise InvalidGrant("grant carries no usable iss/aud")
    claims = verify_grant(
        grant,
        expected,
        keys=keys,
        audience=audience,
        issuer=issuer,
        now=now,
        replay=replay,
        leeway=leeway,
    )
    if (claims.rid, claims.lix, claims.pol) != (request_id, ledger_index, policy_digest):
        raise InvalidGrant(
            f"grant rid/lix/pol ({claims.rid}, {claims.lix}, {claims.pol}) disagree with the "
            f"reply ({request_id}, {ledger_index}, {policy_digest})"
        )
    pins.adopt(claims)
    reasons = tuple(
        Reason(str(r.get("rule")), str(r.get("message") or ""))
        for r in raw_reasons
        if isinstance(r, dict) and isinstance(r.get("rule"), str)
    )
    decision = Decision("allow", reasons, policy_digest)
    return Authorization(request_id, expected, decision, ledger_index, grant), claims
