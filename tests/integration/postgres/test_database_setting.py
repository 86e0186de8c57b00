"""Choosing the store: `database:` in clearance.yaml, $CLEARANCE_DATABASE, --database."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from clearance._internal.home import DATABASE_ENV, Home, init_home
from clearance.errors import InputError


def _home(path: Path, database: object = None) -> Path:
    init_home(path, now=time.time())
    if database is not None:
        settings = path / "clearance.yaml"
        document = yaml.safe_load(settings.read_text(encoding="utf-8"))
        document["database"] = database
        settings.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def test_sqlite_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATABASE_ENV, raising=False)
    assert Home.load(_home(tmp_path / "h")).database is None


def test_the_setting_names_a_postgresql_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(DATABASE_ENV, raising=False)
    home = Home.load(_home(tmp_path / "h", "postgresql://u@db:5432/clearance"))
    assert home.database == "postgresql://u@db:5432/clearance"
    assert home.settings.to_json()["database"] == "postgresql://u@db:5432/clearance"


def test_the_environment_overrides_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = Home.load(_home(tmp_path / "h", "postgresql://u@db:5432/clearance"))
    monkeypatch.setenv(DATABASE_ENV, "postgresql://other@db2/x")
    assert home.database == "postgresql://other@db2/x"
    monkeypatch.setenv(DATABASE_ENV, "sqlite")
    assert home.database is None
    monkeypatch.setenv(DATABASE_ENV, "mysql://u:pw@db/x")
    with pytest.raises(InputError, match=r"\$CLEARANCE_DATABASE: unsupported database URL"):
        _ = home.database


@pytest.mark.parametrize("bad", ["mysql://u@db/x", 42, ["postgresql://db/x"]])
def test_a_bad_setting_is_refused_naming_the_key(tmp_path: Path, bad: object) -> None:
    with pytest.raises(InputError, match="'database'"):
        Home.load(_home(tmp_path / "h", bad))


def test_the_command_line_refuses_a_bad_url_before_doing_anything(tmp_path: Path) -> None:
    home = _home(tmp_path / "h")
    before = sorted(p.name for p in home.iterdir())
    result = subprocess.run(
        [sys.executable, "-m", "clearance", "--database", "mysql://u:hunter2@db/x", "log", "vkey"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"CLEARANCE_HOME": str(home), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert "unsupported database URL" in result.stderr
    assert "hunter2" not in result.stderr
    assert sorted(p.name for p in home.iterdir()) == before


def test_an_unreachable_database_fails_closed_with_a_clear_error(tmp_path: Path) -> None:
    home = _home(tmp_path / "h")
    result = subprocess.run(
        [
            *(sys.executable, "-m", "clearance"),
            *("--database", "postgresql://u:pw@127.0.0.1:1/x", "log", "checkpoint"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"CLEARANCE_HOME": str(home), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2, result.stderr
    assert "unreachable" in result.stderr
    assert "pw@" not in result.stderr
