"""Human approvals over HTTP against a real server: list, long poll, vote, collect once
(docs/design.md §9, fail-closed rule 7)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from clearance.executor import SQLiteReplayGuard, keys_from_jwks, verify_grant
from tests.integration.server.conftest import open_trace
from tests.integration.server.support import Served, clearance_command

BIG = {"to": "acme-supplies", "amount": 900, "currency": "EUR"}


def _pending(clients: dict[str, httpx.Client]) -> dict[str, Any]:
    trace_id = open_trace(clients["orchestrator"], "agent:ops-bot", spend_cap=5000)
    response = clients["agent"].post(
        "/v1/authorize", json={"action": "pay_invoice", "args": BIG, "trace_id": trace_id}
    )
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def test_an_approved_request_yields_exactly_one_grant(
    clients: dict[str, httpx.Client], tmp_path: Path
) -> None:
    pending = _pending(clients)
    approval_id = pending["approval_id"]
    own = clients["agent"].get(f"/v1/approvals/{approval_id}")
    assert own.status_code == 200
    assert own.json()["status"] == "pending"
    assert own.json()["principal"] == "agent:ops-bot"
    assert clients["other-agent"].get(f"/v1/approvals/{approval_id}").status_code == 404
    listed = clients["approver"].get("/v1/approvals", params={"status": "pending"}).json()
    assert approval_id in [a["approval_id"] for a in listed["approvals"]]

    early = clients["agent"].post(f"/v1/approvals/{approval_id}/grant")
    assert early.status_code == 202
    assert early.json()["approval_id"] == approval_id

    waited: dict[str, Any] = {}

    def long_poll() -> None:
        started = time.monotonic()
        response = clients["agent"].get(f"/v1/approvals/{approval_id}", params={"wait": 20})
        waited.update(response.json(), seconds=time.monotonic() - started)

    poller = threading.Thread(target=long_poll)
    poller.start()
    time.sleep(0.5)
    assert (
        clients["agent"]
        .post(f"/v1/approvals/{approval_id}", json={"decision": "approve", "reason": "mine"})
        .status_code
        == 403
    )  # an agent key has no approver scope
    vote = clients["approver"].post(
        f"/v1/approvals/{approval_id}", json={"decision": "approve", "reason": "invoice checked"}
    )
    assert vote.status_code == 200, vote.text
    assert vote.json()["status"] == "approved"
    assert vote.json()["votes"][0]["approver"] == "user:bob"
    poller.join(timeout=30)
    assert waited["status"] == "approved"
    assert 0.3 < waited["seconds"] < 10  # woke on the vote, not at the timeout

    again = clients["approver"].post(
        f"/v1/approvals/{approval_id}", json={"decision": "approve", "reason": "twice"}
    )
    assert again.status_code == 409

    other = clients["other-agent"].post(f"/v1/approvals/{approval_id}/grant")
    assert other.status_code == 403
    collected = clients["agent"].post(f"/v1/approvals/{approval_id}/grant")
    assert collected.status_code == 200, collected.text
    body = collected.json()
    assert body["effect"] == "allow"
    assert body["request_id"] == pending["request_id"]
    assert body["intent_digest"] == pending["intent_digest"]
    jwks = clients["anonymous"].get("/.well-known/jwks.json").json()
    with contextlib.closing(SQLiteReplayGuard.open(tmp_path / "replay.db")) as guard:
        claims = verify_grant(
            body["grant"],
            pending["intent"],
            keys=keys_from_jwks(jwks),
            audience="local",
            now=time.time(),
            replay=guard,
        )
    assert claims.rid == pending["request_id"]
    twice = clients["agent"].post(f"/v1/approvals/{approval_id}/grant")
    assert twice.status_code == 409
    record = clients["auditor"].get(f"/v1/requests/{pending['request_id']}").json()
    assert record["approval"]["status"] == "collected"


def test_a_denied_approval_grants_nothing(clients: dict[str, httpx.Client]) -> None:
    pending = _pending(clients)
    approval_id = pending["approval_id"]
    deny = clients["approver"].post(
        f"/v1/approvals/{approval_id}", json={"decision": "deny", "reason": "unknown invoice"}
    )
    assert deny.status_code == 200
    assert deny.json()["status"] == "denied"
    collect = clients["agent"].post(f"/v1/approvals/{approval_id}/grant")
    assert collect.status_code == 403
    assert collect.json()["error"]["code"] == "denied"


def test_nobody_approves_their_own_request(
    server: Served, clients: dict[str, httpx.Client]
) -> None:
    made = clearance_command(
        "api-keys", "create", "self-approver", "--scope", "approver",
        "--principal", "agent:ops-bot", "--home", str(server.home), "--json",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    token = json.loads(made.stdout)["key"]
    pending = _pending(clients)
    with server.client(token) as own:
        response = own.post(
            f"/v1/approvals/{pending['approval_id']}",
            json={"decision": "approve", "reason": "looks fine to me"},
        )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"decision": "maybe", "reason": "x"}, "decision"),
        ({"decision": "approve", "reason": ""}, "reason"),
        ({"decision": "approve"}, "reason"),
    ],
)
def test_votes_are_validated(
    clients: dict[str, httpx.Client], body: dict[str, str], field: str
) -> None:
    response = clients["approver"].post("/v1/approvals/a0000000000000000deadbeef", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == field
