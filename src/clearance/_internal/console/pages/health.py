"""The health dashboard: ``/console/health`` and its live data, ``/console/api/health``.

What an on-call engineer looks at first: the ledger's size, whether the latest signed
checkpoint verifies and how old it is, decisions per second and the deny rate over the
last 1, 5 and 15 minutes, p50 and p99 decision latency of the last 5 minutes, the spool
depth, the store's readiness checks (those of ``/readyz``), the key ids that grants
and checkpoints verify with, and how many approvals wait.

Invariants:

* Public read-only unless ``server.console.public_health`` is false; then a login with
  any scope is needed (the HTML page redirects to the login page, the JSON answers 401).
* The snapshot holds only what the public endpoints already publish (``/metrics``,
  ``/readyz``, the JWKS and the log's vkey and checkpoint) and aggregate counts: never
  a principal, an API key's name or id, an intent or a trace.
* The gauges are read from the server's Prometheus registry in one collection, so the
  page shows the numbers ``/metrics`` would show at that moment. Rates and latencies
  come from :class:`~clearance._internal.server.metrics.RecentDecisions`, fed where the
  server counts decisions.
* The checkpoint "verifies" when the newest signed checkpoint's signature checks out
  under the log's own verifier key, its origin is the log's, and the store's tree of
  that size has exactly its root hash (the store can still prove what it signed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Request
from starlette.responses import JSONResponse, Response

from clearance._internal.console.web import LoginRequired, Viewer, public_health, render, viewer
from clearance._internal.ledger.checkpoint import NoteVerifier, parse_checkpoint
from clearance._internal.server.metrics import ServerMetrics
from clearance._internal.server.readiness import readiness
from clearance._internal.server.state import ServerState, server_state
from clearance.errors import Error

router = APIRouter(include_in_schema=False)

WINDOW_MINUTES: Final = (1, 5, 15)
"""The recent windows decision rates are shown over."""
LATENCY_MINUTES: Final = 5
"""The window of the latency percentiles."""
REFRESH_MS: Final = 3000
"""How often the page asks for a new snapshot."""
_GAUGES: Final = (
    "clearance_ledger_entries",
    "clearance_checkpoint_age_seconds",
    "clearance_spool_depth",
    "clearance_approvals_pending",
)
_EFFECTS: Final = ("allow", "deny", "approval_required")


def health_viewer(request: Request) -> Viewer:
    """The viewer, who must be logged in when the health page is not public."""
    seen = viewer(request)
    if not seen.logged_in and not public_health(server_state(request)):
        raise LoginRequired
    return seen


def _gauges(metrics: ServerMetrics) -> dict[str, float | None]:
    """The scrape-time gauges, from one collection of the registry (None: unreadable)."""
    found: dict[str, float | None] = dict.fromkeys(_GAUGES)
    for family in metrics.registry.collect():
        if family.name in found:
            for sample in family.samples:
                found[family.name] = sample.value
    return found


def _whole(value: float | None) -> int | None:
    return None if value is None else int(value)


def checkpoint_status(state: ServerState) -> dict[str, Any]:
    """The newest checkpoint's size and whether it verifies (see the module docstring)."""
    ledger = state.gate.ledger
    latest = ledger.latest_checkpoint()
    if latest is None:
        return {"size": None, "verifies": False, "problem": "the log has no signed checkpoint"}
    try:
        checkpoint = parse_checkpoint(
            latest.note, NoteVerifier.from_vkey(ledger.vkey), origin=ledger.origin
        )
        size = ledger.size()
        if checkpoint.size > size:
            problem: str | None = (
                f"the checkpoint signs {checkpoint.size} entries; the store holds {size}"
            )
        elif ledger.root(checkpoint.size) != checkpoint.root:
            problem = f"the store's tree of {checkpoint.size} entries has another root"
        else:
            problem = None
    except Error as exc:
        return {"size": latest.size, "verifies": False, "problem": str(exc)}
    return {"size": checkpoint.size, "verifies": problem is None, "problem": problem}


def key_ids(state: ServerState) -> dict[str, Any]:
    """The grant key ids the JWKS publishes (which one signs) and the log key's id."""
    ledger = state.gate.ledger
    log_key = NoteVerifier.from_vkey(ledger.vkey)
    grant: list[dict[str, Any]] = []
    problem = None
    ring = state.ring
    if ring is None:
        problem = "the grant key ring is unavailable; no grant verifies"
    else:
        now = state.clock()
        try:
            state.grant_keys.refresh(now)
            document = ring.jwks(now, keep_retired=lambda kid: bool(ledger.find("key", kid)))
            active = ring.active_kid
            grant = [
                {"kid": str(key["kid"]), "active": key["kid"] == active} for key in document["keys"]
            ]
        except Error as exc:
            problem = f"the grant key ring is unavailable: {exc}"
    return {
        "grant": grant,
        "grant_problem": problem,
        "log": {"name": log_key.name, "key_id": log_key.key_id.hex()},
    }


def _windows(metrics: ServerMetrics) -> list[dict[str, Any]]:
    rows = []
    for minutes in WINDOW_MINUTES:
        stats = metrics.recent.window(minutes * 60)
        rows.append(
            {
                "minutes": minutes,
                "covers_seconds": round(stats.seconds, 1),
                "count": stats.count,
                **{effect: stats.by_effect.get(effect, 0) for effect in _EFFECTS},
                "per_second": stats.per_second,
                "deny_rate": stats.deny_rate,
            }
        )
    return rows


def _milliseconds(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def snapshot(state: ServerState) -> dict[str, Any]:
    """Everything the dashboard shows, JSON-ready (the shape of ``/console/api/health``)."""
    metrics = state.metrics
    gauges = _gauges(metrics)
    checks = readiness(state.gate, state.home)
    latency = metrics.recent.latency(LATENCY_MINUTES * 60)
    return {
        "at": state.clock(),
        "ledger": {"size": _whole(gauges["clearance_ledger_entries"])},
        "checkpoint": {
            **checkpoint_status(state),
            "age_seconds": gauges["clearance_checkpoint_age_seconds"],
        },
        "decisions": _windows(metrics),
        "latency": {
            "minutes": LATENCY_MINUTES,
            "samples": latency.samples,
            "p50_ms": _milliseconds(latency.p50),
            "p99_ms": _milliseconds(latency.p99),
        },
        "spool_depth": _whole(gauges["clearance_spool_depth"]),
        "approvals_pending": _whole(gauges["clearance_approvals_pending"]),
        "store": {"ready": all(v == "ok" for v in checks.values()), "checks": checks},
        "keys": key_ids(state),
    }


def show(value: Any, kind: str) -> str:
    """``value`` as the page shows it; health.js formats alike (keep the two in step)."""
    if value is None:
        return "–"
    if kind == "rate":
        return f"{value:.2f}/s"
    if kind == "percent":
        return f"{math.floor(value * 100 + 0.5)}%"  # as JavaScript's Math.round
    if kind == "ms":
        return f"{value:.1f} ms"
    if kind == "age":
        seconds = math.floor(value)
        if seconds < 120:
            return f"{seconds} s ago"
        if seconds < 7200:
            return f"{seconds // 60} min ago"
        return f"{seconds // 3600} h ago"
    return str(value)


def _field(document: Mapping[str, Any], path: str) -> Any:
    value: Any = document
    for part in path.split("."):
        value = value[int(part)] if isinstance(value, list) else value.get(part)
        if value is None:
            return None
    return value


@router.get("/console/health")
def health_page(request: Request, seen: Annotated[Viewer, Depends(health_viewer)]) -> Response:
    """The dashboard, rendered with a first snapshot; health.js keeps it fresh."""
    data = snapshot(server_state(request))

    def field(path: str, kind: str = "int") -> str:
        return show(_field(data, path), kind)

    return render(
        request,
        "health.html",
        seen,
        {"health": data, "field": field, "refresh_ms": REFRESH_MS},
    )


@router.get("/console/api/health")
def health_data(request: Request, seen: Annotated[Viewer, Depends(health_viewer)]) -> Response:
    """The snapshot as JSON (the shape :func:`snapshot` documents)."""
    return JSONResponse(snapshot(server_state(request)))
