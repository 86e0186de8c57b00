"""Limits, errors, health and metrics against a real server: 413 before parsing, 429 with
Retry-After, 400/422 shapes, readiness, and a client that disconnects mid-request."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import time

import httpx

from tests.integration.server.support import Served

SERVER_SETTINGS = {"server": {"max_body": 2048, "rate_limit": {"per_second": 2, "burst": 8}}}


def _raw(served: Served, data: bytes, *, read: bool = True, reset: bool = False) -> bytes:
    """Send ``data`` on a fresh connection; return what came back (nothing if not ``read``)."""
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall(data)
        if reset:  # close with RST, as a crashed client does
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return b""
        if not read:
            return b""
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def _headers(served: Served, key: str, length: int | None, *, chunked: bool = False) -> bytes:
    lines = [
        "POST /v1/authorize HTTP/1.1",
        f"Host: 127.0.0.1:{served.port}",
        f"Authorization: Bearer {served.keys[key]}",
        "Content-Type: application/json",
        "Connection: close",
    ]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def test_a_body_over_the_limit_is_413_before_it_is_read(
    server: Served, clients: dict[str, httpx.Client]
) -> None:
    big = {"action": "read_file", "args": {"path": "x" * 3000}}
    response = clients["agent"].post("/v1/authorize", json=big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    # Declared too large: refused on the header alone, without sending the body.
    declared = _raw(server, _headers(server, "agent", 10**9))
    assert declared.startswith(b"HTTP/1.1 413")
    # Chunked (no Content-Length): cut off once the bytes exceed the limit.
    chunk = b"x" * 1000
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(3)) + b"0\r\n\r\n"
    chunked = _raw(server, _headers(server, "agent", None, chunked=True) + body)
    assert chunked.startswith(b"HTTP/1.1 413")
    assert b'"payload_too_large"' in chunked


def test_the_rate_limit_is_per_key_with_retry_after(clients: dict[str, httpx.Client]) -> None:
    statuses = [clients["auditor"].get("/v1/policies").status_code for _ in range(12)]
    assert 429 in statuses
    assert statuses[0] == 200
    limited = clients["auditor"].get("/v1/policies")
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    wait = int(limited.headers["Retry-After"])
    assert 1 <= wait <= 2
    assert clients["admin"].get("/v1/policies").status_code == 200  # other keys are unaffected
    time.sleep(wait)
    assert clients["auditor"].get("/v1/policies").status_code == 200


def test_bodies_that_are_not_json_objects_are_400(clients: dict[str, httpx.Client]) -> None:
    agent = clients["agent"]
    for raw in (
        b"{",
        b"[1, 2]",
        b'"text"',
        b'{"action": "a", "action": "b"}',
        b'{"action": NaN}',
        b"",
    ):
        response = agent.post(
            "/v1/authorize", content=raw, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400, (raw, response.text)
        assert response.json()["error"]["code"] == "bad_request"


def test_every_error_is_json_with_a_stable_code(clients: dict[str, httpx.Client]) -> None:
    cases: list[tuple[httpx.Response, int, str]] = [
        (clients["anonymous"].get("/v1/nowhere"), 404, "not_found"),
        (clients["anonymous"].delete("/healthz"), 405, "method_not_allowed"),
        (clients["anonymous"].post("/v1/authorize", json={"action": "a"}), 401, "unauthenticated"),
        (
            httpx.post(
                f"{clients['anonymous'].base_url}/v1/authorize",
                json={"action": "a"},
                headers={"Authorization": "Bearer clk_0000000000000001_" + "A" * 43},
            ),
            401,
            "unauthenticated",
        ),
        (clients["auditor"].post("/v1/traces", json={}), 403, "forbidden"),
        (clients["agent"].get("/v1/log/entries", params={"limit": 0}), 403, "forbidden"),
    ]
    for response, status, code in cases:
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/json"
        assert response.json()["error"]["code"] == code
        assert "Traceback" not in response.text
    assert cases[2][0].headers["WWW-Authenticate"] == "Bearer"


def _decided(clients: dict[str, httpx.Client], start: int) -> dict[str, int]:
    """How many decisions since ledger index ``start`` were for each ``args.path``."""
    page = clients["admin"].get("/v1/log/entries", params={"start": start, "limit": 100}).json()
    counts: dict[str, int] = {}
    for item in page["entries"]:
        entry = item["entry"]
        if entry["type"] == "decision":
            path = str(entry["intent"]["args"].get("path"))
            counts[path] = counts.get(path, 0) + 1
    return counts


def test_a_client_that_disconnects_loses_nothing(
    server: Served, clients: dict[str, httpx.Client]
) -> None:
    start = clients["admin"].get("/v1/log/entries", params={"limit": 1}).json()["size"]
    # Half a request, then gone: nothing was asked, nothing is decided, the server lives.
    body = b'{"action": "read_file", "args": {"path": "half"}}'
    _raw(server, _headers(server, "agent", len(body)) + body[:20], read=False)
    # A whole request, then gone before the answer (closed, and reset): still decided and logged.
    for marker, reset in (("gone", False), ("reset", True)):
        whole = f'{{"action": "read_file", "args": {{"path": "{marker}"}}}}'.encode()
        _raw(server, _headers(server, "agent", len(whole)) + whole, read=False, reset=reset)
    deadline = time.monotonic() + 10
    decided = _decided(clients, start)
    while time.monotonic() < deadline and not {"gone", "reset"} <= set(decided):
        time.sleep(0.5)  # the admin key's rate limit is 2 a second in this module
        decided = _decided(clients, start)
    assert decided == {"gone": 1, "reset": 1}
    assert clients["anonymous"].get("/healthz").json() == {"status": "ok"}
    after = clients["agent"].post(
        "/v1/authorize", json={"action": "read_file", "args": {"path": "after"}}
    )
    assert after.status_code == 200


def test_readiness_names_what_is_wrong_and_decisions_fail_closed(
    server: Served, clients: dict[str, httpx.Client]
) -> None:
    assert clients["anonymous"].get("/readyz").json()["status"] == "ready"
    keys = server.home / "keys" / "grant"
    aside = server.home / "grant-keys-aside"
    shutil.move(keys, aside)
    try:
        ready = clients["anonymous"].get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["status"] == "unavailable"
        assert ready.json()["checks"]["signing_key"] != "ok"
        assert ready.json()["checks"]["ledger"] == "ok"
        time.sleep(1.1)  # the gate looks at its key ring once a second
        denied = clients["orchestrator"].post(
            "/v1/authorize", json={"action": "read_file", "args": {"path": "nokey"}}
        )
        assert denied.status_code == 503, denied.text
        assert denied.json()["error"]["code"] == "unavailable"
        assert "grant" not in denied.json()
    finally:
        shutil.move(aside, keys)
    # A ring that failed is read again only once its jwks.json changes (GrantKeyRing.refresh
    # compares the file's identity), so the restore is made visible as a rewrite would be.
    os.utime(keys / "jwks.json")
    time.sleep(1.1)
    assert clients["anonymous"].get("/readyz").status_code == 200
    assert (
        clients["orchestrator"]
        .post("/v1/authorize", json={"action": "read_file", "args": {"path": "key"}})
        .status_code
        == 200
    )


def test_metrics_expose_decisions_latency_and_the_log(clients: dict[str, httpx.Client]) -> None:
    clients["orchestrator"].post(
        "/v1/authorize", json={"action": "read_file", "args": {"path": "m"}}
    )
    clients["orchestrator"].post(
        "/v1/authorize", json={"action": "delete_file", "args": {"path": "m"}}
    )
    text = clients["anonymous"].get("/metrics").text
    for needle in (
        'clearance_decisions_total{action="read_file",effect="allow"}',
        'clearance_decisions_total{action="delete_file",effect="deny"}',
        "clearance_decision_seconds_bucket",
        'clearance_http_request_seconds_bucket{le="0.005",method="POST",route="/v1/authorize"',
        "clearance_ledger_entries ",
        "clearance_checkpoint_age_seconds ",
        "clearance_spool_depth 0.0",
        "clearance_approvals_pending ",
        "clearance_rejected_grants_total ",
    ):
        assert needle in text, needle


def test_the_server_settles_its_heap_before_serving(clients: dict[str, httpx.Client]) -> None:
    """The objects alive when the server starts (the app, its models, the bundle) are
    frozen out of the collector's full passes, which otherwise stalled every request in
    flight for ~100 ms every second or two under load (clearance._cli.serve.settle_heap)."""
    text = clients["anonymous"].get("/metrics").text
    frozen = next(
        float(line.split()[1])
        for line in text.splitlines()
        if line.startswith("clearance_gc_frozen_objects ")
    )
    assert frozen > 20_000
