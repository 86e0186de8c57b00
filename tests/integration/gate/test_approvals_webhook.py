"""The approvals webhook wired from ``clearance.yaml``: a new approval is announced, signed;
a receiver that fails never changes the decision, and a missing secret stops the gate."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator

import pytest
import yaml

from clearance._internal.home import SETTINGS_FILE, Home
from clearance._internal.wiring import open_gate
from clearance.errors import ApprovalRequired, InputError
from tests.webhook_receiver import Receiver, running_receiver

from .approvals_support import PRINCIPAL, install_bundle, refund
from .conftest import T0, FixedClock

SECRET = "s3cret-for-the-approvals-webhook-0123456789"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as server:
        server.script = [502]  # the first attempt fails; the retry is accepted
        yield server


def configure(home: Home, url: str) -> None:
    (home.path / "keys" / "webhook.secret").write_text(SECRET + "\n", encoding="ascii")
    path = home.path / SETTINGS_FILE
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw["approvals"] = {"webhook_url": url, "webhook_secret_file": "keys/webhook.secret"}
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    install_bundle(home.path)


def test_a_new_approval_is_announced_signed_and_retried(
    home: Home, clock: FixedClock, receiver: Receiver
) -> None:
    configure(home, receiver.url)
    with open_gate(home.path, principal=PRINCIPAL, clock=clock, durability="relaxed") as gate:
        with pytest.raises(ApprovalRequired) as needed:
            gate.authorize(refund())
        assert receiver.arrived.wait(10)
    assert [status for _, _, status in receiver.received] == [502, 200]
    headers, body, _ = receiver.received[-1]
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["Clearance-Signature"], expected)
    notice = json.loads(body)
    approval = notice["approval"]
    assert approval["approval_id"] == needed.value.approval_id
    assert approval["request_id"] == needed.value.decision["request_id"]
    assert (approval["action"], approval["principal"]) == ("refund", PRINCIPAL)
    assert approval["rules"] == ["refunds-need-anyone"]
    assert approval["expires_at"] == T0 + 900


def test_a_failing_webhook_never_changes_or_delays_the_decision(
    home: Home, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    configure(home, "http://127.0.0.1:9/approvals")  # nothing listens there
    with open_gate(home.path, principal=PRINCIPAL, clock=clock, durability="relaxed") as gate:
        started = time.perf_counter()
        with pytest.raises(ApprovalRequired) as needed:
            gate.authorize(refund())
        assert time.perf_counter() - started < 1
        approval = gate.approval(needed.value.approval_id)
        assert approval.status == "pending"
        gate.approve(approval.approval_id, approver="user:alice", reason="ok")
        assert gate.collect(approval.approval_id).grant
        deadline = time.monotonic() + 10
        while "approval webhook attempt 1/5" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.02)
        assert f"for {approval.approval_id} failed (ConnectError" in caplog.text
        closing = time.perf_counter()
    assert time.perf_counter() - closing < 3  # closing the gate stops the retries


def test_a_webhook_without_its_secret_stops_the_gate(home: Home, clock: FixedClock) -> None:
    configure(home, "https://hooks.example/approvals")
    (home.path / "keys" / "webhook.secret").unlink()
    with pytest.raises(InputError, match=r"webhook\.secret: cannot read it"):
        open_gate(home.path, principal=PRINCIPAL, clock=clock, durability="relaxed")
