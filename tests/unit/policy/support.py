"""Shared helpers for policy tests: write bundles to disk, build evaluation inputs."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clearance._internal.policy.cel_engine import CelPolicyEngine
from clearance._internal.policy.engine import EvaluationInput

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def write(directory: Path, text: str, name: str = "policy.yaml") -> Path:
    """Write a dedented YAML file into ``directory`` and return its path."""
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def engine_from(directory: Path, text: str) -> CelPolicyEngine:
    """An engine over one policy file written into ``directory``."""
    write(directory, text)
    return CelPolicyEngine.from_directory(directory)


def trace(**facts: Any) -> dict[str, Any]:
    """Trace facts of a fresh trace with ``facts`` overriding the defaults."""
    base: dict[str, Any] = {
        "id": "t1",
        "depth": 0,
        "count": 0,
        "actions": [],
        "untrusted": False,
        "totals": {},
        "mandate": {"text": "", "bounds": {}},
    }
    base.update(facts)
    return base


def request(
    action: str = "refund_payment",
    args: Mapping[str, Any] | None = None,
    *,
    principal: str = "agent:billing-bot",
    resource: str | None = None,
    purpose: str | None = None,
    input: Mapping[str, Any] | None = None,
    facts: Mapping[str, Any] | None = None,
    now: datetime = NOW,
    approval: Mapping[str, Any] | None = None,
) -> EvaluationInput:
    """An EvaluationInput with sensible defaults."""
    return EvaluationInput(
        principal=principal,
        action=action,
        resource=resource,
        args={} if args is None else args,
        purpose=purpose,
        input=input,
        trace=trace() if facts is None else dict(facts),
        now=now,
        approval=approval,
    )
