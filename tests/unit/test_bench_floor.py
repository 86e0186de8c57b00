"""The bare SQLite commit the bench uses as the floor of a relaxed call (clearance._bench.floor)."""

from __future__ import annotations

from pathlib import Path

import pytest

from clearance._bench.floor import sqlite_insert_baseline


def test_the_probe_measures_and_leaves_nothing_behind(tmp_path: Path) -> None:
    assert sqlite_insert_baseline(tmp_path, 50) > 0
    assert list(tmp_path.iterdir()) == []


def test_too_few_iterations_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 10"):
        sqlite_insert_baseline(tmp_path, 5)
