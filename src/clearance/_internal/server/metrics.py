"""Prometheus metrics of one server (``GET /metrics``), in a registry of its own.

Counters and histograms are updated on the request path; the gauges (ledger size,
latest checkpoint age, spool depth, approvals pending) are read when scraped, so a
scrape always shows the state of that moment and costs nothing between scrapes.
:class:`RecentDecisions` keeps, beside the cumulative counters, the decisions of the
last minutes per second (for rates over recent windows, which a scrape-less reader
such as the console's health page cannot derive from counters since start).

Invariants: label values are bounded. Routes are the route templates (never raw
paths); actions are labelled only for at most :data:`MAX_ACTIONS` distinct names, the
rest as ``other`` (an agent inventing action names cannot grow the registry).
A gauge that cannot be read is left out of that scrape and logged, never invented.
"""

from __future__ import annotations

import gc
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("clearance.server")

MAX_ACTIONS: Final[int] = 256
RECENT_SECONDS: Final[int] = 900
"""How far back :class:`RecentDecisions` counts decisions (15 minutes)."""
LATENCY_SAMPLES: Final[int] = 10_000
"""How many of the newest decision latencies :class:`RecentDecisions` keeps."""
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
            (
                "clearance_gc_frozen_objects",
                "Objects clearance serve moved out of the garbage collector's reach at start.",
                gc.get_freeze_count,
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


@dataclass(frozen=True, slots=True)
class WindowStats:
    """Decisions of the last ``seconds`` (or since start, when the server is younger)."""

    seconds: float
    """How many seconds the counts cover: the window, or the uptime when that is shorter."""
    by_effect: dict[str, int]

    @property
    def count(self) -> int:
        return sum(self.by_effect.values())

    @property
    def per_second(self) -> float:
        return self.count / self.seconds

    @property
    def deny_rate(self) -> float | None:
        """Denials among the decisions (None when there were none)."""
        return self.by_effect.get("deny", 0) / self.count if self.count else None


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Decision latencies of a recent window: p50 and p99 in seconds (None: no sample)."""

    samples: int
    p50: float | None
    p99: float | None


def _rank(ordered: list[float], quantile: float) -> float:
    """The nearest-rank ``quantile`` of the non-empty sorted ``ordered``."""
    return ordered[max(0, math.ceil(quantile * len(ordered)) - 1)]


class RecentDecisions:
    """Decisions of the last :data:`RECENT_SECONDS`, for the console's health page.

    Invariants: one slot per second of a fixed ring (memory does not grow with the
    rate); a slot whose second has passed out of the ring is reset before reuse, so a
    window never counts a decision older than its length. Latencies keep at most
    :data:`LATENCY_SAMPLES` of the newest decisions (at a high rate the percentiles
    cover those, not the whole window). ``clock`` is monotonic seconds (injected).
    """

    def __init__(
        self,
        *,
        horizon: int = RECENT_SECONDS,
        samples: int = LATENCY_SAMPLES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._horizon = horizon
        self._clock = clock
        self._started = clock()
        self._seconds = [-1] * horizon
        self._counts: list[dict[str, int]] = [{} for _ in range(horizon)]
        self._latencies: deque[tuple[float, float]] = deque(maxlen=samples)
        self._lock = threading.Lock()

    def record(self, effect: str, seconds: float | None) -> None:
        """Count one decision now (and its latency, when it was timed)."""
        now = self._clock()
        second = int(now)
        slot = second % self._horizon
        with self._lock:
            if self._seconds[slot] != second:
                self._seconds[slot] = second
                self._counts[slot] = {}
            counts = self._counts[slot]
            counts[effect] = counts.get(effect, 0) + 1
            if seconds is not None:
                self._latencies.append((now, seconds))

    def window(self, seconds: int) -> WindowStats:
        """Counts by effect over the last ``seconds`` (at most the ring's horizon)."""
        if not 1 <= seconds <= self._horizon:
            raise ValueError(f"a window is 1 to {self._horizon} seconds")
        now = self._clock()
        newest = int(now)
        totals: dict[str, int] = {}
        with self._lock:
            for stamp, counts in zip(self._seconds, self._counts, strict=True):
                if newest - seconds < stamp <= newest:
                    for effect, n in counts.items():
                        totals[effect] = totals.get(effect, 0) + n
        covered = min(float(seconds), max(1.0, now - self._started))
        return WindowStats(covered, totals)

    def latency(self, seconds: int) -> LatencyStats:
        """p50 and p99 of the timed decisions of the last ``seconds``."""
        since = self._clock() - seconds
        with self._lock:
            recent = sorted(value for at, value in self._latencies if at > since)
        if not recent:
            return LatencyStats(0, None, None)
        return LatencyStats(len(recent), _rank(recent, 0.50), _rank(recent, 0.99))


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
        self.recent = RecentDecisions()
        """The last minutes of decisions (the console's health page reads them)."""
        self._actions: set[str] = set()
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, str], Counter] = {}
        """The labelled children of ``decisions`` already looked up (``labels()`` takes a
        lock and builds a key on every call; this is one dict read on the hot path)."""

    def decided(self, effect: str, action: str, seconds: float | None) -> None:
        """Count one decision (and its latency, when it was timed)."""
        counter = self._counters.get((effect, action))
        if counter is None:
            label = self._action_label(action)
            counter = self.decisions.labels(effect=effect, action=label)
            if label == action:  # "other" stays a lookup, so the map stays bounded
                self._counters[(effect, action)] = counter
        counter.inc()
        if seconds is not None:
            self.decision_seconds.observe(seconds)
        self.recent.record(effect, seconds)

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
