"""The SDK around real tool code: injected dependencies, results, paths, executor intents."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest

from clearance import init_home
from clearance._internal.gate.core import Gate
from clearance._internal.intent import Intent
from clearance.errors import InputError, InvalidGrant

from .conftest import FixedClock


class Database:
    """An injected dependency: not JSON, and not what the policy decides on."""


def executions(gate: Gate) -> list[dict[str, Any]]:
    return [dict(e.entry) for e in gate.ledger.scan() if e.entry["type"] == "execution"]


def test_injected_dependencies_are_excluded_from_the_intent(gate: Gate) -> None:
    @gate.governed("read_file", exclude=("db",))
    def read_file(path: str, db: Database) -> str:
        return f"read {path}"

    @gate.governed("read_file")
    def unguarded(path: str, db: Database) -> str:
        return "never"

    with gate.trace("Read the notes"):
        assert read_file("notes.md", Database()) == "read notes.md"
        with pytest.raises(InputError, match=r"args\.db"):
            unguarded("notes.md", Database())
    (decision,) = [e.entry for e in gate.ledger.scan() if e.entry["type"] == "decision"]
    assert decision["intent"]["args"] == {"path": "notes.md"}


def test_an_args_builder_maps_parameters_to_the_intent(gate: Gate) -> None:
    @gate.governed("write_file", args=lambda a: {"path": a["target"], "content": a["text"]})
    def save(target: str, text: str, db: Database) -> int:
        return len(text)

    with gate.trace("Save the summary"):
        assert save("out.md", "hello", Database()) == 5
    (decision,) = [e.entry for e in gate.ledger.scan() if e.entry["type"] == "decision"]
    assert decision["intent"]["args"] == {"path": "out.md", "content": "hello"}


def test_decorator_arguments_are_checked_when_decorating(gate: Gate) -> None:
    with pytest.raises(ValueError, match="names no parameter"):

        @gate.governed("read_file", exclude=("dbb",))
        def read_file(path: str, db: Database) -> str:
            return path

    with pytest.raises(ValueError, match="either exclude= or args="):
        gate.governed("read_file", exclude=("db",), args=lambda a: {})


def test_record_result_refuses_a_value_that_is_not_json(gate: Gate) -> None:
    ran: list[str] = []
    with (
        gate.trace("Read the notes"),
        gate.clearance({"action": "read_file", "args": {"path": "a"}}) as cleared,
    ):
        ran.append("body")
        with pytest.raises(InputError, match="datetime"):
            cleared.record_result(datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC))
        cleared.record_result({"at": "2026-01-01T00:00:00Z"})
    (execution,) = executions(gate)
    assert execution["result_digest"] is not None
    assert ran == ["body"]


def test_a_decorated_tool_returning_a_non_json_value_says_so_in_the_ledger(gate: Gate) -> None:
    when = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)

    @gate.governed("read_file")
    def read_file(path: str) -> datetime.datetime:
        return when

    with gate.trace("Read the notes"):
        assert read_file("a.md") == when
    (execution,) = executions(gate)
    assert execution["status"] == "ok"
    assert execution["result_digest"] is None
    assert "datetime" in execution["result_error"]


def test_init_home_takes_a_str_path_and_refuses_other_types(tmp_path: Path) -> None:
    home = init_home(str(tmp_path / "home"), now=1_795_000_000.0)
    assert home.path == tmp_path / "home"
    assert (tmp_path / "home" / "clearance.yaml").is_file()
    with pytest.raises(TypeError, match="str or path-like"):
        init_home(42, now=1_795_000_000.0)  # type: ignore[arg-type]


def test_an_executor_verifying_the_submitted_intent_is_told_why_in_the_audit_log(
    gate: Gate, clock: FixedClock
) -> None:
    ran: list[str] = []
    submitted = {"principal": "agent:ops-bot", "action": "read_file", "args": {"path": "a"}}
    with gate.trace("Read the notes"):
        auth = gate.authorize(submitted)
    with pytest.raises(InvalidGrant) as refused:
        gate.execute(auth.grant, Intent.from_json(submitted), lambda: ran.append("body"))
    assert str(refused.value) == "grant rejected"
    assert "Authorization.intent" in refused.value.audit_reason
    (rejected,) = executions(gate)
    assert "Authorization.intent" in rejected["error_type"]
    # the bound intent the gate returned is what verifies
    gate.execute(auth.grant, auth.intent, lambda: ran.append("body"))
    assert ran == ["body"]
