"""A private PostgreSQL server for one test: a real restart that no other test sees.

The machine's server is shared by every test worker, so a test may not restart it. This
makes a throwaway cluster (``initdb`` into a temporary directory, trust auth, loopback
only, a free port), started and stopped with ``pg_ctl``, run as the ``postgres`` user
when the tests run as root (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.integration.server.support import free_port

BIN = Path("/usr/lib/postgresql/15/bin")


def _bin(name: str) -> str:
    found = BIN / name if (BIN / name).exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"PostgreSQL's {name} is not installed (Debian: postgresql)", pytrace=False)
    return str(found)


class PrivateServer:
    """One throwaway PostgreSQL cluster (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self._as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if os.geteuid() == 0:
            shutil.chown(root, "postgres")
        self._run(_bin("initdb"), "-D", str(root / "data"), "-A", "trust", "-U", "postgres")
        self._run(*self._ctl("start"))

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, action: str, mode: str = "fast") -> list[str]:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        return [
            *(_bin("pg_ctl"), "-D", str(self.root / "data"), "-l", str(self.root / "log")),
            *("-w", "-m", mode, "-o", options, action),
        ]

    def _run(self, *command: str) -> None:
        done = subprocess.run(
            [*self._as_postgres, *command], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, f"{command[0]} failed: {done.stdout}{done.stderr}"

    def crash(self) -> None:
        """Stop the server at once (``immediate``: no checkpoint, as a crash; the next
        start recovers from the WAL). Every connection to it is cut."""
        self._run(*self._ctl("stop", "immediate"))

    def start(self) -> None:
        self._run(*self._ctl("start"))

    def stop(self) -> None:
        self.crash()


@contextmanager
def private_server() -> Iterator[PrivateServer]:
    """A running private server, stopped and deleted afterwards."""
    root = Path(tempfile.mkdtemp(prefix="clearance-pg-"))
    try:
        server = PrivateServer(root)
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
