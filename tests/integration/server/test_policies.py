"""GET/PUT /v1/policies and the dry run against a real server (fail-closed rule 2)."""

from __future__ import annotations

import httpx

from tests.integration.server.support import Served

PERMISSIVE = """\
version: 1
rules:
  - id: reads
    effect: allow
    actions: [read_file]
  - id: deletes-ok
    effect: allow
    actions: [delete_file]
    message: Deletes are fine here
"""
STRICT = PERMISSIVE.replace(
    "effect: allow\n    actions: [delete_file]", "effect: deny\n    actions: [delete_file]"
)
BROKEN = "version: 1\nrules:\n  - id: broken\n    effect: allow\n    when: args.amount >\n"


def _size(clients: dict[str, httpx.Client]) -> int:
    size: int = clients["auditor"].get("/v1/log/entries", params={"limit": 1}).json()["size"]
    return size


def _delete(clients: dict[str, httpx.Client]) -> httpx.Response:
    return clients["agent"].post(
        "/v1/authorize", json={"action": "delete_file", "args": {"path": "x"}}
    )


def test_a_good_bundle_becomes_active_and_is_logged(
    server: Served, clients: dict[str, httpx.Client]
) -> None:
    before = clients["auditor"].get("/v1/policies").json()
    assert _delete(clients).status_code == 403
    put = clients["admin"].put("/v1/policies", json={"files": {"main.yaml": PERMISSIVE}})
    assert put.status_code == 200, put.text
    digest, index = put.json()["digest"], put.json()["ledger_index"]
    assert digest != before["digest"]
    now = clients["auditor"].get("/v1/policies").json()
    assert now["digest"] == digest
    assert now["document"]["rules"][1]["id"] == "deletes-ok"
    assert now["activations"][-1] == {
        "digest": digest,
        "ledger_index": index,
        "at": now["activations"][-1]["at"],
    }
    entry = clients["auditor"].get("/v1/log/entries", params={"start": index, "limit": 1})
    logged = entry.json()["entries"][0]["entry"]
    assert logged["type"] == "policy"
    assert logged["digest"] == digest
    assert logged["bundle"] == now["document"]
    assert sorted(p.name for p in (server.home / "policies").iterdir()) == ["main.yaml"]
    allowed = _delete(clients)
    assert allowed.status_code == 200
    assert allowed.json()["policy_digest"] == digest
    again = clients["admin"].put("/v1/policies", json={"files": {"main.yaml": PERMISSIVE}})
    assert again.json() == {"digest": digest, "ledger_index": index}  # no new activation


def test_a_bad_bundle_is_refused_with_the_loaders_message(
    server: Served, clients: dict[str, httpx.Client]
) -> None:
    active = clients["auditor"].get("/v1/policies").json()["digest"]
    files_before = {p.name: p.read_text() for p in (server.home / "policies").iterdir()}
    size = _size(clients)
    for files in ({"bad.yaml": BROKEN}, {"a.yaml": "version: 2\n"}, {"a.yaml": "[not, a, map]"}):
        response = clients["admin"].put("/v1/policies", json={"files": files})
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_input"
        assert error["field"] == "files"
        name = next(iter(files))
        assert f"{name}" in error["message"]
        assert str(server.home) not in error["message"]  # no server paths leak
    assert clients["auditor"].get("/v1/policies").json()["digest"] == active
    assert {p.name: p.read_text() for p in (server.home / "policies").iterdir()} == files_before
    assert _size(clients) == size


def test_file_names_are_plain_yaml_names(clients: dict[str, httpx.Client]) -> None:
    for name in ("../escape.yaml", ".hidden.yaml", "a.txt", "dir/a.yaml"):
        response = clients["admin"].put("/v1/policies", json={"files": {name: PERMISSIVE}})
        assert response.status_code == 422, name
        assert response.json()["error"]["field"].startswith("files")


def test_only_admin_keys_replace_the_bundle(clients: dict[str, httpx.Client]) -> None:
    for name in ("agent", "orchestrator", "approver", "auditor"):
        response = clients[name].put("/v1/policies", json={"files": {"main.yaml": STRICT}})
        assert response.status_code == 403


def test_the_dry_run_writes_nothing_and_takes_a_candidate(clients: dict[str, httpx.Client]) -> None:
    clients["admin"].put("/v1/policies", json={"files": {"main.yaml": PERMISSIVE}})
    size = _size(clients)
    intent = {"action": "delete_file", "args": {"path": "x"}}
    active = clients["agent"].post("/v1/policies/evaluate", json={"intent": intent})
    assert active.status_code == 200, active.text
    assert active.json()["effect"] == "allow"
    candidate = clients["agent"].post(
        "/v1/policies/evaluate", json={"intent": intent, "files": {"main.yaml": STRICT}}
    )
    assert candidate.json()["effect"] == "deny"
    assert candidate.json()["policy_digest"] != active.json()["policy_digest"]
    broken = clients["agent"].post(
        "/v1/policies/evaluate", json={"intent": intent, "files": {"main.yaml": BROKEN}}
    )
    assert broken.status_code == 422
    orphan = clients["agent"].post(
        "/v1/policies/evaluate",
        json={"intent": {**intent, "parent_id": "r0000000000000000deadbeef"}},
    )
    assert orphan.status_code == 422
    assert orphan.json()["error"]["field"] == "intent.parent_id"
    assert _size(clients) == size
    assert (
        clients["agent"]
        .post("/v1/policies/evaluate", json={"intent": {**intent, "principal": "agent:other-bot"}})
        .status_code
        == 403
    )
    auditing = clients["auditor"].post(
        "/v1/policies/evaluate", json={"intent": {**intent, "principal": "agent:other-bot"}}
    )
    assert auditing.status_code == 200
