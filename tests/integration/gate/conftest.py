"""Fixtures for gate tests: real homes on disk, real keys, a fixed clock."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from clearance.gate import Gate
from clearance.home import Home, init_home
from clearance.local import open_gate

T0 = 1_795_000_000.0  # a fixed instant in 2026


class FixedClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def home(tmp_path: Path, clock: FixedClock) -> Home:
    return init_home(tmp_path / "home", now=clock())


@pytest.fixture
def gate(home: Home, clock: FixedClock) -> Iterator[Gate]:
    opened = open_gate(home.path, principal="agent:ops-bot", clock=clock, durability="relaxed")
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A small real tmpfs mount, so tests can fill it or make it read-only."""
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("tmpfs tests need root, and CI runs as root")
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "mnt"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def remount(mount: Path, mode: str) -> None:
    """Remount a tmpfs ``ro`` or ``rw``."""
    subprocess.run(["mount", "-o", f"remount,{mode}", str(mount)], check=True)
