"""Decision replay: re-evaluate logged decisions under the logged policy and facts.

Invariant: evaluation is deterministic (same input + same bundle digest = same
decision), so replaying a decision entry under the ``policy`` entry whose digest
it names, with the trace facts and clock it recorded, must reproduce its effect
and reasons. A difference means the engine, the bundle or the log changed.

Value provenance (:mod:`clearance._internal.gate.provenance`): the facts name the
``provenance`` entry the decision's view came from (``provenance_index``); replay
reads that one entry, proven, and rebuilds the same view. A redacted argument
answers the helpers as its logged evidence says. Fingerprints keyed by the home's
log key need that key (``provenance_key``); without it the helpers fail.

Redacted arguments: the tool's ``args_schema`` is checked everywhere except inside
a redacted value, which the ledger does not hold (the live decision checked it; a
violation there shows as a difference, reported as ``unverifiable``).

Statuses: ``match``; ``mismatch``; ``unverifiable`` when the policy entry is
missing, the entry's sensitive arguments were redacted and the difference may
come from the redaction (the values are not in the log by design), or the
trace's fingerprints cannot be read without the home's key.

Shared with policy impact (:mod:`clearance._internal.policy_impact`): the
reconstruction of a decision's logged evaluation input (:func:`logged_request`,
:meth:`DecisionReplayer.logged_input`), its logged outcome (:func:`logged_summary`) and
the logged bundle (:meth:`DecisionReplayer.logged_engine`) are the same code for both.

Entries are read from a file someone else may have written: a decision entry
whose fields do not have the shapes the gate writes raises
:class:`~clearance.errors.TamperError` naming its index (never a KeyError or a
TypeError from deep inside the engine).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from clearance._internal.entries import parse_timestamp
from clearance._internal.gate.decide import decide
from clearance._internal.gate.provenance import read_fingerprints, redacted_at, redactions
from clearance._internal.ledger.store import LedgerStore, StoredEntry
from clearance._internal.policy.engine import EvaluationInput, PolicyEngine, ToolSpec
from clearance._internal.policy.provenance import EMPTY as EMPTY_PROVENANCE
from clearance._internal.policy.provenance import Provenance
from clearance.errors import Error, InputError, TamperError

ReplayStatus = Literal["match", "mismatch", "unverifiable"]


@dataclass(frozen=True)
class ReplayResult:
    """The outcome of replaying one decision entry."""

    request_id: str
    index: int
    status: ReplayStatus
    logged: Mapping[str, Any]
    replayed: Mapping[str, Any] | None
    detail: str

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form for the CLI."""
        return {
            "request_id": self.request_id,
            "index": self.index,
            "status": self.status,
            "logged": dict(self.logged),
            "replayed": dict(self.replayed) if self.replayed is not None else None,
            "detail": self.detail,
        }


def _summary(effect: Any, reasons: Any) -> dict[str, Any]:
    rules = [r.get("rule") if isinstance(r, Mapping) else r for r in reasons or []]
    return {"effect": effect, "rules": rules}


def logged_summary(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The logged outcome of a decision entry: ``{"effect": ..., "rules": [...]}``.

    An allow the gate overrode (no signing key) keeps the policy's own effect apart, in
    ``policy_effect``; that is the effect returned here.
    """
    return _summary(entry.get("policy_effect", entry.get("effect")), entry.get("reasons"))


def logged_request(stored: StoredEntry) -> EvaluationInput:
    """The evaluation input a decision entry records; TamperError if it is malformed.

    Without the trace's value provenance and the redacted paths: see
    :meth:`DecisionReplayer.logged_input`.
    """
    entry = stored.entry

    def malformed(what: str) -> TamperError:
        return TamperError(
            f"decision entry {stored.index} is malformed: {what}", index=stored.index
        )

    intent, facts = entry.get("intent"), entry.get("facts")
    if not isinstance(intent, Mapping):
        raise malformed("'intent' is not an object")
    if not isinstance(facts, Mapping):
        raise malformed("'facts' is not an object")
    for key in ("principal", "action"):
        if not isinstance(intent.get(key), str):
            raise malformed(f"'intent.{key}' is not a string")
    for key in ("resource", "purpose"):
        if not isinstance(intent.get(key), str | None):
            raise malformed(f"'intent.{key}' is not a string or null")
    for key in ("args", "input"):
        if not isinstance(intent.get(key), Mapping | None):
            raise malformed(f"'intent.{key}' is not an object or null")
    try:
        now = parse_timestamp(str(entry.get("now")))
    except InputError as exc:
        raise malformed(f"'now': {exc}") from None
    return EvaluationInput(
        principal=intent["principal"],
        action=intent["action"],
        resource=intent.get("resource"),
        args=intent.get("args") or {},
        purpose=intent.get("purpose"),
        input=intent.get("input"),
        trace=facts,
        now=now,
    )


class DecisionReplayer:
    """Replays decision entries of one ledger, caching engines by bundle digest."""

    def __init__(self, store: LedgerStore, *, provenance_key: bytes | None = None) -> None:
        """Replay from ``store``; ``provenance_key`` reads fingerprints keyed by the home."""
        self._store = store
        self._provenance_key = provenance_key
        self._engines: dict[str, PolicyEngine | None] = {}
        self._views: dict[int, Provenance] = {}

    def _redacted_paths(self, stored: StoredEntry, tool: ToolSpec | None) -> tuple[str, ...]:
        """The tool's sensitive paths that hold a redacted object in the logged args."""
        entry = stored.entry
        if tool is None or not entry.get("redacted"):
            return ()
        args = entry["intent"].get("args") or {}
        return tuple(path for path in tool.sensitive if redacted_at(args, path) is not None)

    def _provenance(self, stored: StoredEntry, tool: ToolSpec | None) -> Provenance:
        """The view the decision in ``stored`` was made with (see the module docstring)."""
        entry = stored.entry
        index = entry["facts"].get("provenance_index")
        if index is None:
            view = EMPTY_PROVENANCE
        elif type(index) is not int or not 0 <= index < stored.index:
            raise TamperError(
                f"decision entry {stored.index} is malformed: 'facts.provenance_index' is not "
                "the index of an earlier entry",
                index=stored.index,
            )
        else:
            found = self._views.get(index)
            if found is None:
                found = read_fingerprints(
                    self._store, index, str(entry.get("trace_id")), self._provenance_key
                ).view
                self._views[index] = found
            view = found
        if tool is None or not tool.sensitive or not entry.get("redacted"):
            return view
        return redactions(entry["intent"].get("args") or {}, tool.sensitive, view, stored.index)

    def logged_input(
        self, stored: StoredEntry, request: EvaluationInput, tool: ToolSpec | None
    ) -> EvaluationInput:
        """``request`` (:func:`logged_request` of ``stored``) as the decision was made.

        Adds the trace's value provenance the decision saw and the argument paths its
        logged ``args`` hold redacted. ``tool`` is the *logged* bundle's registry entry
        for the action: its ``sensitive`` paths say where the redacted values are.
        TamperError when the facts name a provenance entry that is not one.
        """
        return replace(
            request,
            provenance=self._provenance(stored, tool),
            redacted=self._redacted_paths(stored, tool),
        )

    def logged_engine(self, digest: str) -> PolicyEngine | None:
        """The engine of the bundle ``digest`` the log holds (cached by digest).

        None when the log has no ``policy`` entry for it (the deny-all engine needs
        none); PolicyError when the logged bundle does not load, TamperError when the
        entry holds no bundle object.
        """
        if digest not in self._engines:
            from clearance._internal.policy import DenyAllEngine
            from clearance._internal.policy.cel_engine import CelPolicyEngine

            deny_all = DenyAllEngine()
            found = self._store.find("policy", digest)
            if found:
                bundle = found[0].entry.get("bundle")
                if not isinstance(bundle, Mapping):
                    raise TamperError(
                        f"policy entry {found[0].index} holds no bundle object",
                        index=found[0].index,
                    )
                engine: PolicyEngine | None = CelPolicyEngine.from_document(bundle)
            elif digest == deny_all.digest:
                engine = deny_all
            else:
                engine = None
            self._engines[digest] = engine
        return self._engines[digest]

    def replay_entry(self, stored: StoredEntry) -> ReplayResult:
        """Replay one decision entry; TamperError when its fields are malformed."""
        entry = stored.entry
        request = logged_request(stored)
        request_id = str(entry.get("request_id"))
        logged = logged_summary(entry)
        digest = str(entry.get("policy_digest"))
        try:
            engine = self.logged_engine(digest)
        except Error as exc:
            return ReplayResult(
                request_id,
                stored.index,
                "unverifiable",
                logged,
                None,
                f"the logged bundle {digest} does not load: {exc}",
            )
        if engine is None:
            return ReplayResult(
                request_id,
                stored.index,
                "unverifiable",
                logged,
                None,
                f"no policy entry for bundle {digest} in the log",
            )
        request = self.logged_input(stored, request, engine.tool(request.action))
        provenance = request.provenance
        try:
            decision = decide(engine, request)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise TamperError(
                f"decision entry {stored.index} cannot be replayed: its logged facts do not "
                f"have the shapes the gate writes ({exc!r})",
                index=stored.index,
            ) from None
        replayed = _summary(decision.effect, [r.to_json() for r in decision.reasons])
        if replayed == logged:
            return ReplayResult(request_id, stored.index, "match", logged, replayed, "")
        if provenance.unavailable is not None:
            return ReplayResult(
                request_id,
                stored.index,
                "unverifiable",
                logged,
                replayed,
                f"{provenance.unavailable}; replay with the home (clearance replay)",
            )
        if entry.get("redacted"):
            return ReplayResult(
                request_id,
                stored.index,
                "unverifiable",
                logged,
                replayed,
                "sensitive arguments are redacted in the log; the difference may come from them",
            )
        return ReplayResult(
            request_id,
            stored.index,
            "mismatch",
            logged,
            replayed,
            f"logged {logged['effect']} {logged['rules']}, "
            f"replayed {replayed['effect']} {replayed['rules']}",
        )

    def replay_request(self, request_id: str) -> ReplayResult:
        """Replay the decision logged for ``request_id``; InputError if there is none."""
        found = self._store.find("decision", request_id)
        if not found:
            raise InputError(f"no decision with request id {request_id!r} in the ledger")
        return self.replay_entry(found[0])

    def replay_all(self) -> Iterator[ReplayResult]:
        """Replay every decision entry in the log, in order."""
        for stored in self._store.scan():
            if stored.entry.get("type") == "decision":
                yield self.replay_entry(stored)
