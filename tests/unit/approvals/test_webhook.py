"""The new-approval webhook against a real local HTTP server: signed, retried, never blocking."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from clearance._internal.approvals.webhook import ApprovalWebhook, signature
from tests.webhook_receiver import Receiver, running_receiver

SECRET = b"0123456789abcdef-webhook-secret"
APPROVAL = {"approval_id": "a1", "request_id": "r1", "action": "pay", "expires_at": 1.5}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as server:
        yield server


def hook(url: str, **options: Any) -> ApprovalWebhook:
    options.setdefault("backoff", 0.02)
    options.setdefault("timeout", 2.0)
    return ApprovalWebhook(url, SECRET, **options)


def test_a_notice_is_signed_and_retried_until_accepted(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.script = [500, 503]
    webhook = hook(receiver.url, attempts=4)
    try:
        webhook.notify(APPROVAL)
        assert webhook.drain(10)
    finally:
        webhook.close()
    assert [status for _, _, status in receiver.received] == [500, 503, 200]
    assert (webhook.delivered, webhook.failed) == (1, 0)
    deliveries = set()
    for headers, body, _ in receiver.received:
        expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["Clearance-Signature"], expected)
        notice = json.loads(body)
        assert notice["type"] == "approval.pending"
        assert notice["approval"] == APPROVAL
        assert headers["Clearance-Timestamp"] == str(notice["timestamp"])
        assert headers["Clearance-Delivery"] == notice["delivery_id"]
        deliveries.add(notice["delivery_id"])
    assert len(deliveries) == 1  # the same delivery on every retry
    assert caplog.text.count("approval webhook attempt") == 2
    assert SECRET.decode() not in caplog.text


def test_a_tampered_body_does_not_verify() -> None:
    body = b'{"approval":{"approval_id":"a1"}}'
    assert signature(SECRET, body) != signature(SECRET, body.replace(b"a1", b"a2"))
    assert signature(SECRET, body) != signature(b"another secret, same length!!!", body)


def test_it_gives_up_after_the_last_attempt(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.script = [500, 500, 500]
    webhook = hook(receiver.url, attempts=3)
    try:
        webhook.notify(APPROVAL)
        assert webhook.drain(10)
    finally:
        webhook.close()
    assert len(receiver.received) == 3
    assert (webhook.delivered, webhook.failed) == (0, 1)
    assert "gave up on the notice of a1 after 3 attempt(s): HTTP 500" in caplog.text


def test_a_client_error_is_not_retried(receiver: Receiver) -> None:
    receiver.script = [403]
    webhook = hook(receiver.url)
    try:
        webhook.notify(APPROVAL)
        assert webhook.drain(10)
    finally:
        webhook.close()
    assert len(receiver.received) == 1
    assert webhook.failed == 1


def test_an_unreachable_receiver_never_blocks_the_caller(caplog: pytest.LogCaptureFixture) -> None:
    webhook = hook("http://127.0.0.1:9/hook", attempts=2, timeout=1.0)  # discard port: refused
    try:
        started = time.perf_counter()
        for _ in range(20):
            webhook.notify(APPROVAL)
        assert time.perf_counter() - started < 0.5
        assert webhook.drain(30)
    finally:
        webhook.close()
    assert webhook.failed == 20
    assert "ConnectError" in caplog.text


def test_close_interrupts_a_backoff(receiver: Receiver) -> None:
    receiver.script = [500] * 5
    webhook = hook(receiver.url, attempts=5, backoff=30.0, max_backoff=30.0)
    webhook.notify(APPROVAL)
    deadline = time.monotonic() + 5
    while not receiver.received and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.perf_counter()
    webhook.close()
    assert time.perf_counter() - started < 2
    assert len(receiver.received) == 1
    webhook.notify(APPROVAL)  # after close: ignored, never raises


def test_nonsense_options_are_refused() -> None:
    with pytest.raises(ValueError, match="secret"):
        ApprovalWebhook("http://h.example/", b"")
    with pytest.raises(ValueError, match="attempts"):
        ApprovalWebhook("http://h.example/", SECRET, attempts=0)
