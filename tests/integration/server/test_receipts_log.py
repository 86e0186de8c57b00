"""Receipts and the transparency-log read API against a real server: everything served
verifies offline with nothing but the served vkey (docs/design.md §5)."""

from __future__ import annotations

import base64
from typing import Any

import httpx

from clearance import verify_receipt, verify_tlog_proof
from clearance._internal.canonical import canonical_json
from clearance._internal.ledger import merkle
from clearance._internal.ledger.checkpoint import NoteVerifier, parse_checkpoint

DIGEST = "sha256:" + "1" * 64


def _allowed_and_reported(clients: dict[str, httpx.Client]) -> dict[str, Any]:
    allowed: dict[str, Any] = (
        clients["agent"]
        .post("/v1/authorize", json={"action": "read_file", "args": {"path": "r"}})
        .json()
    )
    report = clients["agent"].post(
        "/v1/executions",
        json={
            "status": "ok",
            "grant": allowed["grant"],
            "intent": allowed["intent"],
            "result_digest": DIGEST,
        },
    )
    assert report.status_code == 201, report.text
    return allowed


def test_receipts_verify_offline_with_the_served_vkey(clients: dict[str, httpx.Client]) -> None:
    allowed = _allowed_and_reported(clients)
    rid = allowed["request_id"]
    vkey = clients["anonymous"].get("/v1/log/vkey").text.strip()
    decision = clients["agent"].get(f"/v1/receipts/{rid}")
    assert decision.status_code == 200, decision.text
    verified = verify_receipt(decision.json(), vkey)
    assert verified.entry["request_id"] == rid
    assert verified.leaf_index == allowed["ledger_index"]

    execution = clients["auditor"].get(f"/v1/receipts/{rid}", params={"entry": "execution"})
    assert verify_receipt(execution.json(), vkey).entry["result_digest"] == DIGEST

    proof = clients["agent"].get(
        f"/v1/receipts/{rid}", params={"entry": "execution", "format": "tlog-proof"}
    )
    assert proof.headers["content-type"].startswith("text/plain")
    assert verify_tlog_proof(proof.text, vkey).entry["status"] == "ok"


def test_requests_and_receipts_of_another_principal_are_not_found(
    clients: dict[str, httpx.Client],
) -> None:
    rid = _allowed_and_reported(clients)["request_id"]
    for path in (f"/v1/requests/{rid}", f"/v1/receipts/{rid}"):
        assert clients["other-agent"].get(path).status_code == 404
        assert clients["auditor"].get(path).status_code == 200
        assert clients["approver"].get(path).status_code == 403
    unknown = clients["auditor"].get("/v1/requests/r0000000000000000deadbeef")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"
    none_yet = (
        clients["agent"]
        .post("/v1/authorize", json={"action": "read_file", "args": {"path": "n"}})
        .json()["request_id"]
    )
    missing = clients["agent"].get(f"/v1/receipts/{none_yet}", params={"entry": "execution"})
    assert missing.status_code == 404


def test_the_request_record_is_complete(clients: dict[str, httpx.Client]) -> None:
    allowed = _allowed_and_reported(clients)
    record = clients["auditor"].get(f"/v1/requests/{allowed['request_id']}").json()
    assert record["principal"] == "agent:ops-bot"
    assert record["intent_digest"] == allowed["intent_digest"]
    assert record["decision"]["effect"] == "allow"
    assert record["decision"]["ledger_index"] == allowed["ledger_index"]
    assert record["decision"]["facts"] == allowed["facts"]
    assert record["grant"]["aud"] == "local"
    assert record["execution"]["status"] == "ok"
    assert record["execution"]["executor"] == "agent:ops-bot"
    assert record["approval"] is None
    assert record["children"] == []


def test_proofs_from_the_log_api_verify_against_the_signed_checkpoint(
    clients: dict[str, httpx.Client],
) -> None:
    _allowed_and_reported(clients)
    public = clients["anonymous"]
    vkey = public.get("/v1/log/vkey").text.strip()
    note = public.get("/v1/log/checkpoint").text
    checkpoint = parse_checkpoint(note, NoteVerifier.from_vkey(vkey))
    size = checkpoint.size
    entries = clients["auditor"].get("/v1/log/entries", params={"start": 0, "limit": 1000})
    by_index = {e["index"]: e["entry"] for e in entries.json()["entries"]}
    for index in (0, size // 2, size - 1):
        proof = public.get("/v1/log/proofs/inclusion", params={"index": index, "size": size})
        assert proof.status_code == 200, proof.text
        body = proof.json()
        root = base64.b64decode(body["root"])
        assert root == checkpoint.root
        merkle.verify_inclusion(
            index,
            size,
            merkle.leaf_hash(canonical_json(by_index[index])),
            [base64.b64decode(h) for h in body["proof"]],
            root,
        )
    first = max(1, size // 3)
    consistency = public.get(
        "/v1/log/proofs/consistency", params={"first": first, "second": size}
    ).json()
    merkle.verify_consistency(
        first,
        size,
        base64.b64decode(consistency["first_root"]),
        checkpoint.root,
        [base64.b64decode(h) for h in consistency["proof"]],
    )


def test_log_parameters_out_of_range_are_422_naming_them(
    clients: dict[str, httpx.Client],
) -> None:
    public = clients["anonymous"]
    size = clients["auditor"].get("/v1/log/entries", params={"limit": 1}).json()["size"]
    for path, params, field in (
        ("/v1/log/proofs/inclusion", {"index": 0, "size": size + 5}, "size"),
        ("/v1/log/proofs/inclusion", {"index": size, "size": size}, "index"),
        ("/v1/log/proofs/inclusion", {"index": -1, "size": 1}, "index"),
        ("/v1/log/proofs/consistency", {"first": 0, "second": 1}, "first"),
        ("/v1/log/proofs/consistency", {"first": 2, "second": 1}, "first"),
        ("/v1/log/entries", {"limit": 1001}, "limit"),
    ):
        client = clients["auditor"] if path.endswith("entries") else public
        response = client.get(path, params=params)
        assert response.status_code == 422, (path, params, response.text)
        assert response.json()["error"]["field"] == field


def test_entries_are_paged(clients: dict[str, httpx.Client]) -> None:
    page = clients["auditor"].get("/v1/log/entries", params={"start": 1, "limit": 2}).json()
    assert [e["index"] for e in page["entries"]] == [1, 2]
    beyond = clients["auditor"].get("/v1/log/entries", params={"start": page["size"] + 10})
    assert beyond.json()["entries"] == []
