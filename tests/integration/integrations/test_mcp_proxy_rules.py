"""The proxy's own rules, without a client: which tools are hidden, which configurations
are refused, and a proxy that refuses to start rather than taint nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from clearance.errors import InputError
from clearance.integrations.mcp import load_config
from clearance.integrations.mcp._authority import InProcessAuthority
from clearance.integrations.mcp._listing import never_allowed
from tests.integration.integrations.mcp_support import make_home, make_repo, write_config


def _doc(rules: list[dict[str, Any]], *, strict: bool = False, tools: Any = None) -> dict[str, Any]:
    return {"strict": strict, "tools": tools or {}, "rules": rules}


def _rule(effect: str, actions: list[str], when: str = "true", principals: Any = None) -> Any:
    return {
        "id": "r",
        "effect": effect,
        "actions": actions,
        "principals": principals or ["*"],
        "when": when,
    }


@pytest.mark.parametrize(
    ("document", "hidden"),
    [
        (_doc([]), True),  # nothing can allow: default-deny
        (_doc([_rule("allow", ["a"])]), False),
        (_doc([_rule("allow", ["*"])]), False),
        (_doc([_rule("allow", ["other"])]), True),
        (_doc([_rule("approval_required", ["a"], "args.x > 1.0")]), False),
        (_doc([_rule("allow", ["a"]), _rule("deny", ["a"])]), True),  # unconditional deny
        (_doc([_rule("allow", ["a"]), _rule("deny", ["*"])]), True),
        (_doc([_rule("allow", ["a"]), _rule("deny", ["a"], "trace.untrusted")]), False),
        (_doc([_rule("allow", ["a"], principals=["agent:*"])]), False),
        (_doc([_rule("allow", ["a"], principals=["human:*"])]), True),
        (_doc([_rule("allow", ["a"]), _rule("deny", ["a"], principals=["agent:other"])]), False),
        (_doc([_rule("allow", ["a"])], strict=True), True),  # unknown-action
        (_doc([_rule("allow", ["a"])], strict=True, tools={"a": {}}), False),
    ],
)
def test_hidden_only_when_no_call_can_be_allowed(document: dict[str, Any], hidden: bool) -> None:
    assert never_allowed(document, "agent:coder", "a") is hidden


def test_example_bundle_hides_what_it_never_allows(tmp_path: Path) -> None:
    authority = InProcessAuthority(make_home(tmp_path / "home"))
    try:
        assert authority.hidden("agent:coder", "mcp.git.git_reset")  # unconditional deny
        assert authority.hidden("agent:coder", "mcp.git.git_push")  # strict, not listed
        assert authority.hidden("human:bob", "mcp.git.git_status")  # agents only
        assert not authority.hidden("agent:coder", "mcp.git.git_commit")  # conditional
        assert authority.declares_untrusted("mcp.git.git_log") is True
        assert authority.declares_untrusted("mcp.git.git_status") is False
    finally:
        authority.close()


def _config(tmp_path: Path, body: dict[str, Any]) -> Path:
    path = tmp_path / "proxy.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"servers": {"git": {"command": "x", "colour": "red"}}}, "unknown key 'colour'"),
        ({"servers": {}}, "at least one upstream server"),
        ({"servers": {"git": {"command": "x", "url": "http://h/mcp"}}}, "exactly one of"),
        ({"servers": {"Git": {"command": "x"}}}, "server name"),
        ({"servers": {"git": {"url": "ftp://h"}}}, "http:// or https://"),
        (
            {
                "home": "h",
                "gateway": {"url": "http://g", "api_key_env": "K"},
                "servers": {"t": {"command": "x"}},
            },
            "not both",
        ),
        (
            {
                "gateway": {"url": "http://g", "api_key_env": "K"},
                "servers": {"t": {"command": "x", "untrusted_output": True}},
            },
            "cannot be checked against a remote gateway",
        ),
        (
            {"servers": {"t": {"command": "x", "tools": {"a": {"action": "1bad"}}}}},
            "not a valid action",
        ),
        ({"limits": {"approval_wait": -1}, "servers": {"t": {"command": "x"}}}, "seconds from 0"),
        ({"principal": "bad principal", "servers": {"t": {"command": "x"}}}, "valid principal"),
    ],
)
def test_bad_configurations_are_refused(tmp_path: Path, body: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_config(_config(tmp_path, body))


def test_relative_paths_resolve_against_the_file(tmp_path: Path) -> None:
    config = load_config(
        _config(tmp_path, {"home": "h", "servers": {"t": {"command": "x", "cwd": "w"}}})
    )
    assert config.home == tmp_path / "h"
    assert config.servers[0].cwd == str(tmp_path / "w")


def _proxy(
    config: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clearance", "mcp", "proxy", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


def test_untrusted_marker_missing_from_the_bundle_refuses_to_start(tmp_path: Path) -> None:
    # git_status is marked untrusted here but not in the bundle: its results would taint
    # nothing, so the proxy refuses to start and says what to add.
    home = make_home(tmp_path / "home")
    repo = make_repo(tmp_path / "repo")
    config = write_config(tmp_path / "proxy.yaml", home=home, repo=repo)
    body = yaml.safe_load(config.read_text())
    body["servers"]["git"]["tools"]["git_status"] = {"untrusted_output": True}
    config.write_text(yaml.safe_dump(body))
    done = _proxy(config)
    assert done.returncode == 2, done.stderr
    assert "mcp.git.git_status:\n    untrusted_output: true" in done.stderr


def test_http_without_clients_refuses_to_start(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    config = write_config(tmp_path / "proxy.yaml", home=home, repo=tmp_path, http={"clients": []})
    done = _proxy(config, "--transport", "http", "--port", "1")
    assert done.returncode == 2
    assert "never serves anonymous callers" in done.stderr


def test_an_upstream_that_cannot_start_refuses_to_start(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    config = write_config(tmp_path / "proxy.yaml", home=home, repo=tmp_path)
    body = yaml.safe_load(config.read_text())
    body["servers"]["git"] = {"command": str(tmp_path / "no-such-server")}
    config.write_text(yaml.safe_dump(body))
    done = _proxy(config)
    assert done.returncode == 2
    assert "upstream git" in done.stderr
