"""Binding an intent to where it runs: its principal, trace and parent, and the trace's state.

Invariants (fail-closed rule 11; :mod:`~clearance._internal.gate.traces` has the model):

* An intent is decided under a trace only when trusted code opened it
  (:meth:`TraceBinder.open`, :meth:`TraceBinder.resume`) and its handle is active or
  passed explicitly; the parent is the running governed call of the same gate; the
  principal is the one the gate is bound to. An intent that claims anything else is
  refused with :class:`~clearance.errors.BindingError` before anything is decided or
  logged. With no trace open, the gate's default mandate applies or, with
  ``require_trace``, the intent is refused.
* A trace opened *for* a principal (``principal=`` in :meth:`TraceBinder.open`, recorded
  in its ``trace`` entry) accepts intents from that principal only, whether its handle
  was opened here or resumed from the ledger (:meth:`TraceBinder.resume` with
  ``principal=`` also refuses to hand it to anyone else).
* A trusted multi-principal service that carries lineage across processes may name the
  parent explicitly (``parent=``): it must be a decision of the same trace, read from
  the ledger and proven to be in the log; its depth comes from that entry's facts.
* A mandate is kept in its ledger form (:func:`ledger_form`), so the facts a live
  decision sees equal the facts its replay reads back from the log.
* The state a decision starts from (:meth:`TraceBinder.state`) is the cached fold of
  the trace or is read from its last decision entry *proven* to be in the log, with
  the index of its newest ``provenance`` entry (also proven); a malformed one is
  :class:`~clearance.errors.TamperError`, never a default.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from clearance._internal import entries
from clearance._internal.canonical import canonical_json
from clearance._internal.gate.facts import advance, initial_state, state_of, with_provenance
from clearance._internal.gate.traces import (
    RunningRequest,
    Trace,
    TraceStates,
    active_trace,
    running_request,
)
from clearance._internal.home import parse_mandate
from clearance._internal.ids import new_id
from clearance._internal.intent import PRINCIPAL_PATTERN, Intent
from clearance._internal.ledger.store import LedgerStore
from clearance._internal.limits import MANDATE_TEXT_CEILING
from clearance.errors import BindingError, InputError, TamperError


@dataclass(frozen=True, slots=True)
class Binding:
    """An intent bound to where it runs: its trace, parent and (for a new trace) mandate."""

    intent: Intent
    """The intent with the gate's ``trace_id`` and ``parent_id`` filled in."""
    mandate: Mapping[str, Any] | None
    """The mandate of a trace with no decision yet; None for the running request's trace."""
    fresh: bool
    """The gate minted the trace id here: it has no entries, so no ledger read is needed."""
    depth: int
    parent_index: int | None


def ledger_form(value: Mapping[str, Any]) -> dict[str, Any]:
    """``value`` as the ledger reads it back (RFC 8785 round trip: ``600.0`` becomes ``600``)."""
    return cast(dict[str, Any], json.loads(canonical_json(dict(value))))


class TraceBinder:
    """One gate's traces: opening and resuming them, and binding intents to them."""

    def __init__(
        self,
        *,
        ledger: LedgerStore,
        states: TraceStates,
        clock: Callable[[], float],
        owner: object,
        principal: str | None,
        multi_principal: bool,
        require_trace: bool,
        default_mandate: Mapping[str, Any],
        mandate_text: int,
    ) -> None:
        """Bind for the gate whose private token is ``owner`` (see :class:`Trace`)."""
        self._ledger = ledger
        self._states = states
        self._clock = clock
        self._owner = owner
        self._principal = principal
        self._multi_principal = multi_principal
        self._require_trace = require_trace
        self._mandate_text = mandate_text
        self._default_mandate = ledger_form(
            parse_mandate(dict(default_mandate), "default mandate", max_text=mandate_text)
        )
        self._owners: weakref.WeakKeyDictionary[Trace, str] = weakref.WeakKeyDictionary()
        """The principal each handle's trace was opened for (absent: any bound principal)."""

    def open(
        self,
        mandate: str,
        bounds: Mapping[str, Any] | None,
        opened_by: str | None,
        principal: str | None = None,
    ) -> Trace:
        """Append a ``trace`` entry with the mandate and return the trace's handle.

        With ``principal`` the trace is opened for that principal only (recorded in the
        entry); a gate bound to one principal opens traces for no other.
        """
        if not isinstance(mandate, str):
            raise InputError("mandate must be a string")
        if principal is not None:
            if not isinstance(principal, str) or PRINCIPAL_PATTERN.fullmatch(principal) is None:
                raise InputError(f"principal {principal!r} is not a valid principal id")
            if not self._multi_principal and principal != self._principal:
                raise BindingError(
                    f"this gate is bound to {self._principal!r}; it cannot open a trace "
                    f"for {principal!r}"
                )
        mandate_obj = ledger_form(
            parse_mandate(
                {"text": mandate, "bounds": dict(bounds or {})},
                "mandate",
                max_text=self._mandate_text,
            )
        )
        now = self._clock()
        trace_id = new_id("t", now)
        self._ledger.append(
            entries.trace_entry(now, trace_id, mandate_obj, opened_by, principal=principal)
        )
        handle = Trace(trace_id, mandate_obj, self._owner)
        if principal is not None:
            self._owners[handle] = principal
        return handle

    def resume(self, trace_id: str, principal: str | None = None) -> Trace:
        """A handle for a trace in the ledger, with its logged mandate proven to be in the log.

        With ``principal``, the trace must have been opened for exactly that principal
        (BindingError otherwise, as for a trace the ledger does not hold).
        """
        found = self._ledger.find("trace", trace_id)
        if not found:
            raise BindingError(f"no trace {trace_id!r} in the ledger")
        stored = self._ledger.prove(found[0])
        mandate = stored.entry.get("mandate")
        if not isinstance(mandate, Mapping):
            raise TamperError(f"trace entry {stored.index} has no mandate", index=stored.index)
        owner = stored.entry.get("principal")
        if owner is not None and not isinstance(owner, str):
            raise TamperError(
                f"trace entry {stored.index} has a malformed principal", index=stored.index
            )
        if principal is not None and owner != principal:
            raise BindingError(f"trace {trace_id!r} was not opened for principal {principal!r}")
        # The ceiling, not the configured limit: lowering the limit later must not make a
        # trace that was opened under the old one impossible to resume.
        parsed = parse_mandate(mandate, "stored mandate", max_text=MANDATE_TEXT_CEILING)
        handle = Trace(trace_id, ledger_form(parsed), self._owner)
        if owner is not None:
            self._owners[handle] = owner
        return handle

    def parent(self, trace: Trace, request_id: str) -> RunningRequest:
        """The decision ``request_id`` of ``trace`` as the parent of a remote intent.

        For a trusted service relaying lineage from another process: the decision entry
        is read from the ledger and proven to be in the log, and must belong to
        ``trace`` (BindingError otherwise, also for an unknown request id).
        """
        if not isinstance(request_id, str):
            raise InputError("parent must be a request id (a string)")
        found = self._ledger.find("decision", request_id)
        if not found:
            raise BindingError(f"parent {request_id!r} is not a request in the ledger")
        stored = self._ledger.prove(found[0])
        if stored.entry.get("trace_id") != trace.trace_id:
            raise BindingError(
                f"parent {request_id!r} is not a request of trace {trace.trace_id!r}"
            )
        facts = stored.entry.get("facts")
        depth = facts.get("depth") if isinstance(facts, Mapping) else None
        if type(depth) is not int or depth < 0:
            raise TamperError(
                f"decision entry {stored.index} has malformed facts", index=stored.index
            )
        return RunningRequest(self._owner, trace.trace_id, request_id, stored.index, depth)

    def bind(
        self,
        intent: Intent | Mapping[str, Any],
        trace: Trace | None,
        explicit_parent: str | None = None,
    ) -> Binding:
        """Bind ``intent`` to its principal, trace and parent (fail-closed rule 11).

        ``explicit_parent`` names the parent decision's request id (see :meth:`parent`);
        it needs ``trace``. Otherwise the parent is the running governed call.
        """
        principal = self._principal
        if isinstance(intent, Intent):
            parsed = intent
        else:
            if isinstance(intent, Mapping) and "principal" not in intent and principal:
                intent = {**intent, "principal": principal}
            parsed = Intent.from_json(intent)
        if not self._multi_principal and parsed.principal != principal:
            if principal is None:
                raise BindingError(
                    "this gate is bound to no principal: open it with principal=... "
                    "(or multi_principal=True for a service that authenticates principals)"
                )
            raise BindingError(
                f"intent names principal {parsed.principal!r}, but this gate is bound to "
                f"{principal!r}"
            )
        handle = trace if trace is not None else active_trace()
        if handle is not None and not handle.owned_by(self._owner):
            raise BindingError(f"trace {handle.trace_id!r} was opened by another gate")
        if handle is not None:
            owner = self._owners.get(handle)
            if owner is not None and parsed.principal != owner:
                raise BindingError(
                    f"trace {handle.trace_id!r} was opened for principal {owner!r}, "
                    f"not {parsed.principal!r}"
                )
        if explicit_parent is not None:
            if handle is None:
                raise BindingError("a parent can be named only together with its trace")
            current: RunningRequest | None = self.parent(handle, explicit_parent)
        else:
            current = running_request()
        if current is not None and current.owner is not self._owner:
            current = None
        trace_id: str | None
        mandate: Mapping[str, Any] | None
        if handle is not None:
            trace_id, mandate = handle.trace_id, handle.mandate
        elif current is not None:
            trace_id, mandate = current.trace_id, None
        else:
            trace_id, mandate = None, self._default_mandate
        if parsed.trace_id is not None and parsed.trace_id != trace_id:
            where = f"runs in trace {trace_id!r}" if trace_id else "runs in no open trace"
            raise BindingError(
                f"intent names trace {parsed.trace_id!r} but {where}; only trusted code "
                "opens traces (gate.trace), and an intent cannot choose one"
            )
        parent = current if current is not None and current.trace_id == trace_id else None
        if parsed.parent_id is not None and (
            parent is None or parsed.parent_id != parent.request_id
        ):
            running_id = parent.request_id if parent is not None else None
            raise BindingError(
                f"intent names parent {parsed.parent_id!r}, but the running request is "
                f"{running_id!r}; the parent comes from the running governed call"
            )
        fresh = trace_id is None
        if trace_id is None:
            if self._require_trace:
                raise BindingError(
                    "no trace is open and this gate requires one: open it in trusted code "
                    "with gate.trace(mandate) (settings: require_trace)"
                )
            trace_id = new_id("t", self._clock())
        parent_id = parent.request_id if parent is not None else None
        if parsed.trace_id != trace_id or parsed.parent_id != parent_id:
            parsed = parsed.with_context(trace_id=trace_id, parent_id=parent_id)
        return Binding(
            parsed,
            mandate,
            fresh,
            parent.depth + 1 if parent is not None else 0,
            parent.decision_index if parent is not None else None,
        )

    def state(self, binding: Binding, generation: int) -> Mapping[str, Any]:
        """The trace's state before this decision: cached, or folded from its last decision.

        Called with the trace's lock held. Every entry read here is proven to be in the
        log (its leaf hash and inclusion in the tree the store verified at open).
        """
        trace_id = cast(str, binding.intent.trace_id)
        if binding.fresh:
            return initial_state(trace_id, cast(Mapping[str, Any], binding.mandate))
        cached = self._states.get(trace_id, generation)
        if cached is not None:
            return cached
        last = self._ledger.last_in_trace(trace_id, "decision")
        if last is not None:
            try:
                state = advance(state_of(last.entry["facts"]), last.entry)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise TamperError(
                    f"the last decision of trace {trace_id} has malformed facts ({exc!r})",
                    index=last.index,
                ) from None
        elif binding.mandate is None:
            raise TamperError(f"the running request's decision in trace {trace_id} is missing")
        else:
            state = initial_state(trace_id, binding.mandate)
        # Outcomes are recorded after their decisions, so the newest provenance entry may
        # follow the last decision: one more indexed seek, never a scan.
        newest = self._ledger.last_in_trace(trace_id, "provenance")
        return with_provenance(state, None if newest is None else newest.index)
