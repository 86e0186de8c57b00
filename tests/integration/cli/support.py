"""Helpers for CLI tests: error-shape checks and in-process governed calls."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from clearance._internal.home import Home
from clearance._internal.intent import Intent
from clearance._internal.wiring import open_gate
from clearance.errors import Denied

PRINCIPAL = "agent:ops-bot"

Run = Callable[..., subprocess.CompletedProcess[str]]
"""The ``cli`` fixture: ``cli(*args, cwd=None, env=None, stdin=None)``."""


def assert_clean_error(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """The command failed with ``code``, an ``error:`` line and no traceback; returns stderr."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.startswith("error: "), result.stderr
    return result.stderr


def governed_calls(home: Home, intents: Sequence[Mapping[str, Any]]) -> list[str]:
    """Make governed calls in process, in one trace with a spend cap; return each call's
    request id (denied ones too)."""
    ids: list[str] = []
    with (
        open_gate(home.path, principal=PRINCIPAL, durability="relaxed") as gate,
        gate.trace("CLI test calls", bounds={"spend_cap": 10_000}),
    ):
        for raw in intents:
            try:
                with gate.clearance(Intent.from_json(raw)) as cleared:
                    cleared.record_result({"ok": True})
                ids.append(cleared.request_id)
            except Denied as exc:
                ids.append(str(exc.decision["request_id"]))
    return ids


def read_file_intent(path: str = "notes/a.txt") -> dict[str, Any]:
    """An intent the example bundle allows (or denies, with a '..' path)."""
    return {"principal": PRINCIPAL, "action": "read_file", "args": {"path": path}}


def write_json(path: Path, value: Any) -> Path:
    """Write ``value`` as JSON to ``path``."""
    path.write_text(json.dumps(value), encoding="utf-8")
    return path
