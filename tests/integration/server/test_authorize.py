"""POST /v1/authorize and /v1/traces against a real server: bodies, principals, traces,
parents (docs/http-api.md; fail-closed rules 10 and 11)."""

from __future__ import annotations

import httpx
import pytest

from clearance import Intent
from clearance._internal.grants.token import peek_claims
from tests.integration.server.conftest import open_trace

PAY = {"to": "acme-supplies", "amount": 120, "currency": "EUR"}


def test_allow_returns_a_grant_bound_to_the_normalized_intent(
    clients: dict[str, httpx.Client],
) -> None:
    trace_id = open_trace(clients["orchestrator"], "agent:ops-bot")
    response = clients["agent"].post(
        "/v1/authorize", json={"action": "pay_invoice", "args": PAY, "trace_id": trace_id}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["effect"] == "allow"
    assert body["reasons"][0]["rule"] == "payments-known-payees"
    assert body["intent"]["principal"] == "agent:ops-bot"  # from the key, not the body
    assert body["intent"]["trace_id"] == trace_id
    assert body["intent_digest"] == Intent.from_json(body["intent"]).digest
    assert body["facts"]["mandate"]["bounds"] == {"spend_cap": 1000}
    assert body["facts"]["count"] == 0
    assert isinstance(body["ledger_index"], int)
    assert body["grant"].count(".") == 2
    claims = peek_claims(body["grant"])
    assert claims is not None
    assert body["expires_at"] == claims["exp"]  # the grant's own expiry
    assert set(body) == {
        "request_id",
        "effect",
        "reasons",
        "facts",
        "ledger_index",
        "policy_digest",
        "intent",
        "intent_digest",
        "grant",
        "expires_at",
    }


def test_deny_is_403_with_the_logged_decision(clients: dict[str, httpx.Client]) -> None:
    response = clients["agent"].post(
        "/v1/authorize", json={"action": "delete_file", "args": {"path": "notes.txt"}}
    )
    assert response.status_code == 403
    body = response.json()
    assert body["error"]["code"] == "denied"
    assert body["effect"] == "deny"
    assert body["reasons"] == [{"rule": "no-deletes", "message": "Agents never delete files"}]
    assert isinstance(body["ledger_index"], int)
    assert body["request_id"].startswith("r")
    assert "grant" not in body


def test_approval_required_is_202_with_the_approval(clients: dict[str, httpx.Client]) -> None:
    trace_id = open_trace(clients["orchestrator"], "agent:ops-bot", spend_cap=5000)
    response = clients["agent"].post(
        "/v1/authorize",
        json={"action": "pay_invoice", "args": {**PAY, "amount": 900}, "trace_id": trace_id},
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["effect"] == "approval_required"
    assert body["approval_id"].startswith("a")
    assert body["expires_at"] > 0
    assert "grant" not in body
    assert body["intent"]["args"]["amount"] == 900
    assert body["intent_digest"] == Intent.from_json(body["intent"]).digest


def test_a_body_naming_another_principal_is_forbidden_and_nothing_is_decided(
    clients: dict[str, httpx.Client],
) -> None:
    size = clients["admin"].get("/v1/log/entries", params={"limit": 1}).json()["size"]
    response = clients["agent"].post(
        "/v1/authorize",
        json={"action": "read_file", "args": {"path": "a"}, "principal": "agent:other-bot"},
    )
    assert response.status_code == 403
    assert response.json()["error"] == {
        "code": "forbidden",
        "message": response.json()["error"]["message"],
        "field": "principal",
    }
    assert clients["admin"].get("/v1/log/entries", params={"limit": 1}).json()["size"] == size
    same = clients["agent"].post(
        "/v1/authorize",
        json={"action": "read_file", "args": {"path": "a"}, "principal": "agent:ops-bot"},
    )
    assert same.status_code == 200


def test_an_agent_key_cannot_open_or_widen_a_trace(clients: dict[str, httpx.Client]) -> None:
    opened = clients["agent"].post(
        "/v1/traces", json={"mandate": {"text": "anything", "bounds": {"spend_cap": 10**9}}}
    )
    assert opened.status_code == 403
    assert opened.json()["error"]["code"] == "forbidden"
    trace_id = open_trace(clients["orchestrator"], "agent:ops-bot", spend_cap=100)
    widened = clients["agent"].post(
        "/v1/authorize",
        json={
            "action": "pay_invoice",
            "args": PAY,
            "trace_id": trace_id,
            "mandate": {"bounds": {"spend_cap": 10**9}},
        },
    )
    assert widened.status_code == 422
    assert widened.json()["error"]["field"] == "mandate"
    capped = clients["agent"].post(
        "/v1/authorize", json={"action": "pay_invoice", "args": PAY, "trace_id": trace_id}
    )
    assert capped.status_code == 403
    assert capped.json()["reasons"][0]["rule"] == "payments-within-spend-cap"


def test_a_foreign_or_unknown_trace_is_forbidden_alike(clients: dict[str, httpx.Client]) -> None:
    theirs = open_trace(clients["orchestrator"], "agent:other-bot")
    for trace_id in (theirs, "t0000000000000000deadbeef"):
        response = clients["agent"].post(
            "/v1/authorize",
            json={"action": "read_file", "args": {"path": "a"}, "trace_id": trace_id},
        )
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "forbidden"
    mine = clients["other-agent"].post(
        "/v1/authorize", json={"action": "read_file", "args": {"path": "a"}, "trace_id": theirs}
    )
    assert mine.status_code == 200


def test_the_orchestrator_opens_traces_for_itself_by_default(
    clients: dict[str, httpx.Client],
) -> None:
    response = clients["orchestrator"].post("/v1/traces", json={"mandate": {"text": "t"}})
    assert response.status_code == 201
    assert response.json()["principal"] == "app:orchestrator"
    bad = clients["orchestrator"].post(
        "/v1/traces", json={"mandate": {"text": "t"}, "principal": "not a principal"}
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "principal"


def test_parents_must_be_decisions_of_the_same_trace(clients: dict[str, httpx.Client]) -> None:
    agent = clients["agent"]
    trace_id = open_trace(clients["orchestrator"], "agent:ops-bot")
    parent = agent.post(
        "/v1/authorize",
        json={"action": "read_file", "args": {"path": "a"}, "trace_id": trace_id},
    ).json()
    child = agent.post(
        "/v1/authorize",
        json={
            "action": "read_file",
            "args": {"path": "b"},
            "trace_id": trace_id,
            "parent_id": parent["request_id"],
        },
    )
    assert child.status_code == 200, child.text
    assert child.json()["facts"]["depth"] == 1
    assert child.json()["intent"]["parent_id"] == parent["request_id"]

    other_trace = open_trace(clients["orchestrator"], "agent:ops-bot")
    for body, field in (
        ({"trace_id": other_trace, "parent_id": parent["request_id"]}, "parent_id"),
        ({"trace_id": trace_id, "parent_id": "r0000000000000000deadbeef"}, "parent_id"),
        ({"parent_id": parent["request_id"]}, "parent_id"),
    ):
        response = agent.post(
            "/v1/authorize", json={"action": "read_file", "args": {"path": "c"}, **body}
        )
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["field"] == field

    lineage = clients["auditor"].get(f"/v1/traces/{trace_id}").json()
    assert [(r["request_id"], r["parent_id"]) for r in lineage["requests"]] == [
        (parent["request_id"], None),
        (child.json()["request_id"], parent["request_id"]),
    ]
    record = agent.get(f"/v1/requests/{parent['request_id']}").json()
    assert record["children"] == [child.json()["request_id"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"action": "pay invoice"}, "action"),
        ({"action": "read_file", "args": "not an object"}, "args"),
        ({"action": "read_file", "args": {"n": 2**60}}, "args.n"),
        ({"action": "read_file", "trace_id": "../etc"}, "trace_id"),
        ({"args": {}}, "action"),
        ({"action": 7}, "action"),
    ],
)
def test_invalid_intents_are_422_naming_the_field(
    clients: dict[str, httpx.Client], body: dict[str, object], field: str
) -> None:
    response = clients["agent"].post("/v1/authorize", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_input"
    assert response.json()["error"]["field"] == field


def test_trace_pages_follow_the_cursor(clients: dict[str, httpx.Client]) -> None:
    trace_id = open_trace(clients["orchestrator"], "agent:ops-bot")
    ids = [
        clients["agent"]
        .post(
            "/v1/authorize",
            json={"action": "read_file", "args": {"path": str(i)}, "trace_id": trace_id},
        )
        .json()["request_id"]
        for i in range(5)
    ]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        page = clients["agent"].get(f"/v1/traces/{trace_id}", params=params).json()
        seen += [r["request_id"] for r in page["requests"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    assert clients["other-agent"].get(f"/v1/traces/{trace_id}").status_code == 404
