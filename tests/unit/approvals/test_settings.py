"""The ``approvals:`` settings: expiry, the webhook URL and its secret file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clearance._internal.approvals.settings import (
    ApprovalSettings,
    parse_approval_settings,
    read_webhook_secret,
)
from clearance._internal.approvals.webhook import webhook_for
from clearance._internal.home import parse_settings
from clearance._internal.limits import DEFAULT_LIMITS
from clearance.errors import InputError

WHERE = "/srv/home/clearance.yaml"
BASE = {"origin": "o.example/log", "issuer": "clearance://h", "audience": "local"}
HOOK = {"webhook_url": "https://hooks.example/clearance", "webhook_secret_file": "hook.secret"}


def test_the_default_expiry_is_fifteen_minutes() -> None:
    assert DEFAULT_LIMITS.approval_ttl == 900
    settings = parse_settings(dict(BASE), WHERE)
    assert settings.approvals == ApprovalSettings()
    assert "approvals" not in settings.to_json()


def test_approvals_ttl_sets_the_limit_and_round_trips() -> None:
    settings = parse_settings({**BASE, "approvals": {"ttl": 120, **HOOK}}, WHERE)
    assert settings.limits.approval_ttl == 120
    document = settings.to_json()
    assert document["approvals"] == {"ttl": 120, **HOOK}
    assert "limits" not in document  # written once
    assert parse_settings(document, WHERE) == settings


def test_the_expiry_is_set_in_one_place() -> None:
    with pytest.raises(InputError, match="not both"):
        parse_settings({**BASE, "approvals": {"ttl": 60}, "limits": {"approval_ttl": 60}}, WHERE)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "'approvals' must be a mapping"),
        ({"tll": 5}, "unknown approvals settings ['tll']"),
        ({"ttl": 0}, "'approvals.ttl' must be a number of seconds above 0"),
        ({"ttl": "15m"}, "'approvals.ttl' must be a number of seconds above 0"),
        ({"webhook_url": "https://h.example/x"}, "needs 'approvals.webhook_secret_file'"),
        ({"webhook_secret_file": "s"}, "no webhook_url"),
        ({**HOOK, "webhook_url": "ftp://h.example/x"}, "an http:// or https:// URL with a host"),
        ({**HOOK, "webhook_url": "https:///x"}, "an http:// or https:// URL with a host"),
        ({**HOOK, "webhook_url": "https://u:p@h.example/x"}, "without user info"),
        ({**HOOK, "webhook_url": "https://h.example:99999/"}, "a valid port"),
        ({**HOOK, "webhook_url": 5}, "a URL of at most"),
        ({**HOOK, "webhook_secret_file": ""}, "must be a file path"),
    ],
)
def test_bad_settings_name_the_file_and_key(raw: Any, message: str) -> None:
    with pytest.raises(InputError) as refused:
        parse_approval_settings(raw, WHERE)
    assert str(refused.value).startswith(WHERE + ": ")
    assert message in str(refused.value)


def test_the_secret_is_read_relative_to_the_home(tmp_path: Path) -> None:
    settings = parse_approval_settings(HOOK, WHERE)
    with pytest.raises(InputError, match=r"hook\.secret: cannot read it"):
        read_webhook_secret(settings, tmp_path)
    (tmp_path / "hook.secret").write_text("short\n")
    with pytest.raises(InputError, match="at least 16 bytes"):
        webhook_for(settings, tmp_path)
    (tmp_path / "hook.secret").write_text("  " + "s" * 32 + "\n")
    assert read_webhook_secret(settings, tmp_path) == b"s" * 32
    webhook = webhook_for(settings, tmp_path)
    assert webhook is not None
    assert webhook.url == HOOK["webhook_url"]
    assert "s" * 32 not in repr(webhook)
    assert webhook_for(ApprovalSettings(), tmp_path) is None
