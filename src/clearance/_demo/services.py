"""The demo's servers: ``clearance serve`` for the demo home and the example tool service.

Both run as child processes on loopback, on ports the OS picks, with their output in
``HOME/demo/logs/``. The tool service is ``examples/tool_service/app.py`` of the source
checkout (it is an example, not part of the installed package).

Invariants (no child outlives the demo):

* :class:`DemoServices` is a context manager; leaving it, however (an error, Ctrl-C,
  SIGTERM or SIGHUP, which :func:`exits_on_signals` turns into ``SystemExit`` so that
  ``finally`` blocks run), stops the tool service and then the gateway: SIGTERM, a
  grace period, then SIGKILL, each child by its own pid only.
* A start that fails half-way stops what it started before raising.
* On Linux each child also asks the kernel to send it SIGTERM when the demo process
  dies (``PR_SET_PDEATHSIG``), which covers even a SIGKILL of the demo. Children run in
  their own session, so a Ctrl-C reaches the demo alone and the demo stops them in
  order (the tool first, so its last reports reach a gateway still up).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Final

import httpx

from clearance._internal.home import Home
from clearance.errors import Error

START_TIMEOUT: Final = 30.0
"""Seconds a child has to answer its health check."""
STOP_GRACE: Final = 15.0
"""Seconds a child has to exit after SIGTERM before it is killed."""
_PORT_ATTEMPTS: Final = 3
_PR_SET_PDEATHSIG: Final = 1


def find_tool_service() -> Path | None:
    """``examples/tool_service`` of the source checkout this package runs from, if any."""
    import clearance

    folder = Path(clearance.__file__).resolve().parents[2] / "examples" / "tool_service"
    if (folder / "app.py").is_file() and (folder / "payments.yaml").is_file():
        return folder
    return None


def free_port() -> int:
    """A loopback TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_open(url: str) -> bool:
    """Whether something accepts TCP connections at ``url``'s host and port."""
    parsed = httpx.URL(url)
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((parsed.host, parsed.port or 80)) == 0


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux for SIGTERM when the demo dies; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return arm


@dataclass
class Child:
    """One server process, known by its own pid only."""

    name: str
    url: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.popen.poll() is None

    def stop(self) -> None:
        """SIGTERM, wait up to :data:`STOP_GRACE`, then SIGKILL; idempotent."""
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=STOP_GRACE)

    def tail(self, chars: int = 1500) -> str:
        """The end of the child's log, for an error message."""
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""


def _spawn(name: str, args: list[str], env: dict[str, str], port: int, log: Path) -> Child:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"--- {name} starting at {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
        out.flush()
        popen = subprocess.Popen(
            args,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=log.parent,
            start_new_session=True,
            # Only prctl() runs between fork and exec (no lock, no allocation).
            preexec_fn=_die_with_parent(),
        )
    return Child(name, f"http://127.0.0.1:{port}", popen, log)


def _wait_ready(child: Child, path: str) -> None:
    """Poll ``path`` until 200; Error (after stopping the child) if it exits or times out."""
    deadline = time.monotonic() + START_TIMEOUT
    with httpx.Client(timeout=2.0) as http:
        while time.monotonic() < deadline:
            if not child.alive():
                raise Error(f"{child.name} exited while starting:\n{child.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                # Still alive after answering: the answer came from this child, not from
                # another process that took the port while this one failed to bind it.
                if http.get(child.url + path).status_code == 200 and child.alive():
                    return
            time.sleep(0.1)
    child.stop()
    raise Error(f"{child.name} did not answer {path} within {START_TIMEOUT:g}s:\n{child.tail()}")


def _start(
    name: str, args_for: Callable[[int], list[str]], env: dict[str, str], *, log: Path, ready: str
) -> Child:
    """Start a child on a free port, retrying on another port if that one was taken."""
    attempt = 1
    while True:
        port = free_port()
        child = _spawn(name, args_for(port), env, port, log)
        try:
            _wait_ready(child, ready)
            return child
        except Error:
            child.stop()
            if "already in use" not in child.tail(400) or attempt >= _PORT_ATTEMPTS:
                raise
            attempt += 1
        except BaseException:
            child.stop()
            raise


def _environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CLEARANCE_HOME"}
    env.update(extra or {})
    return env


class DemoServices:
    """The gateway and the tool service of one demo run (a context manager; see the module)."""

    def __init__(
        self, home: Home, tool_dir: Path, tool_key: str, *, demo_page: bool = False
    ) -> None:
        """Nothing runs until ``with`` (or :meth:`start`). ``demo_page``: the gateway
        offers the console's runtime demo page (``clearance serve --demo``; a demo home
        only)."""
        self.home = home
        self.demo_page = demo_page
        self.tool_dir = tool_dir
        self._tool_key = tool_key
        self.gateway: Child | None = None
        self.tool: Child | None = None
        self.logs = home.path / "demo" / "logs"
        self.tool_state = home.path / "demo" / "tool-state"

    @property
    def gateway_url(self) -> str:
        """The gateway's base URL (once started)."""
        if self.gateway is None:
            raise RuntimeError("the gateway is not running")
        return self.gateway.url

    @property
    def tool_url(self) -> str:
        """The tool service's base URL (once started)."""
        if self.tool is None:
            raise RuntimeError("the tool service is not running")
        return self.tool.url

    def start(self) -> None:
        """Start the gateway, then the tool service; on any failure stop both and raise."""
        try:
            self.gateway = _start(
                "clearance serve",
                lambda port: [
                    sys.executable,
                    "-m",
                    "clearance",
                    "serve",
                    "--home",
                    str(self.home.path),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--log-level",
                    "warning",
                    "--no-access-log",
                    *(["--demo"] if self.demo_page else []),
                ],
                _environment(),
                log=self.logs / "gateway.log",
                ready="/readyz",
            )
            settings = self.home.settings
            env = _environment(
                {
                    "CLEARANCE_GATEWAY_URL": self.gateway.url,
                    "CLEARANCE_ISSUER": settings.issuer,
                    "CLEARANCE_AUDIENCE": settings.audience,
                    "TOOL_API_KEY": self._tool_key,
                    "TOOL_STATE_DIR": str(self.tool_state),
                }
            )
            self.tool = _start(
                "the example tool service",
                lambda port: [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "app:app",
                    "--app-dir",
                    str(self.tool_dir),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--log-level",
                    "warning",
                    "--no-access-log",
                ],
                env,
                log=self.logs / "tool.log",
                ready="/healthz",
            )
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the tool service, then the gateway (idempotent; never raises for a child
        that already exited)."""
        for child in (self.tool, self.gateway):
            if child is not None:
                child.stop()

    def check_alive(self) -> None:
        """Error naming a child that exited on its own."""
        for child in (self.gateway, self.tool):
            if child is not None and not child.alive():
                raise Error(f"{child.name} stopped unexpectedly:\n{child.tail()}")

    def wait_until_interrupted(self) -> None:
        """Block until Ctrl-C (returns normally) or until a child dies (Error)."""
        try:
            while True:
                self.check_alive()
                time.sleep(0.5)
        except KeyboardInterrupt:
            return

    def __enter__(self) -> DemoServices:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def exits_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise SystemExit, so ``finally`` blocks run.

    (Python's default for both is to die at once, which would leave the children
    running.) Outside the main thread signals cannot be handled; then nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    wanted = [signal.SIGTERM, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])]
    previous = {sig: signal.signal(sig, _raise_exit) for sig in wanted}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
