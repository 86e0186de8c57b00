"""Prometheus metrics of one server (``GET /metrics``), in a registry of its own.

Counters and histograms are updated on the request path; the gauges (ledger size,
latest checkpoint age, spool depth, approvals pending) are read when scraped, so a
scrape always shows the state of that moment and costs nothing between scrapes.

Invariants: label values are bounded. Routes are the route templates (never raw
paths); actions are labelled only for at most :data:`MAX_ACTIONS` distinct names, the
rest as ``other`` (an agent inventing action names cannot grow the registry).
A gauge that cannot be read is left out of that scrape and logged, never invented.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("clearance.server")

MAX_ACTIONS: Final[int] = 256
_LATENCY_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


@dataclass(frozen=True, slots=True)
class Probes:
    """How the scrape-time gauges are read; each may raise (the gauge is then left out)."""

    ledger_size: Callable[[], int]
    checkpoint_age: Callable[[], float | None]
    spool_depth: Callable[[], int]
    approvals_pending: Callable[[], int]


class _Gauges(Collector):
    def __init__(self, probes: Probes) -> None:
        self._probes = probes

    def collect(self) -> Iterator[GaugeMetricFamily]:
        specs: tuple[tuple[str, str, Callable[[], float | None]], ...] = (
            ("clearance_ledger_entries", "Entries in the ledger.", self._probes.ledger_size),
            (
                "clearance_checkpoint_age_seconds",
                "Seconds since the latest signed checkpoint was anchored.",
                self._probes.checkpoint_age,
            ),
            (
                "clearance_spool_depth",
                "Outcomes waiting in the spool for the ledger.",
                self._probes.spool_depth,
            ),
            (
                "clearance_approvals_pending",
                "Approvals waiting for a decision.",
                self._probes.approvals_pending,
            ),
        )
        for name, text, probe in specs:
            try:
                value = probe()
            except Exception as exc:  # a gauge must not break the scrape
                log.warning("metric %s unavailable: %s", name, exc)
                continue
            if value is not None:
                yield GaugeMetricFamily(name, text, value=float(value))


class ServerMetrics:
    """The metrics of one app (see the module docstring)."""

    def __init__(self, probes: Probes) -> None:
        """Register every metric in a new registry; ``probes`` feed the gauges."""
        self.registry = CollectorRegistry(auto_describe=True)
        self.decisions = Counter(
            "clearance_decisions",
            "Decisions made over HTTP, by effect and action.",
            ["effect", "action"],
            registry=self.registry,
        )
        self.decision_seconds = Histogram(
            "clearance_decision_seconds",
            "Time to decide and log an intent (POST /v1/authorize), in seconds.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "clearance_http_request_seconds",
            "Time to answer an HTTP request, by method, route template and status.",
            ["method", "route", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rejected_grants = Counter(
            "clearance_rejected_grants",
            "Grants refused when presented with an outcome, and refusals tool services reported.",
            registry=self.registry,
        )
        self.registry.register(_Gauges(probes))
        self._actions: set[str] = set()
        self._lock = threading.Lock()

    def decided(self, effect: str, action: str, seconds: float | None) -> None:
        """Count one decision (and its latency, when it was timed)."""
        self.decisions.labels(effect=effect, action=self._action_label(action)).inc()
        if seconds is not None:
            self.decision_seconds.observe(seconds)

    def _action_label(self, action: str) -> str:
        if action in self._actions:
            return action
        with self._lock:
            if len(self._actions) < MAX_ACTIONS:
                self._actions.add(action)
                return action
        return "other"

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


class RequestTimer:
    """Pure ASGI middleware: observes every HTTP request's latency by route template."""

    def __init__(self, app: ASGIApp, metrics: Callable[[], ServerMetrics | None]) -> None:
        """Wrap ``app``; ``metrics`` returns the app's metrics (None before start-up)."""
        self.app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Time the request from its first byte handled to the app returning."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            metrics = self._metrics()
            if metrics is not None:
                route = scope.get("route")
                template = getattr(route, "path", None) or "unmatched"
                metrics.request_seconds.labels(
                    method=scope.get("method", ""), route=template, status=str(status)
                ).observe(time.perf_counter() - started)
