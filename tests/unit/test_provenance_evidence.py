"""Redacted arguments and value provenance (clearance._internal.gate.provenance).

A redacted argument keeps, beside its salted digest, what the provenance helpers
answered for the real value, so replay answers alike without it.
"""

from __future__ import annotations

from typing import Any

import pytest

from clearance._internal.entries import redact_args
from clearance._internal.gate.provenance import redacted_at, redactions, with_evidence
from clearance._internal.policy.provenance import EMPTY, view_of
from clearance.errors import TamperError

VIEW = view_of({"sensitive": [{"passport": "P4366918"}]}, salt=b"0123456789abcdef")
ARGS: dict[str, Any] = {"to": "mark@travel.example", "body": "Passport P4366918", "n": 1}


def logged(paths: tuple[str, ...], view: Any = VIEW, args: dict[str, Any] = ARGS) -> dict[str, Any]:
    copy, redacted = redact_args(args, paths)
    assert redacted
    return with_evidence(copy, args, paths, view)


def test_evidence_sits_beside_the_digest_and_absent_paths_are_skipped() -> None:
    args = logged(("body", "cc", "card.number"))
    assert args["body"]["provenance"] == {"untrusted": False, "sensitive": True}
    assert redacted_at(args, "cc") is None
    assert redacted_at(args, "to") is None


def test_an_empty_view_logs_nothing_for_a_string_or_a_number() -> None:
    args = logged(("body", "n"), EMPTY)
    assert "provenance" not in args["body"]
    assert "provenance" not in args["n"]
    card = logged(("card",), EMPTY, {"card": {"number": "4111"}})
    assert card["card"]["provenance"] == {"untrusted": None, "sensitive": None}


def test_replay_answers_from_the_evidence() -> None:
    args = logged(("body",))
    view = redactions(args, ("body", "cc"), VIEW, 7)
    assert view.carries_sensitive(args["body"])
    assert not view.from_untrusted(args["body"])


def test_missing_evidence_is_false_only_for_an_empty_view() -> None:
    args = logged(("body",), EMPTY)
    assert not redactions(args, ("body",), EMPTY, 7).carries_sensitive(args["body"])
    unanswered = redactions(args, ("body",), VIEW, 7)
    assert unanswered is VIEW  # nothing it can answer: the helper fails the rule
    with pytest.raises(TypeError):
        unanswered.carries_sensitive(args["body"])


@pytest.mark.parametrize(
    "evidence",
    [{"untrusted": False}, {"untrusted": "no", "sensitive": True}, ["x"]],
)
def test_malformed_evidence_is_tamper(evidence: Any) -> None:
    args = logged(("body",))
    args["body"]["provenance"] = evidence
    with pytest.raises(TamperError, match="decision entry 7 is malformed"):
        redactions(args, ("body",), VIEW, 7)
