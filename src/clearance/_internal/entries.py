"""Builders for ledger entries (docs/design.md §5 "Ledger"), and sensitive-argument redaction.

Every entry is a JSON object with ``type``, ``v`` (format version, currently 1)
and ``at`` (RFC 3339 UTC time with microseconds and a ``Z`` suffix). The leaf
bytes are its RFC 8785 canonical JSON, so every value here must be JSON: no
floats that JSON cannot carry, no bytes, no tuples that would read back as lists.

Entry types: ``policy`` (a bundle activated), ``key`` (a grant-signing key
first used), ``trace`` (a mandate recorded when trusted code opens a trace),
``decision``, ``approval``, ``execution``, ``provenance`` (the fingerprints of
values a trace's marked tools returned, :mod:`clearance._internal.gate.provenance`)
and ``apikey`` (an API key created or revoked: its name, public id, scopes and
principal, never its secret or hash; :mod:`clearance._internal.apikeys`).
The README documents every field.

Sensitive arguments: a tool may list argument paths as ``sensitive``. The
decision entry then stores, in place of each such value,
``{"redacted": "sha256:<hex>", "salt": "<base64 16 bytes>"}`` where the hex is
SHA-256 over ``salt || RFC8785(value)``. The intent digest is still computed
over the real value, so the grant stays bound to it. An auditor who holds the
value checks it with :func:`check_redacted` (or by hand: base64-decode the
salt, append the canonical JSON of the value, SHA-256, compare), and can then
recompute the intent digest with the value put back. When the trace has value
provenance, the redacted object also holds ``provenance``: what the helpers
``from_untrusted`` and ``carries_sensitive`` answered for the real value
(:meth:`~clearance._internal.policy.provenance.Provenance.evidence`), so a replay
answers alike without the value.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from clearance._internal.canonical import canonical_json
from clearance.errors import InputError

ENTRY_VERSION = 1
REDACTED_KEY = "redacted"


def timestamp(now: float) -> str:
    """RFC 3339 UTC with microseconds, e.g. ``2026-11-28T10:00:00.000000Z``."""
    # isoformat is several times faster than strftime; it ends in "+00:00" for UTC.
    return datetime.fromtimestamp(now, UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def parse_timestamp(text: str) -> datetime:
    """Inverse of :func:`timestamp` (accepts any RFC 3339 UTC form Python parses)."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"not an RFC 3339 timestamp: {text!r}") from None
    if moment.tzinfo is None:
        raise InputError(f"timestamp {text!r} has no time zone; use UTC with a Z suffix")
    return moment


def _base(kind: str, now: float) -> dict[str, Any]:
    return {"type": kind, "v": ENTRY_VERSION, "at": timestamp(now)}


# --- sensitive arguments --------------------------------------------------------------


def redact_value(value: Any, salt: bytes) -> dict[str, str]:
    """The salted digest that stands in for a sensitive value in the ledger."""
    digest = hashlib.sha256(salt + canonical_json(value)).hexdigest()
    return {REDACTED_KEY: "sha256:" + digest, "salt": base64.b64encode(salt).decode("ascii")}


def check_redacted(redacted: Mapping[str, Any], value: Any) -> bool:
    """True when ``value`` is the value behind a redacted ledger field."""
    try:
        salt = base64.b64decode(str(redacted["salt"]), validate=True)
        expected = str(redacted[REDACTED_KEY])
    except (KeyError, ValueError):
        return False
    actual = redact_value(value, salt)[REDACTED_KEY]
    return hmac.compare_digest(actual, expected)


def redact_args(args: Mapping[str, Any], paths: Sequence[str]) -> tuple[dict[str, Any], bool]:
    """Copy ``args`` with each dot-separated ``path`` replaced by its salted digest.

    Returns the copy and whether anything was redacted. Paths that are absent are
    skipped. Each value gets its own random salt, so equal values do not link.
    """
    if not paths:
        return dict(args), False
    out: dict[str, Any] = _deep_copy(args)
    changed = False
    for path in paths:
        parts = path.split(".")
        node: Any = out
        for part in parts[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and parts[-1] in node:
            node[parts[-1]] = redact_value(node[parts[-1]], secrets.token_bytes(16))
            changed = True
    return out, changed


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


# --- entry builders -------------------------------------------------------------------


def policy_entry(now: float, digest: str, document: Mapping[str, Any]) -> dict[str, Any]:
    """A bundle became active; the whole canonical bundle is logged for replay."""
    return {**_base("policy", now), "digest": digest, "bundle": dict(document)}


def key_entry(now: float, kid: str, jwk: Mapping[str, Any]) -> dict[str, Any]:
    """A grant-signing key was first used; its public JWK is logged."""
    return {**_base("key", now), "kid": kid, "jwk": dict(jwk)}


def trace_entry(
    now: float,
    trace_id: str,
    mandate: Mapping[str, Any],
    opened_by: str | None,
    *,
    principal: str | None = None,
) -> dict[str, Any]:
    """Trusted code opened a trace with a mandate; it is immutable from here on.

    ``principal`` (recorded only when given, so older entries keep their bytes) is the
    one principal whose intents the trace accepts.
    """
    entry = {
        **_base("trace", now),
        "trace_id": trace_id,
        "mandate": dict(mandate),
        "opened_by": opened_by,
    }
    if principal is not None:
        entry["principal"] = principal
    return entry


def decision_entry(
    now: float,
    *,
    request_id: str,
    intent: Mapping[str, Any],
    intent_digest: str,
    decision: Mapping[str, Any],
    facts: Mapping[str, Any],
    principal_attrs: Mapping[str, Any],
    parent_index: int | None,
    untrusted_output: bool,
    grant: Mapping[str, Any] | None,
    approval_id: str | None,
    redacted: bool,
) -> dict[str, Any]:
    """One authorization decision, with everything needed to replay it."""
    base = _base("decision", now)
    return {
        **base,
        "request_id": request_id,
        "trace_id": intent.get("trace_id"),
        "parent_id": intent.get("parent_id"),
        "parent_index": parent_index,
        "intent": dict(intent),
        "intent_digest": intent_digest,
        "redacted": redacted,
        "principal_attrs": dict(principal_attrs),
        "facts": dict(facts),
        "now": base["at"],  # the same clock reading, formatted once
        "effect": decision["effect"],
        "reasons": list(decision["reasons"]),
        "policy_digest": decision["policy_digest"],
        "untrusted_output": untrusted_output,
        "grant": dict(grant) if grant is not None else None,
        "approval_id": approval_id,
    }


def approval_entry(
    now: float,
    *,
    approval_id: str,
    request_id: str,
    trace_id: str | None,
    status: str,
    decision_index: int,
    expires_at: float,
    required: int = 1,
    approvers: Sequence[str] = ("*",),
    rules: Sequence[str] = (),
    principal: str | None = None,
    intent_digest: str | None = None,
    action: str | None = None,
) -> dict[str, Any]:
    """A new approval (``status: pending``), written right after its decision.

    ``required`` distinct approvers matching ``approvers`` (patterns) must approve
    before ``expires_at``; ``rules`` are the ids of the rules that asked for it;
    ``principal``, ``action`` and ``intent_digest`` repeat the decision's, so the
    approval reads on its own. Later steps are :func:`approval_step_entry`.
    """
    return {
        **_base("approval", now),
        "approval_id": approval_id,
        "request_id": request_id,
        "trace_id": trace_id,
        "status": status,
        "decision_index": decision_index,
        "expires_at": timestamp(expires_at),
        "required": required,
        "approvers": list(approvers),
        "rules": list(rules),
        "principal": principal,
        "intent_digest": intent_digest,
        "action": action,
    }


def approval_step_entry(
    now: float,
    *,
    approval_id: str,
    request_id: str,
    trace_id: str | None,
    decision_index: int,
    status: str,
    details: Mapping[str, Any],
) -> dict[str, Any]:
    """One later step of an approval, linked to its decision (docs/design.md §9).

    ``status`` names the step: ``vote`` (``details``: ``approver``, ``decision``,
    ``reason``), ``approved`` (``approved_by``), ``denied`` (``denied_by``) or ``expired``
    (the status it moved to), or
    ``collected`` (``details``: ``grant`` ``{jti, kid, aud, exp}``, ``principal``).
    :mod:`clearance._internal.approvals.fold` says which steps count.
    """
    return {
        **_base("approval", now),
        "approval_id": approval_id,
        "request_id": request_id,
        "trace_id": trace_id,
        "decision_index": decision_index,
        "status": status,
        **details,
    }


def execution_entry(
    now: float,
    *,
    request_id: str,
    trace_id: str | None,
    decision_index: int,
    jti: str,
    status: str,
    error_type: str | None,
    result_digest: str | None,
    duration_us: int,
    executor: str,
) -> dict[str, Any]:
    """The outcome of a governed call, linked to its decision entry."""
    return {
        **_base("execution", now),
        "request_id": request_id,
        "trace_id": trace_id,
        "decision_index": decision_index,
        "jti": jti,
        "status": status,
        "error_type": error_type,
        "result_digest": result_digest,
        "duration_us": duration_us,
        "executor": executor,
    }


def provenance_entry(
    now: float,
    *,
    trace_id: str,
    request_id: str,
    decision_index: int,
    salt: bytes,
    keyed: bool,
    check: str,
    fingerprints: Mapping[Any, Collection[str]],
    full: Mapping[Any, bool],
    added: Mapping[Any, int],
    previous: int | None,
) -> dict[str, Any]:
    """A trace's cumulative value fingerprints after the outcome of ``request_id``.

    ``fingerprints`` and ``full`` hold every origin (``untrusted``, ``sensitive``):
    the whole bounded sets, sorted, so the newest such entry of a trace is all a
    reader needs. ``added`` counts what this outcome admitted; ``previous`` is the
    trace's provenance entry before this one (null for the first).
    """
    return {
        **_base("provenance", now),
        "request_id": request_id,
        "trace_id": trace_id,
        "decision_index": decision_index,
        "salt": base64.b64encode(salt).decode("ascii"),
        "keyed": keyed,
        "check": check,
        **{origin: sorted(values) for origin, values in fingerprints.items()},
        "full": dict(full),
        "added": dict(added),
        "previous": previous,
    }


APIKEY_EVENTS = ("created", "revoked")
"""The ``event`` values of an ``apikey`` entry."""


def apikey_entry(
    now: float,
    *,
    event: str,
    name: str,
    key_id: str,
    scopes: Collection[str],
    principal: str,
    expires_at: float | None,
) -> dict[str, Any]:
    """An API key was created or revoked (docs/design.md §5 ``apikey``).

    Holds the key's name (the entry's lookup ``ref``), its public ``key_id``, its
    scopes (sorted), its principal and its expiry (RFC 3339, or null), so an auditor
    can tell which key a request was made with; never the secret or its hash.
    """
    if event not in APIKEY_EVENTS:
        raise ValueError(f"apikey event must be one of {APIKEY_EVENTS}, not {event!r}")
    return {
        **_base("apikey", now),
        "event": event,
        "name": name,
        "key_id": key_id,
        "scopes": sorted(scopes),
        "principal": principal,
        "expires_at": timestamp(expires_at) if expires_at is not None else None,
    }
