"""Every endpoint × every scope, no key, a wrong key, an expired key and a revoked key,
against a real server (docs/http-api.md "Conventions", docs/design.md §6)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.server.support import (
    KEYS,
    Served,
    clearance_command,
    create_keys,
    free_port,
    make_home,
)

SCOPES = ("agent", "orchestrator", "approver", "auditor", "admin")
NOBODY = ("no-key", "wrong-key", "expired-key", "revoked-key")
ALL = frozenset(SCOPES)
NONE = "a0000000000000000deadbeef"
BROKEN_BUNDLE = {"files": {"main.yaml": "version: 1\nrules: [oops\n"}}
REFUSAL = {"status": "rejected", "reason": "no grant presented", "action": "read_file"}

# (method, path template, body, scopes that pass the scope check; None: public)
ENDPOINTS: list[tuple[str, str, Any, frozenset[str] | None]] = [
    ("POST", "/v1/authorize", {"action": "read_file", "args": {"path": "a"}},
     frozenset({"agent", "orchestrator", "admin"})),
    ("POST", "/v1/traces", {"mandate": {"text": "t"}}, frozenset({"orchestrator", "admin"})),
    ("GET", "/v1/traces/{trace}", None, frozenset({"agent", "orchestrator", "auditor", "admin"})),
    ("POST", "/v1/executions", REFUSAL, frozenset({"agent", "orchestrator", "admin"})),
    ("GET", "/v1/requests/{request}", None,
     frozenset({"agent", "orchestrator", "auditor", "admin"})),
    ("GET", "/v1/receipts/{request}", None,
     frozenset({"agent", "orchestrator", "auditor", "admin"})),
    ("GET", "/v1/log/entries", None, frozenset({"auditor", "admin"})),
    ("GET", "/v1/approvals", None, frozenset({"approver", "auditor", "admin"})),
    ("GET", "/v1/approvals/{approval}", None, ALL),
    ("POST", f"/v1/approvals/{NONE}", {"decision": "approve", "reason": "r"},
     frozenset({"approver", "admin"})),
    ("POST", f"/v1/approvals/{NONE}/grant", None, frozenset({"agent", "orchestrator", "admin"})),
    ("GET", "/v1/policies", None, frozenset({"auditor", "admin"})),
    ("PUT", "/v1/policies", BROKEN_BUNDLE, frozenset({"admin"})),
    ("POST", "/v1/policies/evaluate", {"intent": {"action": "read_file", "args": {"path": "a"}}},
     frozenset({"agent", "orchestrator", "auditor", "admin"})),
    ("GET", "/healthz", None, None),
    ("GET", "/readyz", None, None),
    ("GET", "/metrics", None, None),
    ("GET", "/.well-known/jwks.json", None, None),
    ("GET", "/v1/log/checkpoint", None, None),
    ("GET", "/v1/log/vkey", None, None),
    ("GET", "/v1/log/proofs/inclusion?index=0&size=1", None, None),
    ("GET", "/v1/log/proofs/consistency?first=1&second=2", None, None),
]  # fmt: skip


@pytest.fixture(scope="module")
def matrix_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A server whose keys include an expired and a revoked one, and ids to read."""
    home = make_home(tmp_path_factory.mktemp("scopes") / "home")
    keys = create_keys(home, {name: KEYS[name] for name in SCOPES})
    keys |= create_keys(home, {"expired-key": (("admin",), "user:old")}, expires_in=0.5)
    keys |= create_keys(home, {"revoked-key": (("admin",), "user:gone")})
    keys |= create_keys(home, {"revoked-later": (("admin",), "user:leaving")})
    revoked = clearance_command("api-keys", "revoke", "revoked-key", "--home", str(home))
    assert revoked.returncode == 0, revoked.stderr
    keys["wrong-key"] = "clk_0123456789abcdef_" + "A" * 43
    served = Served(home=home, port=free_port(), keys=keys)
    served.start()
    time.sleep(0.5)  # the expired key is past its 0.5 s now, whatever the start-up took
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture(scope="module")
def ids(matrix_server: Served) -> dict[str, str]:
    """A trace, a request and an approval of the agent's principal, to read."""
    with (
        matrix_server.client("orchestrator") as orchestrator,
        matrix_server.client("agent") as agent,
    ):
        trace = orchestrator.post(
            "/v1/traces",
            json={"mandate": {"text": "pay acme", "bounds": {"spend_cap": 5000}},
                  "principal": "agent:ops-bot"},
        ).json()["trace_id"]  # fmt: skip
        request = agent.post(
            "/v1/authorize", json={"action": "read_file", "args": {"path": "a"}, "trace_id": trace}
        ).json()["request_id"]
        approval = agent.post(
            "/v1/authorize",
            json={"action": "pay_invoice", "trace_id": trace,
                  "args": {"to": "acme-supplies", "amount": 900, "currency": "EUR"}},
        ).json()["approval_id"]  # fmt: skip
    return {"trace": trace, "request": request, "approval": approval}


@pytest.fixture(scope="module")
def matrix_clients(matrix_server: Served) -> Iterator[dict[str, httpx.Client]]:
    """One keep-alive client per credential (``no-key`` sends none)."""
    made = {who: matrix_server.client(None if who == "no-key" else who) for who in SCOPES + NOBODY}
    try:
        yield made
    finally:
        for client in made.values():
            client.close()


@pytest.mark.parametrize("who", SCOPES + NOBODY)
@pytest.mark.parametrize(
    ("method", "path", "body", "allowed"),
    ENDPOINTS,
    ids=[f"{m} {p.split('?')[0]}" for m, p, _, _ in ENDPOINTS],
)
def test_scope_matrix(
    matrix_clients: dict[str, httpx.Client],
    ids: dict[str, str],
    who: str,
    method: str,
    path: str,
    body: Any,
    allowed: frozenset[str] | None,
) -> None:
    response = matrix_clients[who].request(method, path.format(**ids), json=body)
    assert response.status_code < 500, response.text
    if allowed is None:
        assert response.status_code == 200, response.text  # public, whatever the key
    elif who in NOBODY:
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "unauthenticated"
        assert response.headers["WWW-Authenticate"] == "Bearer"
    elif who in allowed:
        assert response.status_code not in (401, 403), response.text
    else:
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "forbidden"


def test_a_key_revoked_while_the_server_runs_is_refused_within_a_second(
    matrix_server: Served,
) -> None:
    with matrix_server.client("revoked-later") as client:
        assert client.get("/v1/policies").status_code == 200
        revoked = clearance_command(
            "api-keys", "revoke", "revoked-later", "--home", str(matrix_server.home)
        )
        assert revoked.returncode == 0, revoked.stderr
        done = time.monotonic()
        while client.get("/v1/policies").status_code == 200:
            assert time.monotonic() - done < 1.5, "a revoked key still worked after 1.5 s"
            time.sleep(0.05)
        assert client.get("/v1/policies").status_code == 401
        assert client.get("/healthz").status_code == 200
    # The revocation was appended by another process (the CLI); the server's view of the
    # log takes in another writer's entries at its next append, proving they extend it.
    with matrix_server.client("agent") as agent:
        agent.post("/v1/authorize", json={"action": "read_file", "args": {"path": "sync"}})
    entries = matrix_server.client("auditor")
    with entries:
        size = entries.get("/v1/log/entries", params={"limit": 1}).json()["size"]
        tail = entries.get("/v1/log/entries", params={"start": max(0, size - 20)}).json()
    revocations = [
        e["entry"] for e in tail["entries"]
        if e["entry"]["type"] == "apikey" and e["entry"].get("name") == "revoked-later"
    ]  # fmt: skip
    assert [e["event"] for e in revocations][-1:] == ["revoked"]
    assert not any("clk_" in str(e) for e in tail["entries"])  # no secret in the log


def test_a_second_server_on_the_same_home_refuses_to_start(matrix_server: Served) -> None:
    second = clearance_command(
        "serve", "--home", str(matrix_server.home), "--port", str(free_port())
    )
    assert second.returncode == 2
    assert "another `clearance serve`" in second.stderr
    assert "Traceback" not in second.stderr
    with matrix_server.client() as client:
        assert client.get("/healthz").status_code == 200


def test_sigterm_stops_the_server_cleanly_and_the_log_verifies(matrix_server: Served) -> None:
    with matrix_server.client("agent") as agent:
        assert (
            agent.post(
                "/v1/authorize", json={"action": "read_file", "args": {"path": "last"}}
            ).status_code
            == 200
        )
    # A graceful stop on SIGTERM exits with status 0 (and runs atexit hooks).
    assert matrix_server.stop() == 0
    # The app's shutdown ran: it released the serve lock after closing the gate.
    assert not (matrix_server.home / "serve.lock").read_text().strip()
    verified = clearance_command("log", "verify", "--home", str(matrix_server.home))
    assert verified.returncode == 0, verified.stdout + verified.stderr
