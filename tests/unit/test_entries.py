"""Ledger entry builders, timestamps and redaction (clearance._internal.entries)."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clearance import check_redacted
from clearance._internal.canonical import canonical_json
from clearance._internal.entries import (
    ENTRY_VERSION,
    REDACTED_KEY,
    approval_entry,
    decision_entry,
    execution_entry,
    key_entry,
    parse_timestamp,
    policy_entry,
    redact_args,
    redact_value,
    timestamp,
    trace_entry,
)
from clearance.errors import InputError

NOW = 1_795_860_000.123456  # 2026-11-28T10:00:00.123456Z
NOW_TEXT = "2026-11-28T10:00:00.123456Z"


def is_ledger_json(entry: dict[str, Any]) -> bool:
    """The entry survives its canonical JSON form unchanged (what the leaf bytes hold)."""
    return bool(json.loads(canonical_json(entry)) == entry)


# --- timestamps ---------------------------------------------------------------------


def test_timestamp_format() -> None:
    assert timestamp(NOW) == NOW_TEXT
    assert timestamp(0) == "1970-01-01T00:00:00.000000Z"
    assert timestamp(1.5) == "1970-01-01T00:00:01.500000Z"


# Up to 2^32 s (year 2106) a float of seconds still resolves a microsecond; the clock
# the gate passes in is such a float.
@given(st.integers(min_value=0, max_value=2**32 * 10**6))
def test_timestamp_round_trip(micros: int) -> None:
    # Whole microseconds (what the format carries) survive the round trip.
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    text = timestamp(moment.timestamp())
    assert text.endswith("Z")
    assert len(text) == len(NOW_TEXT)
    assert abs(parse_timestamp(text) - moment) <= timedelta(microseconds=1)
    assert timestamp(parse_timestamp(text).timestamp()) == text


def test_parse_timestamp_accepts_other_utc_forms() -> None:
    expected = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    assert parse_timestamp("2026-11-28T10:00:00Z") == expected
    assert parse_timestamp("2026-11-28T10:00:00+00:00") == expected
    # An offset is a time zone too; the instant is what counts.
    assert parse_timestamp("2026-11-28T11:00:00+01:00") == expected
    assert parse_timestamp("2026-11-28T11:00:00+01:00").tzinfo == timezone(timedelta(hours=1))


@pytest.mark.parametrize(
    "text", ["", "yesterday", "2026-13-01T00:00:00Z", "2026-11-28 10:00 UTC", "1795860000"]
)
def test_parse_timestamp_rejects_non_timestamps(text: str) -> None:
    with pytest.raises(InputError, match="not an RFC 3339 timestamp"):
        parse_timestamp(text)


def test_parse_timestamp_rejects_a_naive_time() -> None:
    with pytest.raises(InputError, match="no time zone"):
        parse_timestamp("2026-11-28T10:00:00")


# --- builders -----------------------------------------------------------------------


def base_of(entry: dict[str, Any], kind: str) -> None:
    assert entry["type"] == kind
    assert entry["v"] == ENTRY_VERSION == 1
    assert entry["at"] == NOW_TEXT
    assert is_ledger_json(entry)


def test_policy_entry_logs_the_whole_bundle() -> None:
    document = {"rules": [{"id": "r1", "effect": "allow"}]}
    entry = policy_entry(NOW, "sha256:" + "a" * 64, document)
    base_of(entry, "policy")
    assert entry["digest"] == "sha256:" + "a" * 64
    assert entry["bundle"] == document
    assert entry["bundle"] is not document


def test_key_entry() -> None:
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "kid": "k1"}
    entry = key_entry(NOW, "k1", jwk)
    base_of(entry, "key")
    assert (entry["kid"], entry["jwk"]) == ("k1", jwk)


@pytest.mark.parametrize("opened_by", ["ops@example", None])
def test_trace_entry(opened_by: str | None) -> None:
    mandate = {"text": "pay invoices", "bounds": {"spend_cap": 600}}
    entry = trace_entry(NOW, "t-1", mandate, opened_by)
    base_of(entry, "trace")
    assert entry["trace_id"] == "t-1"
    assert entry["mandate"] == mandate
    assert entry["opened_by"] == opened_by


def make_decision(**overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "request_id": "r-1",
        "intent": {
            "action": "pay",
            "args": {"amount": 5},
            "trace_id": "t-1",
            "parent_id": None,
        },
        "intent_digest": "sha256:" + "b" * 64,
        "decision": {
            "effect": "allow",
            "reasons": [{"rule": "ok"}],
            "policy_digest": "sha256:" + "c" * 64,
        },
        "facts": {"id": "t-1", "count": 0, "depth": 0},
        "principal_attrs": {"role": "agent"},
        "parent_index": None,
        "untrusted_output": False,
        "grant": {"jti": "j-1", "exp": 1},
        "approval_id": None,
        "redacted": False,
    }
    arguments.update(overrides)
    return decision_entry(NOW, **arguments)


def test_decision_entry_holds_everything_replay_needs() -> None:
    entry = make_decision()
    base_of(entry, "decision")
    assert entry["request_id"] == "r-1"
    assert entry["trace_id"] == "t-1"  # lifted from the intent, for lineage queries
    assert entry["parent_id"] is None
    assert entry["parent_index"] is None
    assert entry["intent"]["args"] == {"amount": 5}
    assert entry["effect"] == "allow"
    assert entry["reasons"] == [{"rule": "ok"}]
    assert entry["policy_digest"] == "sha256:" + "c" * 64
    assert entry["facts"] == {"id": "t-1", "count": 0, "depth": 0}
    assert entry["principal_attrs"] == {"role": "agent"}
    assert entry["grant"] == {"jti": "j-1", "exp": 1}
    assert entry["now"] == entry["at"]  # one clock reading, the one the policy saw
    assert entry["redacted"] is False
    assert entry["untrusted_output"] is False
    assert entry["approval_id"] is None


def test_decision_entry_without_a_grant_and_with_an_approval() -> None:
    entry = make_decision(
        grant=None,
        approval_id="a-1",
        decision={"effect": "require_approval", "reasons": (), "policy_digest": "sha256:x"},
        parent_index=7,
        untrusted_output=True,
        redacted=True,
    )
    assert entry["grant"] is None
    assert entry["approval_id"] == "a-1"
    assert entry["effect"] == "require_approval"
    assert entry["reasons"] == []  # a tuple would not read back as itself
    assert entry["parent_index"] == 7
    assert entry["untrusted_output"] is True
    assert entry["redacted"] is True
    assert is_ledger_json(entry)


def test_decision_entry_copies_its_inputs() -> None:
    intent = {"action": "pay", "args": {}, "trace_id": "t"}
    entry = make_decision(intent=intent)
    intent["action"] = "changed"
    assert entry["intent"]["action"] == "pay"


def test_approval_entry() -> None:
    entry = approval_entry(
        NOW,
        approval_id="a-1",
        request_id="r-1",
        trace_id=None,
        status="pending",
        decision_index=4,
        expires_at=NOW + 3600,
    )
    base_of(entry, "approval")
    assert entry["status"] == "pending"
    assert entry["decision_index"] == 4
    assert entry["trace_id"] is None
    assert entry["expires_at"] == "2026-11-28T11:00:00.123456Z"


@pytest.mark.parametrize(
    ("status", "error_type", "result_digest"),
    [
        ("ok", None, "sha256:" + "d" * 64),
        ("error", "ValueError", None),
        ("rejected", "expired", None),
    ],
)
def test_execution_entry(status: str, error_type: str | None, result_digest: str | None) -> None:
    entry = execution_entry(
        NOW,
        request_id="r-1",
        trace_id="t-1",
        decision_index=4,
        jti="j-1",
        status=status,
        error_type=error_type,
        result_digest=result_digest,
        duration_us=1234,
        executor="in-process",
    )
    base_of(entry, "execution")
    assert entry["decision_index"] == 4
    assert entry["status"] == status
    assert entry["error_type"] == error_type
    assert entry["result_digest"] == result_digest
    assert entry["duration_us"] == 1234
    assert entry["executor"] == "in-process"
    assert entry["jti"] == "j-1"


# --- redaction ----------------------------------------------------------------------


def test_redact_value_is_salted_sha256_over_canonical_json() -> None:
    salt = bytes(range(16))
    value = {"iban": "DE00 1234", "n": 1}
    redacted = redact_value(value, salt)
    assert set(redacted) == {REDACTED_KEY, "salt"}
    assert base64.b64decode(redacted["salt"]) == salt
    # By hand, as the module docstring tells an auditor to do it.
    expected = hashlib.sha256(salt + canonical_json(value)).hexdigest()
    assert redacted[REDACTED_KEY] == "sha256:" + expected


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(JSON_VALUES, st.binary(min_size=16, max_size=16))
def test_check_redacted_accepts_the_value_behind_the_digest(value: Any, salt: bytes) -> None:
    redacted = redact_value(value, salt)
    assert check_redacted(redacted, value)
    assert not check_redacted(redacted, [value])


def test_check_redacted_rejects_another_value() -> None:
    redacted = redact_value("4111 1111 1111 1111", b"s" * 16)
    assert not check_redacted(redacted, "4111 1111 1111 1112")
    assert not check_redacted(redacted, None)


@pytest.mark.parametrize(
    "broken",
    [
        {},
        {"salt": "AAAA"},
        {REDACTED_KEY: "sha256:00"},
        {REDACTED_KEY: "sha256:00", "salt": "not base64!"},
    ],
)
def test_check_redacted_is_false_for_a_malformed_record(broken: dict[str, Any]) -> None:
    assert check_redacted(broken, "x") is False


def test_check_redacted_with_another_salt_fails() -> None:
    redacted = redact_value(42, b"a" * 16)
    moved = {**redacted, "salt": base64.b64encode(b"b" * 16).decode()}
    assert not check_redacted(moved, 42)


def test_redact_args_replaces_each_path_with_its_own_salt() -> None:
    args = {"card": "4111", "copy": "4111", "payee": {"iban": "DE00", "name": "acme"}, "n": 1}
    redacted, changed = redact_args(args, ["card", "copy", "payee.iban"])
    assert changed is True
    assert redacted["n"] == 1
    assert redacted["payee"]["name"] == "acme"
    for path_value, original in (
        (redacted["card"], "4111"),
        (redacted["copy"], "4111"),
        (redacted["payee"]["iban"], "DE00"),
    ):
        assert set(path_value) == {REDACTED_KEY, "salt"}
        assert check_redacted(path_value, original)
    # Equal values get different salts, so the ledger does not link them.
    assert redacted["card"] != redacted["copy"]
    # The caller's arguments are untouched (the intent digest is over the real values).
    assert args == {
        "card": "4111",
        "copy": "4111",
        "payee": {"iban": "DE00", "name": "acme"},
        "n": 1,
    }


def test_redact_args_copies_deeply() -> None:
    args: dict[str, Any] = {"items": [{"secret": 1}], "payee": {"iban": "DE00"}}
    redacted, _ = redact_args(args, ["payee.iban"])
    redacted["items"][0]["secret"] = 2
    assert args["items"][0]["secret"] == 1


@pytest.mark.parametrize("paths", [["missing"], ["payee.missing"], ["n.deeper"], ["x.y.z"]])
def test_redact_args_skips_absent_paths(paths: list[str]) -> None:
    args = {"payee": {"iban": "DE00"}, "n": 1}
    redacted, changed = redact_args(args, paths)
    assert changed is False
    assert redacted == args


def test_redact_args_with_no_paths_is_a_copy() -> None:
    args = {"a": 1}
    redacted, changed = redact_args(args, [])
    assert (redacted, changed) == ({"a": 1}, False)
    assert redacted is not args


def test_a_redacted_decision_is_ledger_json() -> None:
    args, changed = redact_args({"card": "4111", "amount": 5}, ["card"])
    entry = make_decision(intent={"action": "pay", "args": args}, redacted=changed)
    assert is_ledger_json(entry)
    assert check_redacted(entry["intent"]["args"]["card"], "4111")
