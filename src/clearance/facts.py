"""Trace facts: what a trace has done so far, computed by the gate from the ledger.

Facts are never taken from the caller (DESIGN §3). They are computed from the
trace's entries in the ledger, recorded in every decision entry, and replayed
from there. Definitions, exactly:

* ``id`` — the trace id.
* ``depth`` — 0 for an intent without a parent; otherwise the parent decision's
  depth + 1. A parent that is not a decision of this trace counts as depth 0.
* ``count`` — the number of earlier decision entries in the trace, of any effect.
* ``actions`` — the actions of earlier decisions whose effect was ``allow``, in
  ledger order.
* ``untrusted`` — true once an earlier ``allow`` decision was for a tool the
  bundle marks ``untrusted_output`` (recorded in that decision entry).
* ``totals`` — for each action, for each top-level argument whose value is a
  number (int or float, never a bool), the sum over earlier ``allow``
  decisions. Redacted (sensitive) values are not numbers and never count.
  Example: ``trace.totals.transfer_funds.amount``.
* ``mandate`` — ``{"text": ..., "bounds": {...}}`` from the trace's ``trace``
  entry. A trace without one has the narrowest mandate: empty text and no bounds.
  Only trusted code writes trace entries (:meth:`Gate.trace`), so an intent that
  names an unknown trace id gains nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

EMPTY_MANDATE: dict[str, Any] = {"text": "", "bounds": {}}


def compute_facts(
    trace_id: str, parent_id: str | None, entries: Iterable[Mapping[str, Any]]
) -> tuple[dict[str, Any], int | None]:
    """Facts for a new decision in ``trace_id``, and the parent's ledger index if found.

    ``entries`` are the trace's entries in ledger order, each with an ``index``
    key added by the caller (the leaf index).
    """
    count = 0
    actions: list[str] = []
    untrusted = False
    totals: dict[str, dict[str, float | int]] = {}
    mandate: Mapping[str, Any] = EMPTY_MANDATE
    depth = 0
    parent_index: int | None = None
    for entry in entries:
        kind = entry.get("type")
        if kind == "trace":
            if mandate is EMPTY_MANDATE:
                mandate = entry.get("mandate") or EMPTY_MANDATE
            continue
        if kind != "decision":
            continue
        count += 1
        if parent_id is not None and entry.get("request_id") == parent_id:
            depth = int(entry.get("facts", {}).get("depth", 0)) + 1
            parent_index = int(entry["index"])
        if entry.get("effect") != "allow":
            continue
        intent = entry.get("intent", {})
        action = str(intent.get("action"))
        actions.append(action)
        untrusted = untrusted or bool(entry.get("untrusted_output"))
        args = intent.get("args") or {}
        for name, value in args.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                per_action = totals.setdefault(action, {})
                per_action[name] = per_action.get(name, 0) + value
    facts = {
        "id": trace_id,
        "depth": depth,
        "count": count,
        "actions": actions,
        "untrusted": untrusted,
        "totals": totals,
        "mandate": {
            "text": str(mandate.get("text", "")),
            "bounds": dict(mandate.get("bounds", {})),
        },
    }
    return facts, parent_index
