"""Shared helpers for integration tests."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def mounted_tmpfs(mount: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of ``size`` at ``mount``, so a test can fill it or make it read-only.

    Mounting needs root. CI runs as root, so there a missing privilege fails the
    test rather than skipping it.
    """
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("tmpfs tests need root, and CI runs as root")
        pytest.skip("mounting a tmpfs needs root")
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
