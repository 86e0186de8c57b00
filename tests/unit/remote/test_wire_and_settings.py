"""Error mapping of the HTTP contract, URL and key validation, the client's settings."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from clearance._internal.remote import approvals
from clearance._internal.remote.settings import RemoteSettings
from clearance._internal.remote.transport import bearer_headers
from clearance._internal.remote.wire import (
    Reply,
    Unreachable,
    decision_of,
    error_for,
    gateway_url,
    retry_after,
    unreachable_error,
)
from clearance.errors import (
    ApprovalRequired,
    Conflict,
    Denied,
    Error,
    InputError,
    InvalidGrant,
    LedgerError,
    NotFound,
    NotPermitted,
    Unauthenticated,
)


def _error(code: str, message: str = "msg", **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


DENIED = {
    **_error("denied", "denied by policy"),
    "request_id": "r1",
    "effect": "deny",
    "reasons": [{"rule": "no-deletes", "message": "Agents never delete files"}, "junk"],
    "ledger_index": 9,
}


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (401, _error("unauthenticated"), Unauthenticated),
        (403, _error("forbidden"), NotPermitted),
        (403, _error("invalid_grant"), InvalidGrant),
        (404, _error("not_found"), NotFound),
        (409, _error("conflict"), Conflict),
        (400, _error("bad_request"), InputError),
        (413, _error("payload_too_large"), InputError),
        (422, _error("invalid_input", field="args.amount"), InputError),
        (503, _error("unavailable"), LedgerError),
        (500, None, LedgerError),
        (429, _error("rate_limited"), Error),
        (418, "not json at all", Error),
    ],
)
def test_statuses_map_to_errors(status: int, body: Any, kind: type[Error]) -> None:
    error = error_for(Reply(status, body), fail_closed=False)
    assert type(error) is kind


def test_a_denial_keeps_its_reasons_and_request() -> None:
    error = error_for(Reply(403, DENIED), fail_closed=True)
    assert isinstance(error, Denied)
    assert error.reasons == ["no-deletes"]
    assert error.decision["request_id"] == "r1"
    assert error.decision["index"] == 9
    assert "Agents never delete files" in str(error)


def test_a_422_names_the_field() -> None:
    error = error_for(
        Reply(422, _error("invalid_input", "bad", field="args.amount")), fail_closed=True
    )
    assert "args.amount" in str(error)


@pytest.mark.parametrize(
    ("status", "rule"),
    [
        (503, "gateway-unavailable"),
        (500, "gateway-unavailable"),
        (429, "rate-limited"),
        (302, "gateway-unavailable"),
    ],
)
def test_an_authorizing_call_fails_closed(status: int, rule: str) -> None:
    error = error_for(Reply(status, None), fail_closed=True)
    assert isinstance(error, Denied)
    assert not isinstance(error, ApprovalRequired)
    assert error.reasons == [rule]


def test_unreachable_is_a_denial_or_a_ledger_error() -> None:
    denied = unreachable_error(Unreachable("refused"), fail_closed=True)
    assert isinstance(denied, Denied)
    assert denied.reasons == ["gateway-unreachable"]
    assert isinstance(unreachable_error(Unreachable("x"), fail_closed=False), LedgerError)


def test_decision_of_keeps_only_well_formed_reasons() -> None:
    decision = decision_of(
        {"reasons": [{"rule": "a"}, {"rule": 5}, "b"], "approval_id": "a1"}, "deny"
    )
    assert decision == {
        "effect": "deny",
        "reasons": [{"rule": "a", "message": ""}],
        "approval_id": "a1",
    }
    assert decision_of(None, "deny") == {"effect": "deny", "reasons": []}


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "2"}, 2.0),
        ({"retry-after": " 0.5 "}, 0.5),
        ({}, None),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "-1"}, None),
    ],
)
def test_retry_after(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_after(Reply(429, None, headers)) == seconds


@pytest.mark.parametrize(
    "url", ["", "ftp://x", "http://", "http://h/?q=1", "http://h/#f", 5, "localhost:8470"]
)
def test_bad_gateway_urls_are_refused(url: Any) -> None:
    with pytest.raises(InputError):
        gateway_url(url)


def test_gateway_url_drops_the_trailing_slash() -> None:
    assert gateway_url("http://127.0.0.1:8470/") == "http://127.0.0.1:8470"
    assert gateway_url("https://gw.example/base/") == "https://gw.example/base"


@pytest.mark.parametrize("key", ["", "has space", "line\nbreak", "é", None, "x" * 513])
def test_api_keys_must_be_header_safe(key: Any) -> None:
    with pytest.raises(InputError):
        bearer_headers(key)


def test_bearer_headers() -> None:
    assert bearer_headers("clk_a_b")["Authorization"] == "Bearer clk_a_b"


@pytest.mark.parametrize(
    "changes",
    [
        {"timeout": 0},
        {"timeout": float("inf")},
        {"report_attempts": 0},
        {"report_attempts": 1.5},
        {"leeway": 6},
        {"max_retry_after": -1},
        {"rate_limit_retries": 1.5},
        {"min_poll_interval": True},
        {"jwks_refetch_interval": "1"},
    ],
)
def test_settings_are_checked(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RemoteSettings(**changes)


def test_wait_seconds() -> None:
    assert approvals.wait_seconds(None) is None
    assert approvals.wait_seconds(timedelta(minutes=2)) == 120.0
    assert approvals.wait_seconds(3) == 3.0
    for bad in (0, -1, float("nan"), timedelta(0)):
        with pytest.raises(ValueError):
            approvals.wait_seconds(bad)
    with pytest.raises(TypeError):
        approvals.wait_seconds("5")  # type: ignore[arg-type]


@pytest.mark.parametrize(("remaining", "wait"), [(0.2, 1), (1.0, 1), (30.5, 31), (600, 60)])
def test_poll_seconds_are_bounded(remaining: float, wait: int) -> None:
    assert approvals.poll_seconds(remaining) == wait


def test_unreadable_approvals_fail_closed() -> None:
    bodies: list[Any] = [None, {"status": "weird"}, [], {"status": 5}]
    for body in bodies:
        with pytest.raises(Denied) as caught:
            approvals.read_approval(body, "a1")
        assert caught.value.reasons == ["approval-unreadable"]


def test_decided_approvals() -> None:
    record = {
        "status": "denied",
        "request_id": "r1",
        "votes": [{"approver": "user:bob", "decision": "deny", "reason": "no invoice"}],
    }
    denied = approvals.decided_error(approvals.read_approval(record, "a1"))
    assert isinstance(denied, Denied)
    assert denied.reasons == ["approval-denied"]
    assert "user:bob: no invoice" in str(denied)
    expired = approvals.decided_error(approvals.read_approval({"status": "expired"}, "a2"))
    assert isinstance(expired, Denied)
    assert expired.reasons == ["approval-expired"]
    collected = approvals.decided_error(approvals.read_approval({"status": "collected"}, "a3"))
    assert isinstance(collected, Conflict)
