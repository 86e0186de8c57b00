"""Real processes on loopback: a `clearance serve` gateway and the example tool service.

Helpers, not fixtures, build them, so each test module decides how many processes it
pays for (one gateway and one tool service per module is the rule).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from clearance import init_home

REPO = Path(__file__).resolve().parents[3]
TOOL_SERVICE_DIR = REPO / "examples" / "tool_service"
AGENT = "agent:ops-bot"
APPROVER = "user:alice"
TOOL = "service:payments"
START_TIMEOUT = 60.0


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CLEARANCE_HOME"}
    env.update(extra or {})
    return env


class Process:
    """One server process: started, waited for, stopped by its own pid only."""

    def __init__(self, args: list[str], *, env: dict[str, str], url: str, log: Path) -> None:
        self.args, self.env, self.url, self.log = args, env, url, log
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                self.args, env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.args[:4]} exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.args[:4]} did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)


def create_key(home: Path, name: str, scopes: list[str], principal: str) -> str:
    """An API key made with the real CLI (`clearance api-keys create --json`)."""
    args = [sys.executable, "-m", "clearance", "api-keys", "create", name, "--home", str(home)]
    for scope in scopes:
        args += ["--scope", scope]
    args += ["--principal", principal, "--json"]
    done = subprocess.run(args, capture_output=True, text=True, env=_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["key"])


@dataclass
class Gateway:
    """A `clearance serve` process over its own home, with the keys tests use."""

    home: Path
    port: int
    process: Process
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def settings(self) -> dict[str, Any]:
        loaded = yaml.safe_load((self.home / "clearance.yaml").read_text())
        assert isinstance(loaded, dict)
        return loaded

    def entries(self) -> list[dict[str, Any]]:
        """Every ledger entry, read over the API with the auditor key."""
        found: list[dict[str, Any]] = []
        headers = {"Authorization": f"Bearer {self.keys['auditor']}"}
        while True:
            page = httpx.get(
                f"{self.url}/v1/log/entries",
                params={"start": len(found), "limit": 1000},
                headers=headers,
                timeout=10,
            ).json()
            found += [item["entry"] for item in page["entries"]]
            if len(found) >= page["size"] or not page["entries"]:
                return found

    def executions(self, **match: Any) -> list[dict[str, Any]]:
        """Execution entries whose members equal ``match``."""
        return [
            e
            for e in self.entries()
            if e.get("type") == "execution" and all(e.get(k) == v for k, v in match.items())
        ]


def start_gateway(tmp: Path, *, grant_lifetime: int | None = None) -> Gateway:
    """A gateway home with the example tool's policy and keys, and its server running."""
    home = tmp / "gateway-home"
    init_home(home, now=time.time())
    (home / "policies" / "payments.yaml").write_text(
        (TOOL_SERVICE_DIR / "payments.yaml").read_text()
    )
    if grant_lifetime is not None:
        settings = yaml.safe_load((home / "clearance.yaml").read_text())
        settings["grant_lifetime"] = grant_lifetime
        (home / "clearance.yaml").write_text(yaml.safe_dump(settings))
    keys = {
        "agent": create_key(home, "agent", ["agent", "orchestrator"], AGENT),
        "approver": create_key(home, "approver", ["approver"], APPROVER),
        "tool": create_key(home, "tool", ["agent"], TOOL),
        "auditor": create_key(home, "auditor", ["auditor"], "user:auditor"),
    }
    port = free_port()
    process = Process(
        [
            sys.executable,
            "-m",
            "clearance",
            "serve",
            "--home",
            str(home),
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=_env(),
        url=f"http://127.0.0.1:{port}",
        log=tmp / "gateway.log",
    )
    process.start()
    return Gateway(home, port, process, keys)


@dataclass
class ToolService:
    """The example tool service (uvicorn) and its own record of payments."""

    url: str
    state: Path
    process: Process

    def payments(self) -> list[dict[str, Any]]:
        """What the handler really did, read from the tool's side."""
        record = self.state / "payments.jsonl"
        if not record.exists():
            return []
        return [json.loads(line) for line in record.read_text().splitlines() if line]


def start_tool_service(tmp: Path, gateway: Gateway, *, leeway: float = 0.0) -> ToolService:
    """examples/tool_service/app.py on its own port, reporting to ``gateway``."""
    settings = gateway.settings
    port = free_port()
    state = tmp / "tool-state"
    process = Process(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "app:app",
            "--app-dir",
            str(TOOL_SERVICE_DIR),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=_env(
            {
                "CLEARANCE_GATEWAY_URL": gateway.url,
                "CLEARANCE_ISSUER": str(settings["issuer"]),
                "CLEARANCE_AUDIENCE": str(settings["audience"]),
                "TOOL_API_KEY": gateway.keys["tool"],
                "TOOL_STATE_DIR": str(state),
                "TOOL_LEEWAY": str(leeway),
            }
        ),
        url=f"http://127.0.0.1:{port}",
        log=tmp / "tool.log",
    )
    process.start()
    return ToolService(f"http://127.0.0.1:{port}", state, process)


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("remote")


@pytest.fixture(scope="module")
def gateway(module_tmp: Path) -> Iterator[Gateway]:
    started = start_gateway(module_tmp, grant_lifetime=5)
    yield started
    started.process.stop()
