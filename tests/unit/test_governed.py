"""The governed decorator needs only a GovernedGate: a principal and clearance()."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import timedelta
from typing import Any, cast

import pytest

from clearance._internal.gate.cleared import Cleared
from clearance._internal.gate.governed import GovernedGate, governed
from clearance._internal.intent import Intent
from clearance.errors import InputError


class RecordingGate:
    """A stand-in gate that clears everything and remembers what it was asked."""

    def __init__(self, principal: str | None) -> None:
        self.principal = principal
        self.intents: list[Intent] = []
        self.results: list[Any] = []

    def clearance(
        self, intent: Intent, *, wait: float | timedelta | None = None
    ) -> AbstractContextManager[Cleared]:
        @contextmanager
        def cleared() -> Iterator[Cleared]:
            self.intents.append(intent)
            handed_out = Cleared(authorization=cast(Any, None), claims=cast(Any, None))
            yield handed_out
            self.results.append(handed_out.result)

        return cleared()


def test_a_decorated_call_is_one_intent_through_the_protocol() -> None:
    gate = RecordingGate("agent:ops-bot")
    protocol_view: GovernedGate = gate

    @governed(protocol_view, resource="order/{order_id}", purpose="refund")
    def refund(order_id: str, amount: float = 10.0) -> str:
        return f"refunded {amount} on {order_id}"

    assert refund("o-1") == "refunded 10.0 on o-1"
    (intent,) = gate.intents
    assert (intent.principal, intent.action, intent.resource, intent.purpose) == (
        "agent:ops-bot",
        "refund",
        "order/o-1",
        "refund",
    )
    assert intent.args == {"order_id": "o-1", "amount": 10.0}
    assert gate.results == ["refunded 10.0 on o-1"]


def test_a_gate_bound_to_no_principal_needs_one_named() -> None:
    @governed(RecordingGate(None))
    def read() -> None:
        return None

    with pytest.raises(InputError, match="needs a principal"):
        read()


def test_the_decorator_does_not_load_the_gate() -> None:
    script = (
        "import json, sys\n"
        "import clearance._internal.gate.governed\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    loaded = set(json.loads(result.stdout))
    assert "clearance._internal.gate.core" not in loaded
    assert "clearance._internal.gate.authorizer" not in loaded
