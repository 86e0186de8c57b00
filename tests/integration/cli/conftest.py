"""Fixtures for CLI tests: the real ``clearance`` command in a subprocess, real homes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from clearance._internal.home import Home, init_home

from .support import Run


def _env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CLEARANCE_HOME"}
    env.update(extra or {})
    return env


@pytest.fixture
def cli(tmp_path: Path) -> Run:
    """Run ``python -m clearance._cli.main ARGS`` with cwd ``tmp_path`` (or ``cwd=``)."""

    def run(
        *args: str,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "clearance", *args],
            cwd=cwd or tmp_path,
            env=_env(env),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run


@pytest.fixture
def home(tmp_path: Path) -> Home:
    """An initialised home (made with the library; ``clearance init`` has its own tests)."""
    return init_home(tmp_path / "home", now=time.time())
