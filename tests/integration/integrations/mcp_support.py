"""Shared set-up for the MCP proxy tests: a home with the example bundle, a git repository,
and a proxy configuration in front of the real ``mcp-server-git`` and ``mcp-server-time``."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

import yaml
from mcp.types import RequestParamsMeta

from clearance import init_home, open_gate
from clearance._internal.gate.core import Gate
from clearance._internal.ledger.sqlite import SQLiteLedger

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE_BUNDLE = ROOT / "examples" / "mcp_proxy" / "policies" / "mcp.yaml"


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` (the upstream's side of the story) and return its output."""
    done = subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    )
    return done.stdout


def make_repo(path: Path) -> Path:
    """A repository with one commit and one staged file: a forwarded commit would land."""
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "dev@example.test")
    git(path, "config", "user.name", "Dev")
    (path / "README").write_text("hello\n")
    git(path, "add", "README")
    git(path, "commit", "-q", "-m", "initial")
    (path / "notes.txt").write_text("staged change\n")
    git(path, "add", "notes.txt")
    return path


def commit_count(repo: Path) -> int:
    """Commits on the current branch, read with git itself."""
    return int(git(repo, "rev-list", "--count", "HEAD").strip())


def make_home(path: Path) -> Path:
    """A clearance home whose only bundle is the example's."""
    init_home(path, now=time.time(), example_policies=False)
    shutil.copy(EXAMPLE_BUNDLE, path / "policies" / "mcp.yaml")
    return path


def write_config(path: Path, *, home: Path, repo: Path, **overrides: Any) -> Path:
    """A proxy.yaml for the example's servers (both over stdio unless ``time_url``)."""
    time_url = overrides.pop("time_url", None)
    config: dict[str, Any] = {
        "home": str(home),
        "principal": "agent:coder",
        "mandate": {"text": "Maintain this repository"},
        "limits": {"approval_wait": 20, "call_timeout": 20},
        "http": {"clients": [{"principal": "agent:coder", "token_env": "MCP_TEST_TOKEN"}]},
        "servers": {
            "git": {
                "command": sys.executable,
                "args": ["-m", "mcp_server_git", "--repository", str(repo)],
                "resource": "repo/test",
                "tools": {"git_log": {"untrusted_output": True}},
            },
            "time": (
                {"url": time_url}
                if time_url
                else {
                    "command": sys.executable,
                    "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"],
                }
            ),
        },
    }
    config.update(overrides)
    path.write_text(yaml.safe_dump(config))
    return path


def approver_gate(home: Path) -> Gate:
    """A second gate on the same home, for the human who approves (another process's view)."""
    return open_gate(home, multi_principal=True)


def entries_for(gate: Gate, request_id: str) -> dict[str, dict[str, Any]]:
    """The decision and execution entries of ``request_id``, by type."""
    found: dict[str, dict[str, Any]] = {}
    refresh(gate)
    for kind in ("decision", "execution"):
        for stored in gate.ledger.find(kind, request_id):
            found[kind] = dict(stored.entry)
    return found


def refresh(gate: Gate) -> None:
    """Adopt the entries the proxy's process appended to the home's ledger."""
    ledger = gate.ledger
    if not isinstance(ledger, SQLiteLedger):
        raise TypeError("the tests use the home's SQLite ledger")
    ledger.refresh()


def meta(**values: str) -> RequestParamsMeta:
    """A tools/call ``_meta`` with clearance's keys (``mandate``, ``approval_id``)."""
    return cast(RequestParamsMeta, {f"clearance/{k}": v for k, v in values.items()})
