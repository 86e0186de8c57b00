"""Value provenance in the gate: per trace, the fingerprints of what marked tools returned.

What is extracted from a result, how it is normalized and fingerprinted, and what
provenance cannot see are in :mod:`clearance._internal.policy.provenance`. This
module keeps the fingerprints in the ledger and hands each decision its view.

Where the fingerprints live
---------------------------

In ``provenance`` ledger entries, never in decision entries. When the recorded
result of a tool marked ``untrusted_output`` or ``sensitive_output`` adds a
fingerprint, the gate appends, right after the outcome's ``execution`` entry, one
``provenance`` entry holding the trace's *whole* bounded sets (sorted), the salt,
whether the trace key is keyed by the home's secret, a key check, how many
fingerprints this outcome added, which origins are full, and the trace's previous
provenance entry (``previous``, for auditors; readers never follow it). A result
that adds nothing appends nothing.

Invariants:

* **Raw values never reach the ledger.** A provenance entry holds fingerprints
  (truncated HMAC-SHA256), a salt and a key check; a redacted argument gains only
  the helpers' two answers.
* **Constant-size facts, constant-cost decisions.** A trace's state holds one
  number, ``provenance_index``: the ledger index of its newest provenance entry.
  Decisions log it in their facts. A decision reads the view at that index from a
  cache, or on a miss reads that one entry (``get`` then ``prove``: an inclusion
  proof against the tree verified at open). A cold start finds the index with one
  indexed seek (``last_in_trace(trace, "provenance")``). Nothing scans history.
* **Ordered with decisions.** Provenance entries are appended under the trace's
  lock, the lock decisions take from reading the facts to appending the decision,
  so a decision's ``provenance_index`` names the newest provenance entry committed
  before it, and every later decision sees at least that much.
* **Replay is exact.** A decision's view is a pure function of the entry its facts
  name (and the home's key); :mod:`clearance._internal.decision_replay` rebuilds it
  from there. A restarted gate finds the same newest entry, so it decides alike.
* **Bounded.** At most ``limits.provenance_values`` fingerprints per origin per
  trace; the first ones are kept, and an origin that had to drop one is ``full``
  for good (the helpers then fail closed, see the policy module). An entry is at
  most about 35 bytes per fingerprint.
* **Fails closed.** Fingerprints the gate cannot read (an entry made under another
  key, or a keyed trace in a gate without the key) make the helpers fail the rule,
  which denies, and an outcome whose fingerprints cannot be appended raises
  :class:`~clearance.errors.OutcomeUnrecorded` (a governed function's caller then
  never receives the result).

Limit: the fingerprints are recorded when the outcome is, at the end of the
governed call. A ``with gate.clearance(...)`` body that hands a result to a nested
governed call *before* it ends is decided without it; read untrusted or sensitive
data in a governed call of its own (a decorated function returns its result only
after it was recorded).
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from clearance._internal import entries
from clearance._internal.canonical import canonical_json
from clearance._internal.gate.facts import with_provenance
from clearance._internal.gate.traces import TraceStates
from clearance._internal.ledger.store import LedgerStore
from clearance._internal.policy.provenance import (
    EMPTY,
    ORIGINS,
    Origin,
    Provenance,
    fingerprint,
    key_check,
    output_candidates,
    trace_key,
)
from clearance.errors import TamperError

__all__ = [
    "ENTRY_TYPE",
    "ProvenanceBook",
    "TraceFingerprints",
    "read_fingerprints",
    "redacted_at",
    "redactions",
    "with_evidence",
]

ENTRY_TYPE: Final = "provenance"
SALT_BYTES: Final = 16
VIEW_CACHE: Final = 256
"""Views kept in memory per gate, by ledger index (a view is immutable once appended)."""

_FINGERPRINT: Final = re.compile(r"[0-9a-f]{32}")
_CHECK: Final = re.compile(r"[0-9a-f]{16}")


class ProvenanceError(Exception):
    """The trace's fingerprints cannot be extended (their key is not this gate's)."""


@dataclass(frozen=True)
class TraceFingerprints:
    """One provenance entry as read back: its view and what extending it needs."""

    index: int
    trace_id: str
    salt: bytes
    keyed: bool
    key: bytes | None = field(repr=False)  # a secret: never in a repr or a log
    """The trace key, or None when this reader cannot compute it (the view is unavailable)."""
    view: Provenance


def _malformed(index: int, what: str) -> TamperError:
    return TamperError(f"provenance entry {index} is malformed: {what}", index=index)


def read_fingerprints(
    ledger: LedgerStore, index: int, trace_id: str, key: bytes | None
) -> TraceFingerprints:
    """The provenance entry at ``index``, proven to be in the log, as trace ``trace_id``'s view.

    TamperError when the entry is not a well-formed provenance entry of that trace.
    A keyed entry read without ``key``, or with another key (its ``check`` differs),
    gives a view whose helpers fail (:attr:`Provenance.unavailable`).
    """
    stored = ledger.prove(ledger.get(index))
    entry = stored.entry
    if entry.get("type") != ENTRY_TYPE or entry.get("trace_id") != trace_id:
        raise TamperError(
            f"entry {index} is not a provenance entry of trace {trace_id}", index=index
        )
    try:
        salt = base64.b64decode(str(entry.get("salt")), validate=True)
    except (binascii.Error, ValueError):
        raise _malformed(index, "'salt' is not base64") from None
    keyed, check, full = entry.get("keyed"), entry.get("check"), entry.get("full")
    if len(salt) != SALT_BYTES or not isinstance(keyed, bool):
        raise _malformed(index, "'salt' or 'keyed' has the wrong shape")
    if not isinstance(check, str) or not _CHECK.fullmatch(check):
        raise _malformed(index, "'check' is not 16 hex digits")
    if not isinstance(full, Mapping) or not all(isinstance(full.get(o), bool) for o in ORIGINS):
        raise _malformed(index, "'full' does not say true or false for every origin")
    sets: dict[Origin, frozenset[str]] = {}
    for origin in ORIGINS:
        values = entry.get(origin)
        if not isinstance(values, list) or not all(
            isinstance(v, str) and _FINGERPRINT.fullmatch(v) for v in values
        ):
            raise _malformed(index, f"'{origin}' is not a list of fingerprints")
        sets[origin] = frozenset(values)
    full_origins = frozenset(o for o in ORIGINS if full[o])
    unavailable = None
    if keyed and key is None:
        unavailable = (
            f"the fingerprints of trace {trace_id} are keyed by the home's log key, "
            "which this reader does not have"
        )
    tkey = trace_key(key if keyed else None, salt)
    if unavailable is None and key_check(tkey) != check:
        unavailable = f"the fingerprints of trace {trace_id} were made under another key"
    if unavailable is not None:
        return TraceFingerprints(
            index, trace_id, salt, keyed, None, Provenance(unavailable=unavailable)
        )
    view = Provenance(
        key=tkey, untrusted=sets["untrusted"], sensitive=sets["sensitive"], full=full_origins
    )
    return TraceFingerprints(index, trace_id, salt, keyed, tkey, view)


class ProvenanceBook:
    """One gate's access to its traces' fingerprints (see the module invariants)."""

    def __init__(
        self,
        *,
        ledger: LedgerStore,
        states: TraceStates,
        key: bytes | None,
        limit: int,
        capacity: int = VIEW_CACHE,
    ) -> None:
        """Keep fingerprints in ``ledger`` under ``key`` (None: salted only), ``limit``/origin."""
        self._ledger = ledger
        self._states = states
        self._key = key
        self._limit = limit
        self._capacity = capacity
        self._cache: OrderedDict[int, TraceFingerprints] = OrderedDict()
        self._guard = threading.Lock()

    @property
    def key(self) -> bytes | None:
        """The gate's provenance key (None: fingerprints are only salted)."""
        return self._key

    def newest(self, trace_id: str) -> int | None:
        """The index of the trace's newest provenance entry (one indexed seek, proven)."""
        found = self._ledger.last_in_trace(trace_id, ENTRY_TYPE)
        return None if found is None else found.index

    def fingerprints(self, trace_id: str, index: int | None) -> TraceFingerprints | None:
        """The entry at ``index`` as trace ``trace_id``'s fingerprints (cached), None for None."""
        if index is None:
            return None
        with self._guard:
            found = self._cache.get(index)
            if found is not None:
                self._cache.move_to_end(index)
        if found is None:
            found = read_fingerprints(self._ledger, index, trace_id, self._key)
            self._remember(found)
        if found.trace_id != trace_id:
            raise TamperError(
                f"entry {index} is not a provenance entry of trace {trace_id}", index=index
            )
        return found

    def view(self, trace_id: str, index: int | None) -> Provenance:
        """What a decision in ``trace_id`` whose ``provenance_index`` is ``index`` sees."""
        found = self.fingerprints(trace_id, index)
        return EMPTY if found is None else found.view

    def _known_full(self, trace_id: str) -> frozenset[Origin]:
        """The origins the cache already knows are full in ``trace_id`` (no ledger read)."""
        state = self._states.get(trace_id, self._ledger.generation)
        index = None if state is None else state["provenance_index"]
        with self._guard:
            known = self._cache.get(index) if index is not None else None
        return frozenset() if known is None else known.view.full

    def _remember(self, found: TraceFingerprints) -> None:
        with self._guard:
            self._cache[found.index] = found
            self._cache.move_to_end(found.index)
            while len(self._cache) > self._capacity:
                self._cache.popitem(last=False)

    def record(
        self,
        *,
        trace_id: str,
        request_id: str,
        decision_index: int,
        result: Any,
        origins: Iterable[Origin],
        now: float,
    ) -> int | None:
        """Fingerprint ``result`` for ``origins``; append a provenance entry if anything is new.

        Returns the new entry's index, or None when the result added nothing.
        LedgerError when the append fails, TamperError for a malformed newest entry,
        ProvenanceError when the trace's fingerprints are not this gate's to extend.
        """
        # Extraction is the slow part (about 0.3 µs per character) and needs no state, so
        # it runs before the trace's lock; an origin already full (full is for good) is
        # skipped when the cache says so.
        skip = self._known_full(trace_id)
        found = {o: output_candidates(result, o) for o in dict.fromkeys(origins) if o not in skip}
        with self._states.lock(trace_id):
            generation = self._ledger.generation
            cached = self._states.get(trace_id, generation)
            index = cached["provenance_index"] if cached is not None else self.newest(trace_id)
            current = self.fingerprints(trace_id, index)
            if current is None:
                salt, keyed = secrets.token_bytes(SALT_BYTES), self._key is not None
                tkey, view = trace_key(self._key, salt), EMPTY
            elif current.key is None:
                raise ProvenanceError(str(current.view.unavailable))
            else:
                salt, keyed, tkey, view = current.salt, current.keyed, current.key, current.view
            sets = {origin: set(view.fingerprints(origin)) for origin in ORIGINS}
            full = {origin: origin in view.full for origin in ORIGINS}
            added = dict.fromkeys(ORIGINS, 0)
            for origin, candidates in found.items():
                if full[origin]:
                    continue  # a full origin already answers true for everything
                kept = sets[origin]
                for candidate in candidates:
                    mark = fingerprint(tkey, candidate)
                    if mark in kept:
                        continue
                    if len(kept) >= self._limit:
                        full[origin] = True  # keep the first ones; the helpers fail closed
                        break
                    kept.add(mark)
                    added[origin] += 1
            if not any(added.values()) and all(full[o] == (o in view.full) for o in ORIGINS):
                return None
            entry = entries.provenance_entry(
                now,
                trace_id=trace_id,
                request_id=request_id,
                decision_index=decision_index,
                salt=salt,
                keyed=keyed,
                check=key_check(tkey),
                fingerprints=sets,
                full=full,
                added=added,
                previous=index,
            )
            try:
                appended = self._ledger.append(entry, sync=False)  # as its outcome's
            except BaseException:
                self._states.forget(trace_id)  # the next decision reads the ledger again
                raise
            new_view = Provenance(
                key=tkey,
                untrusted=frozenset(sets["untrusted"]),
                sensitive=frozenset(sets["sensitive"]),
                full=frozenset(o for o in ORIGINS if full[o]),
            )
            self._remember(TraceFingerprints(appended, trace_id, salt, keyed, tkey, new_view))
            if cached is not None:
                self._states.put(trace_id, generation, with_provenance(cached, appended))
            return appended


# --- sensitive arguments ------------------------------------------------------------------


def _at(value: Any, parts: list[str]) -> Any:
    for part in parts:
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _redacted_at(logged: Any, parts: list[str]) -> dict[str, Any] | None:
    node = _at(logged, parts)
    return node if isinstance(node, dict) and entries.REDACTED_KEY in node else None


def redacted_at(logged_args: Mapping[str, Any], path: str) -> Mapping[str, Any] | None:
    """The redacted object at dot ``path`` of logged ``args``, or None."""
    return _redacted_at(logged_args, path.split("."))


def with_evidence(
    logged_args: dict[str, Any], args: Mapping[str, Any], paths: Iterable[str], view: Provenance
) -> dict[str, Any]:
    """``logged_args`` (the copy :func:`~clearance._internal.entries.redact_args` made) with
    the helpers' answers for each redacted value's real value, where replay needs them.
    """
    for path in paths:
        parts = path.split(".")
        redacted = _redacted_at(logged_args, parts)
        if redacted is None:
            continue
        evidence = view.evidence(_at(args, parts))
        if evidence is not None:
            redacted["provenance"] = evidence
    return logged_args


def redactions(
    logged_args: Mapping[str, Any], paths: Iterable[str], view: Provenance, index: int
) -> Provenance:
    """``view`` for replaying a decision whose logged ``args`` hold redacted values at ``paths``.

    Each redacted object answers what its logged evidence says; one without evidence
    was a string or a number decided with an empty view (both answers false), or, if
    the view is not empty, cannot be answered (the rule fails). TamperError for
    evidence that does not have the shape the gate writes.
    """
    found: dict[str, Mapping[str, bool | None]] = {}
    for path in paths:
        node = _redacted_at(logged_args, path.split("."))
        if node is None:
            continue
        evidence = node.get("provenance")
        if evidence is None:
            if not view.empty:
                continue
            evidence = dict.fromkeys(ORIGINS, False)
        if not isinstance(evidence, Mapping) or set(evidence) != set(ORIGINS):
            raise TamperError(
                f"decision entry {index} is malformed: a redacted value's provenance evidence "
                "is not {untrusted, sensitive}",
                index=index,
            )
        if not all(answer is None or isinstance(answer, bool) for answer in evidence.values()):
            raise TamperError(
                f"decision entry {index} is malformed: provenance evidence is not true, false "
                "or null",
                index=index,
            )
        found[canonical_json(node).decode("utf-8")] = dict(evidence)
    return replace(view, redactions=found) if found else view
