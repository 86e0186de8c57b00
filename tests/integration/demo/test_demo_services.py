"""The demo's child processes: a start that fails half-way leaves nothing running.

One real `clearance serve` is started here (the tool service is made to fail), so the
clean-up path runs against a real process, not a double.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from clearance._demo.services import (
    DemoServices,
    exits_on_signals,
    find_tool_service,
    port_is_open,
)
from clearance._internal.home import init_home
from clearance.errors import Error


def test_the_example_tool_service_is_found_in_the_checkout() -> None:
    found = find_tool_service()
    assert found is not None
    assert (found / "app.py").is_file()
    assert (found / "payments.yaml").is_file()


def test_a_failed_start_stops_the_gateway_it_started(tmp_path: Path) -> None:
    home = init_home(tmp_path / "home", now=time.time())
    broken = tmp_path / "no-tool-here"
    broken.mkdir()
    services = DemoServices(home, broken, "clk_not_a_real_key")
    with pytest.raises(Error) as caught, services:
        raise AssertionError("the tool service cannot start: the block must not run")
    assert "tool service" in caught.value.diagnostics()
    gateway = services.gateway
    assert gateway is not None
    assert gateway.popen.returncode is not None  # stopped and reaped
    assert not port_is_open(gateway.url)
    assert services.tool is None
    # The home is free again: the gateway released its serve lock when it stopped.
    from clearance._internal.server.lock import ServeLock

    ServeLock.acquire(home.path).release()


def test_sigterm_becomes_system_exit_so_finally_blocks_run() -> None:
    ran = []
    with pytest.raises(SystemExit) as caught, exits_on_signals():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler interrupts this
        finally:
            ran.append("finally")
    assert caught.value.code == 128 + signal.SIGTERM
    assert ran == ["finally"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
