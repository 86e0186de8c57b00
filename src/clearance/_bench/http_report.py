"""``clearance bench --http``: the runtime API's load numbers, printed as JSON or tables.

The measuring is :mod:`clearance._bench.http`; this module only runs it and shows it.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from rich.console import Console
from rich.table import Table


def run_http_bench(
    *, requests: int, clients: int, as_json: bool, console: Console
) -> dict[str, Any]:
    """``clearance bench --http``: :func:`clearance._bench.http.http_benchmark`, printed."""
    from clearance._bench.http import http_benchmark

    if not as_json:
        Console(stderr=True, highlight=False).print(
            f"[dim]… clearance serve on loopback: {requests} authorizations, then {requests} "
            f"outcome reports, {clients} concurrent clients[/]"
        )
    results = http_benchmark(requests=requests, clients=clients)
    if as_json:
        sys.stdout.write(json.dumps(results, sort_keys=True) + "\n")
        return results
    table = Table(
        title=f"Runtime API on loopback ({clients} clients, SQLite, durable)", title_justify="left"
    )
    for name in ("endpoint", "requests/s", "p50 ms", "p99 ms", "errors", "busy cores", "target"):
        table.add_column(name, justify="left" if name in ("endpoint", "target") else "right")
    for label, prefix, target in (
        ("POST /v1/authorize", "http_auth", "≥ 2000/s, p99 ≤ 25 ms, 0 errors"),
        ("POST /v1/executions", "http_exec", ""),
        ("GET /healthz (the HTTP stack alone)", "http_floor", "the ceiling"),
    ):
        table.add_row(
            label,
            f"{results[f'{prefix}_per_s']:.0f}",
            f"{results[f'{prefix}_p50_ms']:.2f}",
            f"{results[f'{prefix}_p99_ms']:.2f}",
            str(results[f"{prefix}_errors"]),
            _cores(results[f"{prefix}_busy_cores"]),
            target,
        )
    console.print(table)
    return results


def _cores(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def run_postgres_bench(
    *, requests: int, clients: int, database: str, as_json: bool, console: Console
) -> dict[str, Any]:
    """``clearance bench --http --database URL``: SQLite, then PostgreSQL with one and
    two gateways (:func:`clearance._bench.http.postgres_benchmark`), printed."""
    from clearance._bench.http import postgres_benchmark

    if not as_json:
        Console(stderr=True, highlight=False).print(
            f"[dim]… {requests} authorizations and outcome reports, {clients} clients: SQLite, "
            "then PostgreSQL with 1 and 2 gateway processes[/]"
        )
    results = postgres_benchmark(requests=requests, clients=clients, database=database)
    if as_json:
        sys.stdout.write(json.dumps(results, sort_keys=True) + "\n")
        return results
    table = Table(
        title=f"POST /v1/authorize on loopback ({clients} clients, durable)", title_justify="left"
    )
    for name in ("store", "gateways", "authorizations/s", "p50 ms", "p99 ms", "busy cores"):
        table.add_column(name, justify="left" if name == "store" else "right")
    table.add_row(
        "SQLite",
        "1",
        f"{results['sqlite_auth_per_s']:.0f}",
        "",
        f"{results['sqlite_auth_p99_ms']}",
        "",
    )
    for gateways in (1, 2):
        table.add_row(
            "PostgreSQL",
            str(gateways),
            f"{results[f'pg_auth_per_s_{gateways}']:.0f}",
            f"{results[f'pg_auth_p50_ms_{gateways}']:.2f}",
            f"{results[f'pg_auth_p99_ms_{gateways}']:.2f}",
            _cores(results[f"pg_auth_busy_cores_{gateways}"]),
        )
    console.print(table)
    bound = results["pg_scaling_bound_2"]
    console.print(
        f"2 gateways / 1 gateway: {results['pg_scaling_2_over_1']}× (target ≥ 1.6×, p99 ≤ 25 ms); "
        f"errors: {results['http_errors']}"
        + (
            f"\nat most {bound}× on this machine: {os.cpu_count()} cores at the CPU time two "
            f"gateways took per authorization ({results['pg_cpu_us_per_auth_2']} µs of every "
            f"process; one gateway: {results['pg_cpu_us_per_auth_1']} µs)"
            if bound is not None
            else ""
        )
    )
    return results
