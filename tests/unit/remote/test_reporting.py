"""Outcome delivery: retries, the on-disk spool, draining it, and the HTTP transport."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from clearance._internal.remote.outcomes import Delivery, OutcomeSpool, delivery_of, key_fingerprint
from clearance._internal.remote.reporter import AsyncReporter, SyncReporter
from clearance._internal.remote.settings import RemoteSettings
from clearance._internal.remote.transport import AsyncTransport, SyncTransport
from clearance._internal.remote.wire import Reply, Unreachable
from clearance.errors import InputError, OutcomeUnrecorded

URL = "http://gateway.test"
KEY = "clk_test_key"
FAST = RemoteSettings(report_attempts=3, report_backoff=0.0, max_retry_after=0.5)
REPORT = {"grant": "a.b.c", "intent": {"action": "x"}, "status": "ok"}


class Script:
    """A gateway double: answers each request with the next planned status (or fails)."""

    def __init__(self, *plan: int | str) -> None:
        self.plan = list(plan)
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        step = self.plan.pop(0) if len(self.plan) > 1 else self.plan[0]
        if step == "down":
            raise httpx.ConnectError("refused", request=request)
        if step == "429":
            return httpx.Response(
                429, headers={"Retry-After": "0"}, json={"error": {"code": "rate_limited"}}
            )
        if step == "429-long":
            return httpx.Response(429, headers={"Retry-After": "60"})
        if step == "text":
            return httpx.Response(200, text="not json")
        assert isinstance(step, int)
        return httpx.Response(step, json={"error": {"code": "x", "message": f"status {step}"}})


def sync_reporter(script: Script, spool: OutcomeSpool | None) -> SyncReporter:
    http = SyncTransport(
        URL, KEY, FAST, transport=httpx.MockTransport(script), sleep=lambda s: None
    )
    return SyncReporter(http, spool, FAST)


def test_delivery_classes() -> None:
    assert delivery_of(None) is Delivery.TRANSIENT
    assert delivery_of(Reply(503, None)) is Delivery.TRANSIENT
    assert delivery_of(Reply(429, None)) is Delivery.TRANSIENT
    assert delivery_of(Reply(201, None)) is Delivery.DONE
    assert delivery_of(Reply(409, None)) is Delivery.DONE
    assert delivery_of(Reply(403, None)) is Delivery.REFUSED


def test_transient_failures_are_retried_then_delivered(tmp_path: Path) -> None:
    script = Script(503, "down", 201)
    reporter = sync_reporter(script, OutcomeSpool(tmp_path, KEY))
    reporter.deliver(REPORT, "r1", "ok")
    assert len(script.seen) == 3
    assert script.seen[0].headers["authorization"] == f"Bearer {KEY}"
    assert json.loads(script.seen[0].content) == REPORT
    assert reporter.spool is not None
    assert reporter.spool.depth() == 0


def test_a_409_counts_as_delivered(tmp_path: Path) -> None:
    reporter = sync_reporter(Script(409), OutcomeSpool(tmp_path, KEY))
    reporter.deliver(REPORT, "r1", "ok")
    assert reporter.spool is not None
    assert reporter.spool.depth() == 0


def test_after_the_retries_the_outcome_is_spooled_and_sent_later(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    script = Script(503)
    spool = OutcomeSpool(tmp_path, KEY)
    reporter = sync_reporter(script, spool)
    with caplog.at_level(logging.WARNING, logger="clearance.client"):
        reporter.deliver(REPORT, "r1", "ok")
    assert "spooled" in caplog.text
    assert spool.depth() == 1
    assert reporter.pending
    assert (tmp_path / key_fingerprint(KEY)).is_dir()
    # The next delivery that succeeds sends the spooled one too.
    script.plan = [201]
    reporter.deliver({**REPORT, "status": "error"}, "r2", "error")
    assert spool.depth() == 0
    assert not reporter.pending
    statuses = [json.loads(r.content)["status"] for r in script.seen[3:]]
    assert statuses == ["error", "ok"]


def test_a_refused_report_raises_outcome_unrecorded(tmp_path: Path) -> None:
    reporter = sync_reporter(Script(422), OutcomeSpool(tmp_path, KEY))
    with pytest.raises(OutcomeUnrecorded, match="refused the report") as caught:
        reporter.deliver(REPORT, "r1", "ok")
    assert caught.value.request_id == "r1"


def test_without_a_spool_an_undelivered_outcome_raises(caplog: pytest.LogCaptureFixture) -> None:
    reporter = sync_reporter(Script("down"), None)
    with (
        caplog.at_level(logging.ERROR, logger="clearance.client"),
        pytest.raises(OutcomeUnrecorded, match="no spool_dir"),
    ):
        reporter.deliver(REPORT, "r1", "ok")
    assert "UNRECORDED" in caplog.text
    assert reporter.flush() == 0


def test_a_spool_that_cannot_be_written_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    reporter = sync_reporter(Script(503), OutcomeSpool(blocker, KEY))
    with pytest.raises(OutcomeUnrecorded, match="spool failed"):
        reporter.deliver(REPORT, "r1", "ok")


def test_draining_delivers_quarantines_refusals_and_stops_on_transient(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = OutcomeSpool(tmp_path, KEY)
    for n in range(3):
        spool.put({**REPORT, "n": n}, f"r{n}")
    answers: list[Reply | None] = [Reply(201, None), Reply(422, None), None]

    def deliver(report: Any) -> Reply | None:
        return answers.pop(0)

    with caplog.at_level(logging.WARNING, logger="clearance.spool"):
        report = spool.drain(deliver)
    assert (report.already_logged, len(report.quarantined)) == (1, 1)
    assert report.error is not None
    assert "refused it" in report.quarantined[0].reason
    assert spool.depth() == 1


def test_a_spool_file_sealed_under_another_key_is_quarantined(tmp_path: Path) -> None:
    mine = OutcomeSpool(tmp_path, KEY)
    path = mine.put(REPORT, "r1")
    theirs = OutcomeSpool(tmp_path, "clk_other")
    assert theirs.directory != mine.directory  # one subdirectory per key
    document = json.loads(path.read_bytes())
    document["entry"]["report"]["status"] = "error"  # an edited file
    path.write_text(json.dumps(document))
    report = mine.drain(lambda r: pytest.fail("must not be sent"))
    assert [q.reason for q in report.quarantined] == [
        "its seal does not verify: it was not written by this home's gate"
    ]


def test_async_reporter_retries_spools_and_flushes(tmp_path: Path) -> None:
    script = Script(503)
    spool = OutcomeSpool(tmp_path, KEY)

    async def main() -> None:
        http = AsyncTransport(URL, KEY, FAST, transport=httpx.MockTransport(script))
        reporter = AsyncReporter(http, spool, FAST)
        await reporter.deliver(REPORT, "r1", "ok")
        assert spool.depth() == 1
        assert reporter.pending
        script.plan = [422]
        with pytest.raises(OutcomeUnrecorded):
            await reporter.deliver(REPORT, "r2", "ok")
        script.plan = [201]
        assert await reporter.flush() == 1
        assert not reporter.pending
        await http.aclose()

    anyio.run(main)
    assert spool.depth() == 0


def test_async_reporter_without_spool_raises() -> None:
    async def main() -> None:
        http = AsyncTransport(URL, KEY, FAST, transport=httpx.MockTransport(Script("down")))
        reporter = AsyncReporter(http, None, FAST)
        with pytest.raises(OutcomeUnrecorded):
            await reporter.deliver(REPORT, "r1", "ok")
        assert await reporter.flush() == 0
        await http.aclose()

    anyio.run(main)


# -- the transport --------------------------------------------------------------------


def transport(script: Callable[[httpx.Request], httpx.Response]) -> SyncTransport:
    return SyncTransport(
        URL, KEY, FAST, transport=httpx.MockTransport(script), sleep=lambda s: None
    )


def test_a_429_is_retried_after_retry_after() -> None:
    script = Script("429", "429", 200)
    assert transport(script).call("GET", "/x").status == 200
    assert len(script.seen) == 3


def test_a_429_with_a_long_retry_after_is_returned_at_once() -> None:
    script = Script("429-long")
    assert transport(script).call("GET", "/x").status == 429
    assert len(script.seen) == 1


def test_429_retries_are_bounded() -> None:
    script = Script("429")
    assert transport(script).call("GET", "/x").status == 429
    assert len(script.seen) == FAST.rate_limit_retries + 1


def test_failures_below_http_are_unreachable_and_bodies_may_be_text() -> None:
    with pytest.raises(Unreachable, match="ConnectError"):
        transport(Script("down")).call("GET", "/x")
    assert transport(Script("text")).call("GET", "/x").body is None


def test_a_body_that_is_not_json_is_an_input_error() -> None:
    with pytest.raises(InputError, match="not JSON"):
        transport(Script(200)).call("POST", "/x", json={"when": object()})


def test_async_transport_retries_429_and_maps_failures() -> None:
    async def main() -> None:
        script = Script("429", 200)
        http = AsyncTransport(URL, KEY, FAST, transport=httpx.MockTransport(script))
        assert (await http.call("GET", "/x")).status == 200
        script.plan = ["down"]
        with pytest.raises(Unreachable):
            await http.call("GET", "/x")
        await http.aclose()

    anyio.run(main)
