"""The decision benchmark runs and reports sane numbers."""

from __future__ import annotations

import pytest

from clearance._bench.policy import benchmark_document, decision_benchmark
from clearance._internal.policy.bundle import bundle_from_document


def test_benchmark_bundle_is_valid_and_realistic() -> None:
    bundle = bundle_from_document(benchmark_document(300, 30))
    assert len(bundle.rules) == 300
    assert len(bundle.tools) == 30
    per_tool = [sum(1 for rule in bundle.rules if tool in rule.actions) for tool in bundle.tools]
    assert per_tool == [10] * 30
    roots = {root for rule in bundle.rules for root in rule.condition.fields}
    assert {"args", "trace", "principal", "now"} <= roots
    assert any(rule.condition.data_need for rule in bundle.rules)


def test_decision_benchmark_reports_percentiles() -> None:
    result = decision_benchmark(60, rules=20, tools=2, repeats=2)
    assert result["iterations"] == 60
    assert 0 < result["p50_us"] <= result["p99_us"]
    assert sum(result["effects"].values()) == 120
    assert set(result["effects"]) <= {"allow", "deny", "approval_required"}


def test_decision_benchmark_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        decision_benchmark(0)
