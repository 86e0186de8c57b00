"""``clearance bench --http``: the runtime API under concurrent load, on loopback.

Starts a real ``clearance serve`` process on a temporary home (SQLite, ``durable``;
the per-key rate limit raised out of the way, access log off), creates an ``agent``
API key, then drives it with ``clients`` concurrent
keep-alive HTTP/1.1 connections, each sending its next request as soon as the
previous answer arrived (a closed loop, as ``wrk`` does):

* **authorize** — ``POST /v1/authorize`` with an intent the example bundle allows;
  every answer must be 200 with a grant, anything else counts as an error;
* **executions** — ``POST /v1/executions`` reporting an outcome for each grant
  collected in the first phase (one report per grant); 201 is success;
* **floor** — ``GET /healthz`` (no key, no body, no gate) the same number of times:
  what the HTTP stack alone sustains here, the ceiling any endpoint can reach.

The load generator writes pre-encoded requests on raw asyncio streams and parses
only the status line and ``Content-Length``: it costs the server's two cores as
little as a client can (an httpx client would spend more CPU per request than the
server's own routing). Latency is from the request's first byte written to its
last response byte read; p50/p99 are over every request of the run, throughput is
requests over the wall time of the phase. Wall-clock time is read here, at the
outermost layer.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clearance._internal.home import init_home

_PRINCIPAL = "agent:ops-bot"
_INTENT: dict[str, Any] = {
    "action": "read_file",
    "resource": "file:reports",
    "args": {"path": "reports/q1.txt"},
    "purpose": "benchmark",
}


@dataclass
class Phase:
    """What one phase of the load measured."""

    latencies_ns: list[int] = field(default_factory=list)
    errors: int = 0
    wall_s: float = 0.0
    bodies: list[bytes] = field(default_factory=list)

    def summary(self, prefix: str) -> dict[str, float | int]:
        """``<prefix>_per_s``, ``_p50_ms``, ``_p99_ms`` and ``<prefix>_errors``."""
        ordered = sorted(self.latencies_ns)
        done = len(ordered)
        return {
            f"{prefix}_per_s": round(done / self.wall_s, 1) if self.wall_s else 0.0,
            f"{prefix}_p50_ms": round(statistics.median(ordered) / 1e6, 2) if done else 0.0,
            f"{prefix}_p99_ms": round(ordered[min(done - 1, int(done * 0.99))] / 1e6, 2)
            if done
            else 0.0,
            f"{prefix}_errors": self.errors,
        }


def _request(path: str, api_key: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {api_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode("ascii") + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length) if length else b""
    return status, body


async def _drive(
    port: int, requests: list[bytes], clients: int, ok_status: int, keep: bool
) -> Phase:
    """Send ``requests`` over ``clients`` connections in a closed loop; time each one."""
    phase = Phase()
    queue = iter(requests)

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for request in queue:
                started = time.perf_counter_ns()
                writer.write(request)
                try:
                    status, body = await _read_response(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    phase.errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    continue
                phase.latencies_ns.append(time.perf_counter_ns() - started)
                if status != ok_status:
                    phase.errors += 1
                elif keep:
                    phase.bodies.append(body)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    phase.wall_s = time.perf_counter() - started
    return phase


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"clearance serve exited with status {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
                conn.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if conn.recv(16).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("clearance serve did not become ready within 30 s")


def _create_key(home: Path) -> str:
    from clearance._internal.apikeys import ApiKeyStore, api_keys_path

    store = ApiKeyStore.open(api_keys_path(home))
    try:
        secret, _ = store.create("bench", scopes=("agent",), principal=_PRINCIPAL)
    finally:
        store.close()
    return secret


def http_benchmark(*, requests: int, clients: int) -> dict[str, Any]:
    """Run both phases against a fresh ``clearance serve``; the flat result keys."""
    with tempfile.TemporaryDirectory(prefix="clearance-bench-http-") as tmp:
        home = Path(tmp) / "home"
        init_home(home, now=time.time())
        # The per-key rate limit (100/s by default) would measure itself: raise it.
        settings = home / "clearance.yaml"
        settings.write_text(
            settings.read_text(encoding="utf-8")
            + "\nserver:\n  rate_limit:\n    per_second: 1000000\n    burst: 1000000\n",
            encoding="utf-8",
        )
        api_key = _create_key(home)
        port = _free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "clearance",
                "serve",
                "--home",
                str(home),
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            _wait_ready(port, server)
            body = json.dumps(_INTENT).encode()
            warmup = [_request("/v1/authorize", api_key, body)] * min(200, requests)
            asyncio.run(_drive(port, warmup, clients, 200, keep=False))
            authorize = asyncio.run(
                _drive(
                    port, [_request("/v1/authorize", api_key, body)] * requests, clients, 200, True
                )
            )
            reports = []
            for answer in authorize.bodies:
                granted = json.loads(answer)
                report = {
                    "grant": granted["grant"],
                    "intent": granted["intent"],
                    "status": "ok",
                    "result_digest": None,
                    "duration_us": 1,
                    "executor": "bench",
                }
                reports.append(_request("/v1/executions", api_key, json.dumps(report).encode()))
            executions = asyncio.run(_drive(port, reports, clients, 201, keep=False))
            health = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            floor = asyncio.run(_drive(port, [health] * requests, clients, 200, keep=False))
        finally:
            server.terminate()
            try:
                _, stderr = server.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                _, stderr = server.communicate()
        if server.returncode not in (0, -15):
            raise RuntimeError(
                f"clearance serve ended with status {server.returncode}: {stderr.decode()[-2000:]}"
            )
    return {
        "http_clients": clients,
        "http_requests": requests,
        **authorize.summary("http_auth"),
        **executions.summary("http_exec"),
        **floor.summary("http_floor"),
        "http_errors": authorize.errors + executions.errors,
    }
