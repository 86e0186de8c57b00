"""Draining the spool: outcomes an earlier failure left behind, appended once and only once.

Invariants (docs/design.md §1 step 7, fail-closed rule 13; the spool's own are in
:mod:`clearance._internal.gate.spool`):

* Only an authenticated spooled entry reaches the ledger, and only when
  :func:`classify_spooled` says the ledger does not hold it yet: an ``ok``/``error``
  outcome needs its ``allow`` decision at ``decision_index`` (proven to be in the
  log), and is not appended twice; a ``rejected`` one (a refused, possibly forged
  grant) is appended once, identical leaf for identical file.
* Draining never stops the gate from deciding: the first error stops the drain, the
  rest stay spooled for the next open, and it is logged on ``clearance.gate`` at
  WARNING. A drain that appended anything is logged at INFO.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from clearance._internal.canonical import canonical_json
from clearance._internal.gate.spool import Spool, SpoolVerdict
from clearance._internal.ledger.store import LedgerStore

log = logging.getLogger("clearance.gate")


def drain_spool(spool: Spool, ledger: LedgerStore) -> int:
    """Append authenticated spooled outcomes into ``ledger``; returns how many."""
    report = spool.drain(ledger.append, lambda entry: classify_spooled(ledger, entry))
    if report.appended:
        log.info("drained %d spooled outcomes into the ledger", report.appended)
    if report.error is not None:
        # The rest stay spooled for the next open; deciding does not depend on them.
        log.warning("spool drain stopped: %s", report.error)
    return report.appended


def classify_spooled(ledger: LedgerStore, entry: Mapping[str, Any]) -> SpoolVerdict:
    """Whether a (sealed) spooled execution entry is appended, already logged, or refused."""
    request_id = entry.get("request_id")
    if not isinstance(request_id, str):
        return SpoolVerdict.reject("the outcome names no request id")
    logged = ledger.find("execution", request_id)
    if entry.get("status") == "rejected":
        if any(stored.leaf == canonical_json(dict(entry)) for stored in logged):
            return SpoolVerdict.ALREADY_LOGGED
        return SpoolVerdict.APPEND
    if any(stored.entry.get("status") != "rejected" for stored in logged):
        return SpoolVerdict.ALREADY_LOGGED
    decisions = [ledger.prove(d) for d in ledger.find("decision", request_id)]
    if not any(
        d.index == entry.get("decision_index") and d.entry.get("effect") == "allow"
        for d in decisions
    ):
        return SpoolVerdict.reject(f"no allow decision for request {request_id} in the ledger")
    return SpoolVerdict.APPEND
