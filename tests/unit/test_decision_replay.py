"""Decision replay (clearance._internal.decision_replay) over a ledger held in memory.

The end-to-end replay of a real log is tested with the demo; these tests reach the
statuses and the malformed-entry refusals one by one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import pytest

from clearance._internal.canonical import canonical_json
from clearance._internal.decision_replay import DecisionReplayer
from clearance._internal.entries import policy_entry
from clearance._internal.gate.facts import for_request, initial_state
from clearance._internal.ledger.store import LedgerStore, StoredEntry, index_ref
from clearance._internal.policy.cel_engine import DENY_ALL_DIGEST, CelPolicyEngine
from clearance.errors import InputError, TamperError
from tests.unit.policy.support import write

BUNDLE = """
version: 1
rules:
  - id: small-refunds
    effect: allow
    actions: [refund]
    when: args.amount <= 100
  - id: big-refunds
    effect: approval_required
    actions: [refund]
    when: args.amount > 100
"""
NOW = 1_795_860_000.0


class MemoryLedger:
    """The two reads DecisionReplayer makes, over a list of entries."""

    def __init__(self, entries: list[Mapping[str, Any]]) -> None:
        self.stored = [
            StoredEntry(index, canonical_json(entry), entry) for index, entry in enumerate(entries)
        ]

    def scan(self, start: int = 0, stop: int | None = None) -> Iterator[StoredEntry]:
        yield from self.stored[start:stop]

    def find(self, kind: str, ref: str) -> list[StoredEntry]:
        return [s for s in self.stored if s.entry["type"] == kind and index_ref(s.entry) == ref]


@pytest.fixture
def engine(tmp_path: Path) -> CelPolicyEngine:
    write(tmp_path, BUNDLE)
    return CelPolicyEngine.from_directory(tmp_path)


def decision(
    digest: str,
    *,
    request_id: str = "r-1",
    amount: Any = 5,
    effect: str = "allow",
    rules: list[str] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "type": "decision",
        "v": 1,
        "at": "2026-11-28T10:00:00.000000Z",
        "now": "2026-11-28T10:00:00.000000Z",
        "request_id": request_id,
        "intent": {
            "principal": "agent:a",
            "action": "refund",
            "resource": None,
            "args": {"amount": amount},
            "purpose": None,
            "trace_id": "t-1",
            "parent_id": None,
            "input": None,
        },
        "facts": for_request(initial_state("t-1", {}), 0),
        "effect": effect,
        "reasons": [{"rule": rule} for rule in (rules or ["small-refunds"])],
        "policy_digest": digest,
        "redacted": False,
    }
    entry.update(overrides)
    return entry


def replayer(*entries: Mapping[str, Any]) -> DecisionReplayer:
    return DecisionReplayer(cast(LedgerStore, MemoryLedger(list(entries))))


def with_policy(engine: CelPolicyEngine, *entries: Mapping[str, Any]) -> DecisionReplayer:
    return replayer(policy_entry(NOW, engine.digest, engine.document()), *entries)


def test_a_faithful_entry_matches(engine: CelPolicyEngine) -> None:
    result = with_policy(engine, decision(engine.digest)).replay_request("r-1")
    assert result.status == "match"
    assert result.index == 1
    assert result.replayed == {"effect": "allow", "rules": ["small-refunds"]}
    assert result.to_json()["status"] == "match"


def test_a_changed_effect_is_a_mismatch(engine: CelPolicyEngine) -> None:
    logged = decision(engine.digest, amount=500, effect="allow", rules=["small-refunds"])
    result = with_policy(engine, logged).replay_request("r-1")
    assert result.status == "mismatch"
    assert "replayed approval_required ['big-refunds']" in result.detail


def test_a_difference_under_redaction_is_unverifiable(engine: CelPolicyEngine) -> None:
    redacted = {"redacted": "sha256:" + "0" * 64, "salt": "AAAAAAAAAAAAAAAAAAAAAA=="}
    logged = decision(engine.digest, amount=redacted, redacted=True)
    # The redacted value is not a number, so the rule errors and the replay denies.
    result = with_policy(engine, logged).replay_request("r-1")
    assert result.status == "unverifiable"
    assert "redacted" in result.detail


def test_an_override_is_replayed_as_the_policy_effect(engine: CelPolicyEngine) -> None:
    logged = decision(
        engine.digest,
        effect="deny",
        policy_effect="allow",
        override={"effect": "deny", "reason": "signing-key-unavailable"},
    )
    assert with_policy(engine, logged).replay_request("r-1").status == "match"


def test_a_missing_policy_entry_is_unverifiable(engine: CelPolicyEngine) -> None:
    result = replayer(decision(engine.digest)).replay_request("r-1")
    assert result.status == "unverifiable"
    assert result.replayed is None
    assert "no policy entry" in result.detail


def test_the_deny_all_engine_needs_no_policy_entry() -> None:
    logged = decision(DENY_ALL_DIGEST, effect="deny", rules=["default-deny"])
    assert replayer(logged).replay_request("r-1").status == "match"


def test_a_policy_entry_that_does_not_load_is_unverifiable(engine: CelPolicyEngine) -> None:
    broken = policy_entry(NOW, engine.digest, {"version": 99, "rules": "not a list"})
    result = replayer(broken, decision(engine.digest)).replay_request("r-1")
    assert result.status == "unverifiable"
    assert "does not load" in result.detail


def test_a_policy_entry_without_a_bundle_is_not_a_match(engine: CelPolicyEngine) -> None:
    # The replayer's TamperError for the policy entry is reported through the
    # "bundle does not load" path, naming the problem; it is never a match.
    broken = {**policy_entry(NOW, engine.digest, {}), "bundle": "gone"}
    result = replayer(broken, decision(engine.digest)).replay_request("r-1")
    assert result.status == "unverifiable"
    assert "policy entry 0 holds no bundle object" in result.detail


def test_engines_are_cached_by_digest(engine: CelPolicyEngine) -> None:
    replay = with_policy(
        engine, decision(engine.digest, request_id="r-1"), decision(engine.digest, request_id="r-2")
    )
    results = list(replay.replay_all())
    assert [r.status for r in results] == ["match", "match"]
    assert [r.request_id for r in results] == ["r-1", "r-2"]


def test_an_unknown_request_id_is_an_input_error(engine: CelPolicyEngine) -> None:
    with pytest.raises(InputError, match="no decision"):
        with_policy(engine).replay_request("r-404")


def _intent(**changes: Any) -> dict[str, Any]:
    return cast(dict[str, Any], decision("d")["intent"]) | changes


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"intent": "refund"}, "'intent' is not an object"),
        ({"facts": None}, "'facts' is not an object"),
        ({"intent": _intent(principal=7)}, "'intent.principal'"),
        ({"intent": _intent(action=None)}, "'intent.action'"),
        ({"intent": _intent(resource=["x"])}, "'intent.resource'"),
        ({"intent": _intent(purpose=1)}, "'intent.purpose'"),
        ({"intent": _intent(args=[1])}, "'intent.args'"),
        ({"intent": _intent(input="x")}, "'intent.input'"),
        ({"now": "yesterday"}, "'now'"),
        ({"now": None}, "'now'"),
    ],
)
def test_a_malformed_decision_entry_is_tampering(
    engine: CelPolicyEngine, overrides: dict[str, Any], needle: str
) -> None:
    logged = decision(engine.digest, **overrides)
    with pytest.raises(TamperError, match="decision entry 1 is malformed") as caught:
        with_policy(engine, logged).replay_request("r-1")
    assert needle in str(caught.value)
    assert caught.value.index == 1


def test_facts_of_the_wrong_shape_are_tampering(engine: CelPolicyEngine) -> None:
    # The gate always writes the mandate as an object; a string here was not written by it.
    facts = {**for_request(initial_state("t-1", {}), 0), "mandate": "pay acme"}
    logged = decision(engine.digest, facts=facts)
    with pytest.raises(TamperError, match="cannot be replayed") as caught:
        with_policy(engine, logged).replay_request("r-1")
    assert caught.value.index == 1
