"""Trace facts: what a trace has done so far, as a fold over its decisions.

Facts are never taken from the caller (docs/design.md §3). They are computed by the
gate, recorded in every decision entry, and replayed from there. Definitions,
exactly (``trace.*`` in a policy):

* ``id`` — the trace id.
* ``depth`` — 0 for a request without a parent; otherwise the parent's depth + 1.
  The parent is the governed call whose body is running (never named by the caller).
* ``count`` — the number of earlier decisions in the trace, of any effect.
* ``actions`` — the distinct actions of earlier ``allow`` decisions, in the order
  each was first allowed.
* ``untrusted`` — true once an earlier ``allow`` or ``approval_required`` decision was
  for a tool the bundle marks ``untrusted_output`` (recorded in that decision entry).
* ``totals`` — for each action, for each top-level argument whose value is a number
  (int or float, never a bool), the sum over earlier ``allow`` and
  ``approval_required`` decisions. Redacted (sensitive) values are not numbers and
  never count. Example: ``trace.totals.pay_invoice.amount``.

  A request that needs approval counts toward ``totals`` and ``untrusted`` when it is
  decided, before anyone approves it: an approval may be granted later, and a cap
  that only counted allowed decisions would let approved requests exceed it (two
  approved 600s under a cap of 1,000). So a pending amount is reserved, and one that
  is denied or expires stays counted: the safe direction. It does not enter
  ``actions`` (rules may require that an action really happened).
* ``mandate`` — ``{"text": ..., "bounds": {...}}`` given by the trusted code that
  opened the trace (or the gate's default mandate for a call made with no trace open).
* ``provenance_index`` — the ledger index of the trace's newest ``provenance`` entry
  (the fingerprints of values its marked tools returned; see
  :mod:`clearance._internal.gate.provenance`), or null. It is the one fact not
  folded from decisions: outcomes are recorded after their decision, so the gate
  sets it when it appends a ``provenance`` entry, and on a cache miss reads the
  trace's newest one (one indexed seek, proven). The fingerprint sets themselves
  never enter the facts.

Invariants:

* **Constant size and constant time.** The state after a decision depends only on
  the facts that decision was made with and the decision itself
  (:func:`advance`), so the gate needs the trace's *last* decision entry (and its
  newest ``provenance`` entry), never its history. The size of the facts is bounded
  by the policy (distinct allowed actions and their numeric arguments) plus the
  mandate, never by the trace's length.
* **Ledger domain.** Facts hold exactly the values their JSON (RFC 8785) form reads
  back as: an integral float total is an int (``120.0`` is logged as ``120``), so the
  facts a live decision sees equal the facts its replay reads from the ledger.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

EMPTY_MANDATE: Final[Mapping[str, Any]] = {"text": "", "bounds": {}}

_SAFE_INTEGER: Final[float] = float(2**53 - 1)

STATE_KEYS: Final[tuple[str, ...]] = (
    "id",
    "count",
    "actions",
    "untrusted",
    "totals",
    "mandate",
    "provenance_index",
)
"""The keys of a trace state: the facts without ``depth``, which is per request."""


def ledger_number(value: int | float) -> int | float:
    """``value`` as RFC 8785 JSON reads it back: an integral float within ±(2^53−1) is an int."""
    if type(value) is float and value.is_integer() and -_SAFE_INTEGER <= value <= _SAFE_INTEGER:
        return int(value)
    return value


def initial_state(trace_id: str, mandate: Mapping[str, Any]) -> dict[str, Any]:
    """The state of a trace before its first decision."""
    return {
        "id": trace_id,
        "count": 0,
        "actions": [],
        "untrusted": False,
        "totals": {},
        "mandate": {
            "text": str(mandate.get("text", "")),
            "bounds": dict(mandate.get("bounds") or {}),
        },
        "provenance_index": None,
    }


def state_of(facts: Mapping[str, Any]) -> dict[str, Any]:
    """The trace state inside recorded ``facts`` (``depth`` dropped).

    Facts logged before provenance existed have no ``provenance_index``: null.
    """
    return {key: facts[key] if key != "provenance_index" else facts.get(key) for key in STATE_KEYS}


def with_provenance(state: Mapping[str, Any], index: int | None) -> dict[str, Any]:
    """``state`` whose newest ``provenance`` entry is at ledger index ``index``."""
    return {**state, "provenance_index": index}


def for_request(state: Mapping[str, Any], depth: int) -> dict[str, Any]:
    """The facts a decision at ``depth`` sees in a trace whose state is ``state``."""
    return {**state, "depth": depth}


def advance(state: Mapping[str, Any], decision: Mapping[str, Any]) -> dict[str, Any]:
    """The trace state after ``decision`` (a decision entry) was logged in state ``state``.

    Uses the entry's ``effect`` (what the gate did, after any override), its logged
    intent's ``action`` and ``args``, and its ``untrusted_output`` flag. Never mutates
    ``state``.
    """
    count = int(state["count"]) + 1
    effect = decision.get("effect")
    if effect != "allow" and effect != "approval_required":
        return {**state, "count": count}
    intent = decision.get("intent") or {}
    action = str(intent.get("action"))
    actions = list(state["actions"])
    if effect == "allow" and action not in actions:
        actions.append(action)
    totals = dict(state["totals"])
    numbers = {
        name: value
        for name, value in (intent.get("args") or {}).items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    if numbers:
        per_action = dict(totals.get(action) or {})
        for name, value in numbers.items():
            per_action[name] = ledger_number(per_action.get(name, 0) + value)
        totals[action] = per_action
    return {
        **state,
        "count": count,
        "actions": actions,
        "untrusted": bool(state["untrusted"]) or bool(decision.get("untrusted_output")),
        "totals": totals,
    }
