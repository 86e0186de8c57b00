"""The ``approvals:`` settings of ``clearance.yaml``: expiry and the new-approval webhook.

::

    approvals:
      ttl: 900                                   # seconds a pending approval lives
      webhook_url: https://hooks.example/clearance
      webhook_secret_file: keys/approvals-webhook.secret   # relative to the home

Invariants:

* ``ttl`` is the same bound as ``limits.approval_ttl`` (above 0, at most 30 days), which
  it replaces; a file may set one or the other, never both.
* A webhook is always signed: ``webhook_url`` needs ``webhook_secret_file``, and the
  secret file is read when the gate opens (:func:`read_webhook_secret`), so a missing
  or empty secret stops the gate from opening rather than sending unsigned requests.
* The URL is ``http`` or ``https`` with a host, no user info and no fragment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from clearance._internal.limits import limit_problem
from clearance.errors import InputError

__all__ = [
    "APPROVAL_SETTING_KEYS",
    "MIN_SECRET_BYTES",
    "ApprovalSettings",
    "parse_approval_settings",
    "read_webhook_secret",
]

APPROVAL_SETTING_KEYS: Final = ("ttl", "webhook_url", "webhook_secret_file")
MIN_SECRET_BYTES: Final = 16
"""The shortest webhook secret accepted (after stripping surrounding whitespace)."""
MAX_SECRET_BYTES: Final = 4096
_MAX_URL: Final = 2048


@dataclass(frozen=True, slots=True)
class ApprovalSettings:
    """The ``approvals:`` mapping (every field optional)."""

    ttl: float | None = None
    """Seconds a pending approval lives; None: ``limits.approval_ttl`` (900 by default)."""
    webhook_url: str | None = None
    """Where new pending approvals are POSTed, or None for no webhook."""
    webhook_secret_file: str | None = None
    """The HMAC-SHA256 key's file (relative paths are under the home)."""

    def to_json(self) -> dict[str, Any]:
        """The YAML form: only the keys that are set."""
        return {
            key: value
            for key, value in (
                ("ttl", self.ttl),
                ("webhook_url", self.webhook_url),
                ("webhook_secret_file", self.webhook_secret_file),
            )
            if value is not None
        }


def parse_approval_settings(raw: object, where: str) -> ApprovalSettings:
    """Validate the ``approvals:`` mapping; InputError names ``where`` and the key."""
    if raw is None:
        return ApprovalSettings()
    if not isinstance(raw, Mapping):
        raise InputError(
            f"{where}: 'approvals' must be a mapping with keys {', '.join(APPROVAL_SETTING_KEYS)}"
        )
    unknown = sorted(str(key) for key in raw if key not in APPROVAL_SETTING_KEYS)
    if unknown:
        raise InputError(
            f"{where}: unknown approvals settings {unknown}; allowed: "
            f"{', '.join(APPROVAL_SETTING_KEYS)}"
        )
    ttl = raw.get("ttl")
    if ttl is not None:
        problem = limit_problem("approval_ttl", ttl)
        if problem is not None:
            raise InputError(f"{where}: 'approvals.ttl' {problem}, got {ttl!r}")
    url = raw.get("webhook_url")
    if url is not None:
        _check_url(url, where)
    secret = raw.get("webhook_secret_file")
    if secret is not None and (not isinstance(secret, str) or not secret.strip()):
        raise InputError(f"{where}: 'approvals.webhook_secret_file' must be a file path")
    if url is not None and secret is None:
        raise InputError(
            f"{where}: 'approvals.webhook_url' needs 'approvals.webhook_secret_file': "
            "webhooks are always signed (HMAC-SHA256); write a random secret of at least "
            f"{MIN_SECRET_BYTES} bytes to a file readable only by the gate and name it here"
        )
    if secret is not None and url is None:
        raise InputError(f"{where}: 'approvals.webhook_secret_file' is set but no webhook_url")
    return ApprovalSettings(
        ttl=ttl,  # as written (900 stays an int), so the file round-trips
        webhook_url=url,
        webhook_secret_file=secret,
    )


def _check_url(url: object, where: str) -> None:
    problem = None
    if not isinstance(url, str) or not url or len(url) > _MAX_URL:
        problem = f"a URL of at most {_MAX_URL} characters"
    else:
        try:
            parts = urlsplit(url)
        except ValueError:
            parts = None
        try:
            port_ok = parts is not None and (parts.port is None or parts.port > 0)
        except ValueError:  # out of range or not a number
            port_ok = False
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            problem = "an http:// or https:// URL with a host"
        elif not port_ok:
            problem = "a URL with a valid port"
        elif parts.username is not None or parts.password is not None or parts.fragment:
            problem = "a URL without user info or a fragment (put secrets in the secret file)"
        elif any(c.isspace() for c in url):
            problem = "a URL without spaces"
    if problem is not None:
        raise InputError(f"{where}: 'approvals.webhook_url' must be {problem}, got {url!r}")


def read_webhook_secret(settings: ApprovalSettings, home: Path) -> bytes | None:
    """The webhook's HMAC key, read from its file (None when no webhook is configured).

    InputError, naming the file, when it cannot be read, is larger than 4 KiB, or holds
    fewer than :data:`MIN_SECRET_BYTES` bytes once surrounding whitespace is stripped.
    """
    if settings.webhook_url is None or settings.webhook_secret_file is None:
        return None
    path = home / Path(settings.webhook_secret_file).expanduser()
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_SECRET_BYTES + 1)
    except OSError as exc:
        raise InputError(
            f"approvals webhook secret {path}: cannot read it ({exc.strerror or exc})"
        ) from None
    if len(data) > MAX_SECRET_BYTES:
        raise InputError(f"approvals webhook secret {path}: larger than {MAX_SECRET_BYTES} bytes")
    secret = data.strip()
    if len(secret) < MIN_SECRET_BYTES:
        raise InputError(
            f"approvals webhook secret {path}: at least {MIN_SECRET_BYTES} bytes are needed "
            "(for example: python -c 'import secrets; print(secrets.token_hex(32))')"
        )
    return secret
