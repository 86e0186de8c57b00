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

Each phase also reports ``<prefix>_busy_cores``: how many of the machine's cores were
busy on average during it (every process: the gateways, the database, the load
generator; from ``/proc/stat``, absent elsewhere), and the PostgreSQL runs turn that into
the machine's CPU time per authorization, ``pg_cpu_us_per_auth_1`` and ``_2``. Nothing
on one machine goes past ``os.cpu_count()`` busy cores, so two gateways can at most
reach ``cores / pg_cpu_us_per_auth_2`` authorizations per second, whatever the
scheduling: ``pg_scaling_bound_2`` is that over one gateway's throughput, the most the
scaling ratio could be on this machine at the CPU cost the two gateways measured.

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
import contextlib
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from clearance._internal.home import DATABASE_ENV, init_home

_PRINCIPAL = "agent:ops-bot"
_INTENT: dict[str, Any] = {
    "action": "read_file",
    "resource": "file:reports",
    "args": {"path": "reports/q1.txt"},
    "purpose": "benchmark",
}


def machine_jiffies() -> tuple[int, int] | None:
    """``(busy, total)`` CPU time of the whole machine so far, in clock ticks (``/proc/stat``),
    or None where there is no such file."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(value) for value in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + fields[4]  # idle and iowait
    return sum(fields) - idle, sum(fields)


def busy_cores(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """Cores busy on average between two :func:`machine_jiffies` readings."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    share = (after[0] - before[0]) / (after[1] - before[1])
    return round(share * (os.cpu_count() or 1), 2)


@dataclass
class Phase:
    """What one phase of the load measured."""

    latencies_ns: list[int] = field(default_factory=list)
    errors: int = 0
    wall_s: float = 0.0
    bodies: list[bytes] = field(default_factory=list)
    busy_cores: float | None = None

    def summary(self, prefix: str) -> dict[str, float | int | None]:
        """``<prefix>_per_s``, ``_p50_ms``, ``_p99_ms``, ``_busy_cores`` and ``_errors``."""
        ordered = sorted(self.latencies_ns)
        done = len(ordered)
        return {
            f"{prefix}_busy_cores": self.busy_cores,
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
    ports: list[int], requests: list[bytes], clients: int, ok_status: int, keep: bool
) -> Phase:
    """Send ``requests`` over ``clients`` connections in a closed loop; time each one.

    Connection ``i`` goes to ``ports[i % len(ports)]`` (gateways behind a round-robin
    balancer that keeps connections where they landed)."""
    phase = Phase()
    queue = iter(requests)

    async def client(port: int) -> None:
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

    started, cpu = time.perf_counter(), machine_jiffies()
    await asyncio.gather(*(client(ports[n % len(ports)]) for n in range(clients)))
    phase.wall_s = time.perf_counter() - started
    phase.busy_cores = busy_cores(cpu, machine_jiffies())
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
    from clearance._internal.home import Home
    from clearance._internal.wiring import open_api_keys

    store = open_api_keys(Home.load(home))
    try:
        secret, _ = store.create("bench", scopes=("agent",), principal=_PRINCIPAL)
    finally:
        store.close()
    return secret


def _start_gateway(home: Path, database: str | None) -> tuple[int, subprocess.Popen[bytes]]:
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop(DATABASE_ENV, None)
    if database is not None:
        env[DATABASE_ENV] = database
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "clearance", "serve", "--home", str(home)),
            *("--port", str(port), "--log-level", "warning", "--no-access-log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    return port, server


def _stop_gateway(server: subprocess.Popen[bytes]) -> None:
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


def http_benchmark(
    *, requests: int, clients: int, database: str | None = None, gateways: int = 1
) -> dict[str, Any]:
    """Run both phases against fresh ``clearance serve`` processes; the flat result keys.

    With ``database`` (a PostgreSQL URL) every gateway process uses it, each with its own
    copy of the home (the same keys and settings, as gateways on several machines have);
    the load is spread over ``gateways`` processes by connection.
    """
    if gateways > 1 and database is None:
        raise ValueError("several gateways need a shared PostgreSQL database")
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
        previous = os.environ.pop(DATABASE_ENV, None)
        if database is not None:
            os.environ[DATABASE_ENV] = database
        try:
            api_key = _create_key(home)
        finally:
            os.environ.pop(DATABASE_ENV, None)
            if previous is not None:
                os.environ[DATABASE_ENV] = previous
        homes = [home]
        for n in range(1, gateways):
            copy = Path(tmp) / f"home-{n}"
            shutil.copytree(home, copy)
            homes.append(copy)
        started = [_start_gateway(h, database) for h in homes]
        ports = [port for port, _ in started]
        try:
            for port, server in started:
                _wait_ready(port, server)
            body = json.dumps(_INTENT).encode()
            warmup = [_request("/v1/authorize", api_key, body)] * min(200, requests)
            asyncio.run(_drive(ports, warmup, clients, 200, keep=False))
            authorize = asyncio.run(
                _drive(
                    ports, [_request("/v1/authorize", api_key, body)] * requests, clients, 200, True
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
            executions = asyncio.run(_drive(ports, reports, clients, 201, keep=False))
            health = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            floor = asyncio.run(_drive(ports, [health] * requests, clients, 200, keep=False))
        finally:
            for _, server in started:
                _stop_gateway(server)
    return {
        "http_clients": clients,
        "http_requests": requests,
        **authorize.summary("http_auth"),
        **executions.summary("http_exec"),
        **floor.summary("http_floor"),
        "http_errors": authorize.errors + executions.errors,
    }


@contextlib.contextmanager
def scratch_schema(database: str) -> Iterator[str]:
    """A new schema in ``database`` for one benchmark run, dropped afterwards: the URL
    whose ``search_path`` is that schema (the bench never writes into existing tables)."""
    from clearance._internal.postgres import connect

    schema = f"clearance_bench_{secrets.token_hex(4)}"
    with connect(database, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in database else "?"
    try:
        yield f"{database}{separator}options={quote(f'-csearch_path={schema}', safe='')}"
    finally:
        with connect(database, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def postgres_benchmark(*, requests: int, clients: int, database: str) -> dict[str, Any]:
    """The same load on SQLite, on PostgreSQL with one gateway, and with two (each in a
    fresh schema of ``database``): ``pg_auth_per_s_1``, ``pg_auth_per_s_2``,
    ``pg_auth_p99_ms_2`` and the rest, plus ``pg_scaling_2_over_1`` and, where the
    machine's CPU time can be read, ``pg_cpu_us_per_auth_*`` and ``pg_scaling_bound_2``
    (see the module docstring)."""
    results: dict[str, Any] = {"http_clients": clients, "http_requests": requests}
    sqlite = http_benchmark(requests=requests, clients=clients)
    results["sqlite_auth_per_s"] = sqlite["http_auth_per_s"]
    results["sqlite_auth_p99_ms"] = sqlite["http_auth_p99_ms"]
    errors = sqlite["http_errors"]
    for gateways in (1, 2):
        with scratch_schema(database) as url:
            run = http_benchmark(
                requests=requests, clients=clients, database=url, gateways=gateways
            )
        for key in ("per_s", "p50_ms", "p99_ms", "busy_cores"):
            results[f"pg_auth_{key}_{gateways}"] = run[f"http_auth_{key}"]
            results[f"pg_exec_{key}_{gateways}"] = run[f"http_exec_{key}"]
        errors += run["http_errors"]
    one, two = results["pg_auth_per_s_1"], results["pg_auth_per_s_2"]
    results["pg_scaling_2_over_1"] = round(two / one, 2) if one else 0.0
    for gateways in (1, 2):
        used, rate = results[f"pg_auth_busy_cores_{gateways}"], results[f"pg_auth_per_s_{gateways}"]
        results[f"pg_cpu_us_per_auth_{gateways}"] = (
            round(used / rate * 1e6) if used and rate else None
        )
    cost = results["pg_cpu_us_per_auth_2"]
    results["pg_scaling_bound_2"] = (
        round((os.cpu_count() or 1) * 1e6 / cost / one, 2) if cost and one else None
    )
    results["http_errors"] = errors
    return results
