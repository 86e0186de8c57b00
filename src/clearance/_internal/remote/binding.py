"""Which trace and parent a remote governed call runs in (fail-closed rule 11, client side).

The remote SDK reuses the in-process gate's context (:mod:`clearance._internal.gate.traces`):
a :class:`~clearance._internal.gate.traces.Trace` handle is the capability to decide
under a trace, and the running governed call
(:class:`~clearance._internal.gate.traces.RunningRequest`) is the parent of calls made
in its body, in threads given :func:`clearance.carry` and in asyncio tasks.

Invariants:

* Handles and running requests are owned per gateway: every client of one gateway
  URL shares one private owner token (an orchestrator's client opens the trace, an
  agent's client decides under it), and a handle or running request of another
  gateway, or of an in-process gate, is refused (BindingError) or ignored, exactly as
  the in-process binder does for a foreign gate.
* An intent never chooses its trace or parent: a ``trace_id`` or ``parent_id`` it
  names must be the ones the context gives, or it is refused before anything is
  sent. The gateway checks again (the principal comes from the API key).
* An intent is validated here, before any request, so a malformed one costs no
  round trip and is refused with the field named (InputError).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from clearance._internal.gate.traces import Trace, active_trace, running_request
from clearance._internal.intent import Intent
from clearance.errors import BindingError, InputError

PLACEHOLDER_PRINCIPAL: Final[str] = "unbound-principal"
"""Stands in for the API key's principal while an intent without one is validated."""

_OWNERS: dict[str, object] = {}
_OWNERS_GUARD = threading.Lock()


def owner_for(gateway: str) -> object:
    """The private token that marks trace handles and running requests of ``gateway``."""
    with _OWNERS_GUARD:
        found = _OWNERS.get(gateway)
        if found is None:
            found = _OWNERS[gateway] = object()
        return found


@dataclass(frozen=True)
class Bound:
    """An intent ready to send: its JSON (normalized; ``principal`` only when known)."""

    sent: dict[str, Any]
    depth: int
    """0 for a call outside any governed body, else the parent's depth plus one."""

    @property
    def trace_id(self) -> str | None:
        """The trace it runs in, when the context gave one (else the gateway picks it)."""
        value = self.sent.get("trace_id")
        return value if isinstance(value, str) else None


def parse_intent(intent: Intent | Mapping[str, Any], principal: str | None) -> Intent:
    """Validate ``intent`` (an Intent or its JSON, ``principal`` optional) into an Intent.

    Without a principal in the intent, ``principal`` (the key's, when the client
    knows it) or a placeholder fills in for validation only.
    """
    if isinstance(intent, Intent):
        return intent
    if not isinstance(intent, Mapping):
        raise InputError(
            f"an intent must be an Intent or a JSON object, got {type(intent).__name__}"
        )
    if intent.get("principal") is None:
        intent = {**intent, "principal": principal or PLACEHOLDER_PRINCIPAL}
    return Intent.from_json(intent)


def bind(
    intent: Intent | Mapping[str, Any],
    trace: Trace | None,
    *,
    owner: object,
    principal: str | None,
) -> Bound:
    """Bind ``intent`` to the trace and parent of the current context (see the module).

    ``principal`` is the API key's principal when the client knows it; an intent
    naming another one is refused here (the gateway would refuse it too).
    """
    named_principal = (
        intent.principal
        if isinstance(intent, Intent)
        else (intent.get("principal") if isinstance(intent, Mapping) else None)
    )
    parsed = parse_intent(intent, principal)
    if named_principal is not None and principal is not None and named_principal != principal:
        raise BindingError(
            f"intent names principal {named_principal!r}, but this client's API key is bound "
            f"to {principal!r}"
        )
    handle = trace if trace is not None else active_trace()
    if handle is not None and not handle.owned_by(owner):
        raise BindingError(
            f"trace {handle.trace_id!r} was opened through another gateway or an in-process gate"
        )
    current = running_request()
    if current is not None and current.owner is not owner:
        current = None
    trace_id = (
        handle.trace_id
        if handle is not None
        else (current.trace_id if current is not None else None)
    )
    if parsed.trace_id is not None and parsed.trace_id != trace_id:
        where = f"runs in trace {trace_id!r}" if trace_id else "runs in no open trace"
        raise BindingError(
            f"intent names trace {parsed.trace_id!r} but {where}; only trusted code opens "
            "traces (client.trace, client.open_trace, client.resume_trace), and an intent "
            "cannot choose one"
        )
    parent = current if current is not None and current.trace_id == trace_id else None
    if parsed.parent_id is not None and (parent is None or parsed.parent_id != parent.request_id):
        running_id = parent.request_id if parent is not None else None
        raise BindingError(
            f"intent names parent {parsed.parent_id!r}, but the running request is "
            f"{running_id!r}; the parent comes from the running governed call"
        )
    sent = parsed.to_json()
    sent["trace_id"] = trace_id
    sent["parent_id"] = parent.request_id if parent is not None else None
    if named_principal is None:
        if principal is None:
            del sent["principal"]
        else:
            sent["principal"] = principal
    return Bound(sent, parent.depth + 1 if parent is not None else 0)
