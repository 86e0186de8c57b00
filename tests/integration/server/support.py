"""A real ``clearance serve`` for the server tests: a home, API keys, a subprocess, clients.

Each test module starts one server (module-scoped fixture) on a free loopback port and
talks to it with httpx over real sockets. Keys are created with the home's key store
before the server starts (logged to the home's ledger, as ``clearance api-keys`` does).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from clearance._internal.home import Home, init_home
from clearance._internal.wiring import open_api_keys, open_ledger

KEYS: dict[str, tuple[tuple[str, ...], str]] = {
    "agent": (("agent",), "agent:ops-bot"),
    "orchestrator": (("orchestrator",), "app:orchestrator"),
    "approver": (("approver",), "user:bob"),
    "auditor": (("auditor",), "user:carol"),
    "admin": (("admin",), "user:alice"),
    "other-agent": (("agent",), "agent:other-bot"),
}
"""name -> (scopes, principal) of the keys every test server gets."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def make_home(path: Path, settings: Mapping[str, Any] | None = None) -> Path:
    """A new home at ``path`` with the example bundle, relaxed durability and ``settings``."""
    init_home(path, now=time.time())
    settings_file = path / "clearance.yaml"
    document = yaml.safe_load(settings_file.read_text(encoding="utf-8"))
    document["durability"] = "relaxed"
    for key, value in (settings or {}).items():
        document[key] = value
    settings_file.write_text(yaml.safe_dump(document), encoding="utf-8")
    Home.load(path)  # the settings must load
    return path


def create_keys(
    home: Path, specs: Mapping[str, tuple[tuple[str, ...], str]], *, expires_in: float | None = None
) -> dict[str, str]:
    """Create the keys ``specs`` (name -> scopes, principal); returns name -> token."""
    tokens: dict[str, str] = {}
    located = Home.load(home)
    with (
        open_ledger(located) as ledger,
        open_api_keys(located, ledger=ledger) as store,
    ):
        for name, (scopes, principal) in specs.items():
            token, _ = store.create(name, scopes=scopes, principal=principal, expires_in=expires_in)
            tokens[name] = token
    return tokens


def clearance_command(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m clearance ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "clearance", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@dataclass
class Served:
    """A running ``clearance serve`` and the keys made for it."""

    home: Path
    port: int
    keys: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.home / "serve.log"

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until it is ready."""
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "clearance",
                "serve",
                "--home",
                str(self.home),
                "--port",
                str(self.port),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            stdout=log,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"clearance serve exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"clearance serve did not become ready:\n{self.log()}")

    def stop(self) -> int:
        """Stop the server with SIGTERM (as a process manager would); returns its status."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return process.returncode if process is not None else 0
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError(f"clearance serve ignored SIGTERM:\n{self.log()}") from None

    def restart(self) -> None:
        """Stop and start again on the same port and home."""
        self.stop()
        self.start()

    def log(self) -> str:
        """What the server wrote so far (its last 4000 characters)."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    def client(self, key: str | None = None, **headers: str) -> httpx.Client:
        """An httpx client for the server; ``key`` names one of :attr:`keys` (or is a token)."""
        token = self.keys.get(key, key) if key is not None else None
        all_headers = dict(headers)
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(base_url=self.url, headers=all_headers, timeout=30.0)


def serve(
    home_dir: Path,
    settings: Mapping[str, Any] | None = None,
    keys: Mapping[str, tuple[tuple[str, ...], str]] = KEYS,
) -> Served:
    """A started server over a new home at ``home_dir`` with ``keys``."""
    home = make_home(home_dir, settings)
    served = Served(home=home, port=free_port(), keys=create_keys(home, keys))
    served.start()
    return served


def env_without_coverage() -> dict[str, str]:
    """The environment, for children whose coverage is not wanted."""
    return {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
