"""Policy impact: which logged decisions a candidate bundle would decide differently.

Invariants:

* Read only. The analysis reads the newest ``last`` ``decision`` entries of a ledger
  (and the ``policy`` and ``provenance`` entries they name) and appends nothing.
* Each decision is evaluated under the candidate with the evaluation input decision
  replay rebuilds (:mod:`clearance._internal.decision_replay`, the same code): the
  logged intent, trace facts and clock, the trace's value provenance as of the
  ``provenance`` entry its facts name, and the evidence logged beside redacted
  arguments. The decision is the gate's own (:func:`~clearance._internal.gate.decide.decide`:
  mandate expiry, then the engine).
* Nothing is dropped: every examined decision is exactly one of unchanged, changed or
  unverifiable, and :class:`ImpactReport` refuses to exist otherwise.
* Compared is the *policy's* outcome: its effect (``policy_effect`` when the gate
  overrode an allow for want of a signing key, as replay does) and the set of deciding
  rule ids. A different effect is a change of kind ``effect``; the same effect decided
  by other rules is a change of kind ``rules`` (the message shown, and for
  ``approval_required`` the quorum and approvers, come from the deciding rules). Rule
  order is not compared: the engine lists reasons in bundle order.
* ``approval_required`` is an effect like the other two. What later happened to the
  approval (votes, expiry, collection) is not a policy outcome and is not compared;
  a change carries the ``approval_id`` so a reader can look it up. Approval steps are
  ``approval`` entries, not decisions, so they are never examined; nor are other
  non-decision entries.
* First order: each decision is evaluated with the facts it was logged with. When
  the candidate would change an earlier decision of a trace, the facts of later ones
  (``count``, ``actions``, ``totals``) would differ too; that is not modelled.

Unverifiable (never silently counted as unchanged), with the reason:

* The decision's sensitive arguments are redacted and a candidate rule that applies
  to its action and principal reads one of them (anything but ``has(args.x)`` or
  ``from_untrusted(args.x)`` / ``carries_sensitive(args.x)``, which the logged
  evidence answers exactly); or the candidate's ``args_schema`` for the tool differs
  from the logged one, or the logged decision was an ``args-schema`` denial (neither
  can be checked inside a value the log does not hold); or the log does not say
  where the redacted values are (the logged bundle is missing or does not load).
* The trace's fingerprints are keyed by the home's log key, no ``provenance_key``
  was given, and an applicable candidate rule calls a provenance helper.
* The candidate cannot evaluate the logged input at all (PolicyError).

A candidate that is strict and does not list the action denies it before reading any
argument, so none of the redaction reasons apply to it.

Entries are read from a file someone else may have written: a decision entry whose
fields do not have the shapes the gate writes raises
:class:`~clearance.errors.TamperError` naming its index, as in replay.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias, cast

from clearance._internal.decision_replay import DecisionReplayer, logged_request
from clearance._internal.gate.decide import decide
from clearance._internal.ledger.store import LedgerStore, StoredEntry
from clearance._internal.policy.cel_source import (
    Token,
    in_has,
    picked_key,
    root_references,
    tokenize,
)
from clearance._internal.policy.engine import EFFECTS, Effect, EvaluationInput, Reason, ToolSpec
from clearance._internal.policy.functions import PROVENANCE_HELPERS
from clearance.errors import Error, InputError, PolicyError, TamperError

if TYPE_CHECKING:
    # The CEL binding takes a while to import; the CLI reads DEFAULT_LAST without it.
    from clearance._internal.policy.bundle import Bundle, Rule
    from clearance._internal.policy.cel_engine import CelPolicyEngine

__all__ = [
    "DEFAULT_LAST",
    "Candidate",
    "DecisionChange",
    "DecisionRef",
    "ImpactReport",
    "Outcome",
    "UnverifiableDecision",
    "analyze_impact",
    "load_candidate",
    "redacted_read",
]

DEFAULT_LAST: Final[int] = 1000
"""How many of the newest decisions an analysis examines unless told otherwise."""

_SCAN_CHUNK: Final[int] = 256
"""Entries read per backward step while looking for the newest decisions (doubles each step)."""

Candidate: TypeAlias = "CelPolicyEngine | Bundle | str | os.PathLike[str]"
"""A candidate bundle: loaded (an engine or a validated bundle) or a directory (or file)
of YAML for the project's loader."""

ChangeKind = Literal["effect", "rules"]


@dataclass(frozen=True)
class Outcome:
    """A policy outcome: the effect and the reasons (rule ids and messages) that decided it."""

    effect: Effect
    reasons: tuple[Reason, ...]

    @property
    def rules(self) -> tuple[str, ...]:
        """The deciding rule ids (or gate reasons such as ``default-deny``), in order."""
        return tuple(r.rule for r in self.reasons)

    def to_json(self) -> dict[str, Any]:
        """``{"effect", "rules", "reasons": [{"rule", "message"}]}``."""
        return {
            "effect": self.effect,
            "rules": list(self.rules),
            "reasons": [r.to_json() for r in self.reasons],
        }


@dataclass(frozen=True)
class DecisionRef:
    """Which logged decision: where it is in the log and what it was about."""

    index: int
    request_id: str
    trace_id: str | None
    at: str
    principal: str
    action: str
    approval_id: str | None

    def to_json(self) -> dict[str, Any]:
        """The fields as a JSON object."""
        return asdict(self)


@dataclass(frozen=True)
class DecisionChange:
    """A logged decision the candidate would decide differently."""

    decision: DecisionRef
    logged: Outcome
    candidate: Outcome

    def __post_init__(self) -> None:
        if self.kind_of(self.logged, self.candidate) is None:
            raise ValueError("a DecisionChange needs outcomes that differ")

    @staticmethod
    def kind_of(logged: Outcome, candidate: Outcome) -> ChangeKind | None:
        """``effect``, ``rules`` (same effect, another set of rules) or None (unchanged)."""
        if logged.effect != candidate.effect:
            return "effect"
        if set(logged.rules) != set(candidate.rules):
            return "rules"
        return None

    @property
    def kind(self) -> ChangeKind:
        """``effect`` when the effect differs, ``rules`` when only the deciding rules do."""
        return cast(ChangeKind, self.kind_of(self.logged, self.candidate))

    @property
    def transition(self) -> str:
        """``logged->candidate`` effects, e.g. ``allow->deny`` (``deny->deny`` for kind rules)."""
        return f"{self.logged.effect}->{self.candidate.effect}"

    def to_json(self) -> dict[str, Any]:
        """The decision's fields, ``kind``, ``transition``, ``logged`` and ``candidate``."""
        return {
            **self.decision.to_json(),
            "kind": self.kind,
            "transition": self.transition,
            "logged": self.logged.to_json(),
            "candidate": self.candidate.to_json(),
        }


@dataclass(frozen=True)
class UnverifiableDecision:
    """A logged decision the candidate cannot be evaluated on faithfully, and why."""

    decision: DecisionRef
    logged: Outcome
    reason: str

    def to_json(self) -> dict[str, Any]:
        """The decision's fields, ``logged`` and ``reason``."""
        return {**self.decision.to_json(), "logged": self.logged.to_json(), "reason": self.reason}


def _tally(keys: Iterable[str]) -> dict[str, int]:
    return dict(sorted(Counter(keys).items()))


@dataclass(frozen=True)
class ImpactReport:
    """What a candidate bundle would change among the newest logged decisions.

    Invariant: ``examined == unchanged + len(changes) + len(unverifiable)``.
    """

    candidate_digest: str
    ledger_size: int
    """The log's size when it was read; the window ends there."""
    last: int | None
    """The window asked for: the newest ``last`` decisions (None: every decision)."""
    examined: int
    unchanged: int
    changes: tuple[DecisionChange, ...]
    unverifiable: tuple[UnverifiableDecision, ...]
    first_index: int | None
    """Log index of the oldest decision examined (None when there was none)."""
    last_index: int | None
    """Log index of the newest decision examined (None when there was none)."""

    def __post_init__(self) -> None:
        if self.examined != self.unchanged + len(self.changes) + len(self.unverifiable):
            raise ValueError(
                f"impact report loses decisions: {self.examined} examined, {self.unchanged} "
                f"unchanged, {len(self.changes)} changed, {len(self.unverifiable)} unverifiable"
            )

    @property
    def by_transition(self) -> dict[str, int]:
        """Changes per ``logged->candidate`` effect pair."""
        return _tally(c.transition for c in self.changes)

    @property
    def by_action(self) -> dict[str, int]:
        """Changes per action."""
        return _tally(c.decision.action for c in self.changes)

    @property
    def by_candidate_rule(self) -> dict[str, int]:
        """Changes per rule deciding them under the candidate (a change counts once per rule)."""
        return _tally(rule for c in self.changes for rule in dict.fromkeys(c.candidate.rules))

    @property
    def by_logged_rule(self) -> dict[str, int]:
        """Changes per rule that decided them as logged (a change counts once per rule)."""
        return _tally(rule for c in self.changes for rule in dict.fromkeys(c.logged.rules))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form (plain dicts, lists, strings, ints, None)."""
        return {
            "candidate_digest": self.candidate_digest,
            "ledger_size": self.ledger_size,
            "last": self.last,
            "first_index": self.first_index,
            "last_index": self.last_index,
            "counts": {
                "examined": self.examined,
                "unchanged": self.unchanged,
                "changed": len(self.changes),
                "unverifiable": len(self.unverifiable),
            },
            "by_transition": self.by_transition,
            "by_action": self.by_action,
            "by_candidate_rule": self.by_candidate_rule,
            "by_logged_rule": self.by_logged_rule,
            "changes": [c.to_json() for c in self.changes],
            "unverifiable": [u.to_json() for u in self.unverifiable],
        }


def load_candidate(candidate: Candidate) -> CelPolicyEngine:
    """The engine of ``candidate``: as given, over a loaded bundle, or loaded from a path.

    A path is a bundle directory (or one YAML file) read with the project's loader, as
    ``clearance policy lint`` and ``PUT /v1/policies`` read it: InputError when nothing
    is there, the loader's PolicyError when it does not load.
    """
    from clearance._internal.policy.bundle import Bundle
    from clearance._internal.policy.cel_engine import CelPolicyEngine

    if isinstance(candidate, CelPolicyEngine):
        return candidate
    if isinstance(candidate, Bundle):
        return CelPolicyEngine(candidate)
    if isinstance(candidate, str | os.PathLike):
        path = Path(candidate)
        if not path.exists():
            raise InputError(f"{path}: no such directory; pass the candidate bundle's directory")
        return CelPolicyEngine.from_directory(path)
    raise TypeError(
        f"candidate must be a CelPolicyEngine, a Bundle or a path, not {type(candidate).__name__}"
    )


def analyze_impact(
    ledger: LedgerStore,
    candidate: Candidate,
    *,
    last: int | None = DEFAULT_LAST,
    provenance_key: bytes | None = None,
) -> ImpactReport:
    """Evaluate the newest ``last`` decisions of ``ledger`` under ``candidate``; see the module.

    ``last`` is a positive number of decisions, or None for every decision in the log.
    ``provenance_key`` reads trace fingerprints keyed by the home (as for replay).
    Appends nothing. Raises the candidate's load errors (:func:`load_candidate`), and
    TamperError for a decision entry that is malformed.
    """
    if last is not None and (type(last) is not int or last < 1):
        raise ValueError(f"last must be a positive int or None, not {last!r}")
    engine = load_candidate(candidate)
    size = ledger.size()
    decisions = _newest_decisions(ledger, size, last)
    analyzer = _Analyzer(engine, DecisionReplayer(ledger, provenance_key=provenance_key))
    changes: list[DecisionChange] = []
    unverifiable: list[UnverifiableDecision] = []
    unchanged = 0
    for stored in decisions:
        verdict = analyzer.assess(stored)
        if isinstance(verdict, DecisionChange):
            changes.append(verdict)
        elif isinstance(verdict, UnverifiableDecision):
            unverifiable.append(verdict)
        else:
            unchanged += 1
    return ImpactReport(
        candidate_digest=engine.digest,
        ledger_size=size,
        last=last,
        examined=len(decisions),
        unchanged=unchanged,
        changes=tuple(changes),
        unverifiable=tuple(unverifiable),
        first_index=decisions[0].index if decisions else None,
        last_index=decisions[-1].index if decisions else None,
    )


def _newest_decisions(ledger: LedgerStore, size: int, last: int | None) -> list[StoredEntry]:
    """The newest ``last`` decision entries below ``size`` (all when None), oldest first.

    Reads backwards in growing chunks, so a window of the newest decisions reads about
    as many entries as it needs, not the whole log.
    """
    if last is None:
        return [s for s in ledger.scan(0, size) if s.entry.get("type") == "decision"]
    found: list[StoredEntry] = []
    stop, step = size, _SCAN_CHUNK
    while stop > 0 and len(found) < last:
        start = max(0, stop - step)
        chunk = [s for s in ledger.scan(start, stop) if s.entry.get("type") == "decision"]
        found[:0] = chunk
        stop, step = start, step * 2
    return found[-last:]


def _logged_outcome(stored: StoredEntry) -> Outcome:
    """The policy's own logged outcome; TamperError when effect or reasons are malformed."""
    entry = stored.entry
    effect = entry.get("policy_effect", entry.get("effect"))
    reasons = entry.get("reasons")
    if effect not in EFFECTS or not isinstance(reasons, list):
        raise TamperError(
            f"decision entry {stored.index} is malformed: 'effect' or 'reasons' is not what "
            "the gate writes",
            index=stored.index,
        )
    parsed: list[Reason] = []
    for reason in reasons:
        if isinstance(reason, Mapping):
            parsed.append(Reason(str(reason.get("rule")), str(reason.get("message") or "")))
        else:
            parsed.append(Reason(str(reason)))
    return Outcome(cast(Effect, effect), tuple(parsed))


def _helper_argument(tokens: list[Token], index: int, chain: list[int]) -> bool:
    """Whether the reference is exactly the one argument of a provenance helper call."""
    last = chain[-1]
    return (
        index >= 2
        and tokens[index - 1].is_punct("(")
        and tokens[index - 2].kind == "ident"
        and tokens[index - 2].text in PROVENANCE_HELPERS
        and not (index >= 3 and tokens[index - 3].is_punct("."))
        and last + 1 < len(tokens)
        and tokens[last + 1].is_punct(")")
    )


def redacted_read(rule: Rule, paths: Iterable[str]) -> str | None:
    """The first of the dot ``paths`` whose value ``rule`` reads from ``args``, or None.

    A read is any use of ``args`` whose field chain is a prefix of the path (the whole
    value or a map holding it) or extends it (inside it), the map handed to ``get``
    with its key included. Exactly ``has(args.p)`` and ``from_untrusted(args.p)`` /
    ``carries_sensitive(args.p)`` do not count: presence and the helpers' answers are
    logged exactly. Conservative: any other use counts.
    """
    wanted = [tuple(p.split(".")) for p in paths]
    if not wanted:
        return None
    tokens = tokenize(rule.when)
    for index, chain in root_references(tokens, ("args",)):
        path = tuple(tokens[k].text for k in chain)
        key = picked_key(tokens, index, chain)
        if key is not None:
            path = (*path, key)
        for target in wanted:
            shortest = min(len(path), len(target))
            if path[:shortest] != target[:shortest]:
                continue
            exact = key is None and path == target
            if exact and (in_has(tokens, index, chain) or _helper_argument(tokens, index, chain)):
                continue
            return ".".join(target)
    return None


class _Analyzer:
    """Evaluates logged decisions under one candidate engine."""

    def __init__(self, engine: CelPolicyEngine, replayer: DecisionReplayer) -> None:
        self._engine = engine
        self._bundle = engine.bundle
        self._replayer = replayer
        self._rules: dict[tuple[str, str], tuple[Rule, ...]] = {}
        self._reads: dict[tuple[str, tuple[str, ...]], str | None] = {}

    def _applicable(self, action: str, principal: str) -> tuple[Rule, ...]:
        """The candidate rules the engine would consider for (action, principal)."""
        key = (action, principal)
        found = self._rules.get(key)
        if found is None:
            found = tuple(
                rule
                for rule in self._bundle.rules
                if ("*" in rule.actions or action in rule.actions)
                and rule.matches_principal(principal)
            )
            self._rules[key] = found
        return found

    def assess(self, stored: StoredEntry) -> DecisionChange | UnverifiableDecision | None:
        """The change ``stored`` would see, why it cannot be told, or None when unchanged."""
        entry = stored.entry
        request = logged_request(stored)
        logged = _logged_outcome(stored)
        approval_id = entry.get("approval_id")
        ref = DecisionRef(
            index=stored.index,
            request_id=str(entry.get("request_id")),
            trace_id=entry.get("trace_id") if isinstance(entry.get("trace_id"), str) else None,
            at=str(entry.get("at")),
            principal=request.principal,
            action=request.action,
            approval_id=approval_id if isinstance(approval_id, str) else None,
        )
        logged_tool: ToolSpec | None = None
        if entry.get("redacted"):
            digest = str(entry.get("policy_digest"))
            try:
                logged_engine = self._replayer.logged_engine(digest)
            except Error as exc:
                return UnverifiableDecision(
                    ref,
                    logged,
                    f"its sensitive arguments are redacted and the logged bundle {digest} does "
                    f"not load ({exc}), so where they are is unknown",
                )
            if logged_engine is None:
                return UnverifiableDecision(
                    ref,
                    logged,
                    f"its sensitive arguments are redacted and the log holds no policy entry "
                    f"for bundle {digest}, so where they are is unknown",
                )
            logged_tool = logged_engine.tool(request.action)
        request = self._replayer.logged_input(stored, request, logged_tool)
        if entry.get("redacted") and not request.redacted:
            return UnverifiableDecision(
                ref,
                logged,
                "the entry says its arguments are redacted, but no sensitive path of the "
                "logged bundle holds a redacted value",
            )
        blind = self._blind_spot(request, logged_tool, logged)
        if blind is not None:
            return UnverifiableDecision(ref, logged, blind)
        try:
            decision = decide(self._engine, request)
        except PolicyError as exc:
            return UnverifiableDecision(ref, logged, f"the candidate cannot evaluate it: {exc}")
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise TamperError(
                f"decision entry {stored.index} cannot be evaluated: its logged facts do not "
                f"have the shapes the gate writes ({exc!r})",
                index=stored.index,
            ) from None
        candidate = Outcome(decision.effect, decision.reasons)
        if DecisionChange.kind_of(logged, candidate) is None:
            return None
        return DecisionChange(ref, logged, candidate)

    def _blind_spot(
        self, request: EvaluationInput, logged_tool: ToolSpec | None, logged: Outcome
    ) -> str | None:
        """Why the candidate's answer on this logged input may not be the real one, or None."""
        action = request.action
        if self._bundle.strict and action not in self._bundle.tools:
            return None  # denied as unknown-action before any argument or rule is read
        rules = self._applicable(action, request.principal)
        unavailable = request.provenance.unavailable
        if unavailable is not None:
            for rule in rules:
                if rule.condition.helpers & PROVENANCE_HELPERS:
                    return (
                        f"{unavailable}, and candidate rule {rule.id} asks about provenance; "
                        "analyze with the home's key"
                    )
        if not request.redacted:
            return None
        if "args-schema" in logged.rules:
            return (
                "it was denied by the tool's args_schema and its sensitive arguments are "
                "redacted, so whether they were the violation is unknown"
            )
        tool = self._engine.tool(action)
        logged_schema = logged_tool.args_schema if logged_tool is not None else None
        if tool is not None and tool.args_schema is not None and tool.args_schema != logged_schema:
            paths = ", ".join(f"args.{p}" for p in request.redacted)
            return (
                f"the candidate's args_schema for {action} differs from the logged one and "
                f"cannot be checked inside {paths}, which the log holds only as salted digests"
            )
        for rule in rules:
            key = (rule.id, request.redacted)  # rule ids are unique in a bundle
            if key not in self._reads:
                self._reads[key] = redacted_read(rule, request.redacted)
            read = self._reads[key]
            if read is not None:
                return (
                    f"candidate rule {rule.id} reads args.{read}, which the log holds only as "
                    "a salted digest"
                )
        return None
