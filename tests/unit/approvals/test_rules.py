"""Approval keys on policy rules: validation, canonical form, and the strictest-wins terms."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from clearance._internal.approvals.requirement import ANYONE, combine, requirement_for
from clearance._internal.policy.approval_rules import (
    RuleApproval,
    intersect_patterns,
    is_principal_pattern,
    matches_any,
)
from clearance._internal.policy.bundle import bundle_from_document, load_bundle
from clearance._internal.policy.cel_engine import CelPolicyEngine
from clearance._internal.policy.engine import Decision, Reason
from clearance.errors import PolicyError

SRC = Path(__file__).parents[3] / "src/clearance/examples"

# Digests of the shipped bundles before rules could carry approval terms: a bundle that
# does not use the new keys must keep its digest (logged decisions name it).
PINNED = {
    "policies": "sha256:2e5ed3d81134eb3aefbaf31c401578ee889dd76623d6234ba38097369bceb9dc",
    "provenance": "sha256:5a9d3bc3b61a3c7d99fb0e221477f70ebec14dd0f0cd2b1a421e4678e8e565dc",
}


def bundle_text(rule_extra: str, effect: str = "approval_required") -> str:
    return textwrap.dedent(
        f"""\
        version: 1
        rules:
          - id: big-payments
            effect: {effect}
            actions: [pay]
        """
    ) + textwrap.indent(textwrap.dedent(rule_extra), "    ")


def load_text(tmp_path: Path, text: str) -> CelPolicyEngine:
    (tmp_path / "policy.yaml").write_text(text, encoding="utf-8")
    return CelPolicyEngine.from_directory(tmp_path)


# --- patterns -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "ok"),
    [("user:alice", True), ("user:*", True), ("*", True), ("user *", False), ("a*b", False)],
)
def test_principal_patterns(pattern: str, ok: bool) -> None:
    assert is_principal_pattern(pattern) is ok


def test_matching_is_rule_principals_matching() -> None:
    assert matches_any(["user:*"], "user:alice")
    assert matches_any(["*"], "agent:x")
    assert not matches_any(["user:alice"], "user:alice2")
    assert not matches_any([], "user:alice")


@pytest.mark.parametrize(
    ("one", "two", "both"),
    [
        (["user:*"], ["user:alice", "admin:*"], ("user:alice",)),
        (["user:*"], ["user:finance-*"], ("user:finance-*",)),
        (["*"], ["user:*", "ops:bob"], ("ops:bob", "user:*")),
        (["user:*"], ["admin:*"], ()),
        (["user:alice"], ["user:bob"], ()),
        (["user:*", "user:alice"], ["user:alice", "user:a*"], ("user:a*",)),
    ],
)
def test_intersection_matches_exactly_what_both_match(
    one: list[str], two: list[str], both: tuple[str, ...]
) -> None:
    assert intersect_patterns(one, two) == both
    assert intersect_patterns(two, one) == both
    for principal in ("user:alice", "user:bob", "user:finance-x", "admin:root", "ops:bob", "x"):
        expected = matches_any(one, principal) and matches_any(two, principal)
        assert matches_any(both, principal) is expected, principal


# --- the strictest terms win ----------------------------------------------------------


def test_combine_takes_the_largest_quorum_the_common_approvers_and_the_shortest_ttl() -> None:
    terms = combine(
        [
            RuleApproval("a", approvals=2, approvers=("user:*",), ttl=3600),
            RuleApproval("b", approvals=3, approvers=("user:alice", "user:bob", "ops:x")),
            RuleApproval("c"),  # no approvers: no constraint; no ttl: the setting's
        ],
        default_ttl=900,
    )
    assert (terms.required, terms.approvers, terms.ttl) == (3, ("user:alice", "user:bob"), 900)
    assert terms.rules == ("a", "b", "c")


def test_combine_defaults_and_disjoint_approvers(caplog: pytest.LogCaptureFixture) -> None:
    assert combine([RuleApproval("a")], 900).approvers == ANYONE
    assert combine([RuleApproval("a", ttl=60)], 900).ttl == 60
    nobody = combine(
        [RuleApproval("a", approvers=("user:*",)), RuleApproval("b", approvers=("ops:*",))], 900
    )
    assert nobody.approvers == ()
    assert "nobody may approve" in caplog.text


def test_requirement_for_reads_the_engines_rules(tmp_path: Path) -> None:
    engine = load_text(
        tmp_path,
        bundle_text("approvals: 2\napprovers: ['user:*']\napproval_ttl: 300\n")
        + "  - id: also\n    effect: approval_required\n    actions: [pay]\n",
    )
    decision = Decision(
        "approval_required", (Reason("big-payments"), Reason("also")), engine.digest
    )
    terms = requirement_for(engine, decision, 900)
    assert (terms.required, terms.approvers, terms.ttl) == (2, ("user:*",), 300)

    class Plain:  # an engine that is not the CEL engine: its canonical document is read
        digest = "sha256:plain"

        def document(self) -> dict[str, object]:
            return engine.document()

    assert requirement_for(Plain(), decision, 900) == terms  # type: ignore[arg-type]


# --- the bundle -----------------------------------------------------------------------


def test_the_keys_load_and_only_what_is_set_enters_the_canonical_document(
    tmp_path: Path,
) -> None:
    engine = load_text(
        tmp_path, bundle_text("approvals: 2\napprovers: ['user:*', 'ops:bob']\napproval_ttl: 600\n")
    )
    (rule,) = engine.bundle.rules
    assert rule.approval == RuleApproval(
        "big-payments", approvals=2, approvers=("user:*", "ops:bob"), ttl=600
    )
    (logged,) = engine.document()["rules"]
    assert logged["approvals"] == 2
    assert logged["approvers"] == ["user:*", "ops:bob"]
    assert logged["approval_ttl"] == 600
    rebuilt = bundle_from_document(engine.document())
    assert rebuilt.digest == engine.digest
    assert rebuilt.rules[0].approval == rule.approval


def test_a_default_quorum_leaves_the_digest_alone(tmp_path: Path) -> None:
    plain = load_text(tmp_path, bundle_text(""))
    explicit = load_text(tmp_path, bundle_text("approvals: 1\n"))
    assert "approvals" not in explicit.document()["rules"][0]
    assert explicit.digest == plain.digest
    assert plain.bundle.rules[0].approval == RuleApproval("big-payments")


@pytest.mark.parametrize("name", sorted(PINNED))
def test_shipped_bundles_keep_their_digests(name: str) -> None:
    assert load_bundle(SRC / name).digest == PINNED[name]


@pytest.mark.parametrize("key", ["approvals: 2", "approvers: ['user:*']", "approval_ttl: 60"])
@pytest.mark.parametrize("effect", ["allow", "deny"])
def test_the_keys_are_refused_on_other_effects(tmp_path: Path, key: str, effect: str) -> None:
    with pytest.raises(PolicyError) as refused:
        load_text(tmp_path, bundle_text(key + "\n", effect=effect))
    message = str(refused.value)
    assert "policy.yaml:" in message
    assert "rules[0] (big-payments)" in message
    assert f"only an approval_required rule may set '{key.split(':')[0]}'" in message
    assert f"effect is {effect}" in message


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ("approvals: 0", "from 1 to 100"),
        ("approvals: 101", "from 1 to 100"),
        ("approvals: 1.5", "from 1 to 100"),
        ("approvals: true", "from 1 to 100"),
        ("approvers: []", "non-empty list"),
        ("approvers: user:*", "non-empty list"),
        ("approvers: ['user alice']", "neither a principal id nor a prefix"),
        ("approval_ttl: 0", "above 0, at most 2592000"),
        ("approval_ttl: 2592001", "above 0, at most 2592000"),
        ("approval_ttl: soon", "above 0, at most 2592000"),
        ("approvels: 2", "unknown key 'approvels'"),
    ],
)
def test_bad_values_are_refused_naming_the_key(tmp_path: Path, extra: str, problem: str) -> None:
    with pytest.raises(PolicyError) as refused:
        load_text(tmp_path, bundle_text(extra + "\n"))
    assert problem in str(refused.value)
    assert "policy.yaml:" in str(refused.value)
