"""The decision benchmark: how long one policy decision takes on a realistic bundle.

:func:`decision_benchmark` builds, in memory, a bundle of ``tools`` tools with
``rules / tools`` rules each (argument schemas, conditions over ``args``,
``trace``, ``data``, ``principal.attrs`` and ``now``, and helper calls such as
``mentions`` and ``domain``), then times :meth:`CelPolicyEngine.evaluate` over a
rotating set of requests spread over all tools, with fresh argument and trace
objects per request. Timing uses ``time.perf_counter_ns`` around each call
(measurement code only: the engine itself never reads a clock). The result is
the median over ``repeats`` runs of each run's p50 and p99, in microseconds.
"""

from __future__ import annotations

import random
import statistics
import time
from datetime import UTC, datetime
from typing import Any, Final

from clearance._internal.policy.cel_engine import CelPolicyEngine
from clearance._internal.policy.engine import EvaluationInput

__all__ = ["benchmark_document", "decision_benchmark"]

_NOW: Final = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
_CONDITIONS: Final[tuple[tuple[str, str], ...]] = (
    ("allow", 'args.amount <= 200.0 && args.currency == "USD"'),
    (
        "deny",
        "trace.untrusted && !(args.to in data.payees || mentions(trace.mandate.text, args.to))",
    ),
    ("approval_required", "args.amount > 1000.0"),
    ("deny", "trace.depth > 8 || trace.count > 500"),
    ("allow", 'principal.attrs.team == "finance" && args.amount <= 500.0'),
    ("deny", "has(args.url) && !(domain(args.url) in data.allowed_domains)"),
    ("allow", "args.to in data.payees && size(args.memo) < 500"),
    ("deny", 'now > timestamp("2030-01-01T00:00:00Z")'),
    ("approval_required", 'lower(args.currency) != "usd" && args.amount > 300.0'),
    ("deny", 'args.memo.contains("ignore previous instructions")'),
)


def _schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["to", "amount", "currency"],
        "additionalProperties": False,
        "properties": {
            "to": {"type": "string", "maxLength": 128},
            "amount": {"type": "number", "minimum": 0},
            "currency": {"type": "string", "enum": ["USD", "EUR", "GBP"]},
            "memo": {"type": "string", "maxLength": 4096},
            "url": {"type": "string"},
        },
    }


def benchmark_document(rules: int = 300, tools: int = 30) -> dict[str, Any]:
    """The canonical-form document of the benchmark bundle."""
    if tools < 1 or rules < 0:
        raise ValueError("need at least one tool and a non-negative rule count")
    names = [f"tool_{i:03d}" for i in range(tools)]
    rule_list = []
    for i in range(rules):
        effect, when = _CONDITIONS[i // tools % len(_CONDITIONS)]
        principals = ["agent:*"] if i % 3 else [f"agent:bot-{i % 7}", "agent:billing"]
        rule_list.append(
            {
                "id": f"rule-{i:04d}",
                "effect": effect,
                "principals": principals,
                "actions": [names[i % tools]],
                "when": when,
                "message": f"benchmark rule {i}",
            }
        )
    return {
        "version": 1,
        "strict": True,
        "principals": {f"agent:bot-{i}": {"team": "finance" if i % 2 else "ops"} for i in range(7)},
        "tools": {
            name: {"args_schema": _schema(), "untrusted_output": False, "sensitive": []}
            for name in names
        },
        "data": {
            "payees": [f"payee-{i:03d}" for i in range(50)],
            "allowed_domains": [f"partner{i}.example.com" for i in range(50)],
        },
        "rules": rule_list,
    }


def _requests(tools: int, count: int, seed: int) -> list[EvaluationInput]:
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
    requests = []
    for n in range(count):
        args: dict[str, Any] = {
            "to": f"payee-{rng.randrange(80):03d}",
            "amount": round(rng.uniform(1, 1500), 2),
            "currency": rng.choice(["USD", "EUR", "GBP"]),
            "memo": "invoice " + str(rng.randrange(10**6)) + " for services rendered in March",
        }
        if rng.random() < 0.3:
            args["url"] = f"https://partner{rng.randrange(70)}.example.com/invoice/{n}"
        trace = {
            "id": f"t{n:06d}",
            "depth": rng.randrange(4),
            "count": rng.randrange(40),
            "actions": [f"tool_{rng.randrange(tools):03d}" for _ in range(rng.randrange(12))],
            "untrusted": rng.random() < 0.5,
            "totals": {"tool_000": {"amount": round(rng.uniform(0, 900), 2)}},
            "mandate": {
                "text": "Pay the March invoices from payee-012 and payee-033, "
                "nothing above 400 USD. Ask me before anything unusual.",
                "bounds": {"expires_at": "2026-02-01T00:00:00Z"},
            },
        }
        requests.append(
            EvaluationInput(
                principal=f"agent:bot-{rng.randrange(7)}",
                action=f"tool_{rng.randrange(tools):03d}",
                resource=None,
                args=args,
                purpose=None,
                input=None,
                trace=trace,
                now=_NOW,
            )
        )
    return requests


def _percentile(sorted_values: list[int], fraction: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index] / 1000.0


def decision_benchmark(
    iterations: int, rules: int = 300, tools: int = 30, *, repeats: int = 5
) -> dict[str, Any]:
    """Time ``iterations`` decisions ``repeats`` times; return median p50/p99 in µs."""
    if iterations < 1 or repeats < 1:
        raise ValueError("iterations and repeats must be at least 1")
    engine = CelPolicyEngine.from_document(benchmark_document(rules, tools))
    pool = _requests(tools, min(iterations, 512), seed=1)
    for request in pool:  # warm-up: contexts, caches, compiled schemas
        engine.evaluate(request)
    p50s: list[float] = []
    p99s: list[float] = []
    effects: dict[str, int] = {}
    for _ in range(repeats):
        samples: list[int] = []
        for i in range(iterations):
            request = pool[i % len(pool)]
            started = time.perf_counter_ns()
            decision = engine.evaluate(request)
            samples.append(time.perf_counter_ns() - started)
            effects[decision.effect] = effects.get(decision.effect, 0) + 1
        samples.sort()
        p50s.append(_percentile(samples, 0.50))
        p99s.append(_percentile(samples, 0.99))
    return {
        "iterations": iterations,
        "repeats": repeats,
        "rules": rules,
        "tools": tools,
        "p50_us": round(statistics.median(p50s), 2),
        "p99_us": round(statistics.median(p99s), 2),
        "effects": dict(sorted(effects.items())),
        "policy_digest": engine.digest,
    }
