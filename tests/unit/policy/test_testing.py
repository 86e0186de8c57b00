"""Table-driven policy tests: running cases, readable diffs, strict cases files."""

from __future__ import annotations

from pathlib import Path

import pytest

from clearance._internal.policy.cel_engine import CelPolicyEngine
from clearance._internal.policy.testing import load_cases, run_cases, summarize
from clearance.errors import InputError

from .support import write

POLICY = """\
version: 1
data:
  payees: [acme-supplies]
rules:
  - id: refund-small
    effect: allow
    actions: [refund_payment]
    when: args.amount <= 200.0
  - id: refund-large
    effect: approval_required
    actions: [refund_payment]
    when: args.amount > 200.0
  - id: ungrounded
    effect: deny
    actions: [refund_payment]
    when: trace.untrusted && !(args.to in data.payees || mentions(trace.mandate.text, args.to))
  - id: expired
    effect: deny
    actions: [refund_payment]
    when: has(trace.mandate.bounds.expires_at) && now >= timestamp(trace.mandate.bounds.expires_at)
"""

CASES = """\
cases:
  - name: small refund
    intent:
      principal: agent:billing-bot
      action: refund_payment
      args: {amount: 50.0, to: acme-supplies}
    expect: allow
    rules: [refund-small]
  - name: large refund needs approval
    intent: {principal: agent:billing-bot, action: refund_payment, args: {amount: 500.0, to: x}}
    expect: approval_required
  - name: injected payee is refused
    intent: {principal: agent:billing-bot, action: refund_payment, args: {amount: 5.0, to: mallory}}
    trace:
      untrusted: true
      mandate: {text: "Refund order 1234 to alice@example.com"}
    expect: deny
    rules: [ungrounded]
  - name: mandated payee is fine
    intent:
      principal: agent:billing-bot
      action: refund_payment
      args: {amount: 5.0, to: alice@example.com}
    trace:
      untrusted: true
      mandate: {text: "Refund order 1234 to alice@example.com"}
    expect: allow
  - name: expired mandate
    intent:
      principal: agent:billing-bot
      action: refund_payment
      args: {amount: 5.0, to: acme-supplies}
    trace:
      mandate: {bounds: {expires_at: "2026-06-01T00:00:00Z"}}
    now: "2026-06-01T00:00:00+00:00"
    expect: deny
"""


@pytest.fixture
def engine(tmp_path: Path) -> CelPolicyEngine:
    policy_dir = tmp_path / "policy"
    policy_dir.mkdir()
    write(policy_dir, POLICY)
    return CelPolicyEngine.from_directory(policy_dir)


def test_all_cases_pass(engine: CelPolicyEngine, tmp_path: Path) -> None:
    results = run_cases(engine, write(tmp_path, CASES, "cases.yaml"))
    assert [r.passed for r in results] == [True] * 5
    assert summarize(results) == "5 passed, 0 failed"
    assert all(r.diff() == "" for r in results)


def test_failure_shows_a_readable_diff(engine: CelPolicyEngine, tmp_path: Path) -> None:
    wrong = CASES.replace(
        "expect: allow\n    rules: [refund-small]", "expect: deny\n    rules: [refund-small, other]"
    )
    results = run_cases(engine, write(tmp_path, wrong, "cases.yaml"))
    failed = [r for r in results if not r.passed]
    assert len(failed) == 1
    diff = failed[0].diff()
    assert diff.startswith("FAIL small refund (")
    assert "cases.yaml:2)" in diff
    assert "effect:   expected deny, got allow" in diff
    assert "missing rules:    other" in diff
    assert "- refund-small: matched rule refund-small" in diff
    assert summarize(results).endswith("4 passed, 1 failed")


def test_unexpected_rules_are_reported(engine: CelPolicyEngine, tmp_path: Path) -> None:
    cases = CASES.replace("    rules: [ungrounded]", "    rules: []")
    results = run_cases(engine, write(tmp_path, cases, "cases.yaml"))
    failed = [r for r in results if not r.passed]
    assert [r.unexpected_rules for r in failed] == [("ungrounded",)]
    assert "unexpected rules: ungrounded" in failed[0].diff()


CASE = "cases:\n  - name: x\n    intent: {principal: a, action: b}\n    expect: allow\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cases: []\n", "cases: must be a non-empty list"),
        ("tests: []\n", "a cases file is a mapping with one key, cases"),
        (
            CASE + "    extra: 1\n",
            "cases.yaml:5: cases[0]: unknown key 'extra' (allowed: name, intent, trace",
        ),
        (
            "cases:\n  - name: x\n    intent: {principal: a, action: b}\n    expect: permit\n",
            "cases[0] (x): expect must be one of allow, deny, approval_required, found 'permit'",
        ),
        (
            CASE.replace("action: b", "action: b, tool: c"),
            "cases[0] (x).intent: unknown intent field(s): 'tool'",
        ),
        (
            "cases:\n  - name: x\n    intent: {principal: a, action: b}\n    trace: {depthh: 1}\n"
            "    expect: allow\n",
            "cases[0] (x).trace: unknown fact 'depthh'",
        ),
        (
            CASE + "    now: 2026-01-01T00:00:00\n",
            "needs a UTC offset",
        ),
        (
            "cases:\n  - name: x\n    intent: {principal: a, action: b}\n    now: yesterday\n"
            "    expect: allow\n",
            "now 'yesterday' is not an RFC 3339 time",
        ),
        (
            "cases:\n  - name: x\n    intent: {principal: a, action: b}\n    expect: allow\n"
            "  - name: x\n    intent: {principal: a, action: b}\n    expect: allow\n",
            "duplicate case name 'x'",
        ),
        ("cases: [\n", "cases.yaml:2:1"),
        (
            CASE + "    provenance: [x]\n",
            "cases[0] (x): provenance must be a mapping with untrusted and/or sensitive",
        ),
        (
            CASE + "    provenance: {secret: [x]}\n",
            "provenance must be a mapping with untrusted and/or sensitive",
        ),
        (
            CASE + "    provenance: {untrusted: x}\n",
            "cases[0] (x).provenance: untrusted must be a list of tool results",
        ),
    ],
)
def test_cases_file_is_validated_strictly(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        load_cases(write(tmp_path, text, "cases.yaml"))
    assert message in str(caught.value)


def test_defaults(tmp_path: Path) -> None:
    text = "cases:\n  - name: x\n    intent: {principal: a, action: b}\n    expect: allow\n"
    (case,) = load_cases(write(tmp_path, text, "cases.yaml"))
    assert case.request.now.isoformat() == "2026-01-01T00:00:00+00:00"
    assert dict(case.request.trace) == {
        "id": "test-trace",
        "depth": 0,
        "count": 0,
        "actions": [],
        "untrusted": False,
        "totals": {},
        "mandate": {"text": "", "bounds": {}},
        "provenance_index": None,
    }
    assert case.request.provenance.empty
    assert case.rules is None
