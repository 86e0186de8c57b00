"""The health page's recent-window statistics (server/metrics.py ``RecentDecisions``)."""

from __future__ import annotations

import pytest

from clearance._internal.server.metrics import LatencyStats, RecentDecisions


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_windows_count_only_their_own_seconds() -> None:
    clock = Clock()
    recent = RecentDecisions(horizon=900, clock=clock)
    clock.now += 600  # the server has been up 10 minutes
    recent.record("allow", 0.002)
    clock.now += 200
    recent.record("deny", 0.004)
    recent.record("allow", None)
    clock.now += 30
    last_minute = recent.window(60)
    assert last_minute.by_effect == {"deny": 1, "allow": 1}
    assert last_minute.seconds == 60
    assert last_minute.per_second == pytest.approx(2 / 60)
    assert last_minute.deny_rate == pytest.approx(0.5)
    assert recent.window(120).count == 2
    assert recent.window(300).count == 3
    assert recent.window(900).by_effect == {"allow": 2, "deny": 1}
    assert recent.window(900).seconds == 830  # since start: younger than the window


def test_a_reused_slot_forgets_the_decisions_of_its_previous_lap() -> None:
    clock = Clock()
    recent = RecentDecisions(horizon=60, clock=clock)
    for _ in range(5):
        recent.record("deny", None)
    clock.now += 60  # the same slot of the ring, one lap later
    recent.record("allow", None)
    assert recent.window(60).by_effect == {"allow": 1}
    clock.now += 61
    assert recent.window(60).count == 0
    assert recent.window(60).deny_rate is None


def test_latency_percentiles_cover_the_window_and_the_newest_samples() -> None:
    clock = Clock()
    recent = RecentDecisions(samples=100, clock=clock)
    recent.record("allow", 9.0)  # older than the window below
    clock.now += 400
    for ms in range(1, 101):
        recent.record("allow", ms / 1000)
    stats = recent.latency(300)
    assert stats.samples == 100
    assert stats.p50 == pytest.approx(0.050)
    assert stats.p99 == pytest.approx(0.099)
    for _ in range(10):
        recent.record("allow", 1.0)  # pushes the ten oldest samples out
    assert recent.latency(300).samples == 100
    assert recent.latency(300).p50 == pytest.approx(0.060)
    clock.now += 301
    assert recent.latency(300) == LatencyStats(0, None, None)


def test_a_window_longer_than_the_ring_is_refused() -> None:
    recent = RecentDecisions(horizon=60, clock=Clock())
    with pytest.raises(ValueError, match="1 to 60"):
        recent.window(61)
