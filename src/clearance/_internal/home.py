"""The clearance home directory: where keys, policies, the ledger and settings live.

Layout (created by :func:`init_home`, ``clearance init``)::

    HOME/
      clearance.yaml     settings (origin, issuer, audience, durability, grant lifetime,
                         limits: see :mod:`clearance._internal.limits`)
      policies/          the active policy bundle (YAML files)
      keys/grant/        grant-signing keys (Ed25519, PEM, mode 0600) and jwks.json
      keys/log.skey      the log's checkpoint signer (C2SP private key, mode 0600)
      keys/log.vkey      its verifier key (public)
      ledger.db          the SQLite ledger (WAL)
      replay.db          the executor's durable jti store
      spool/             execution outcomes waiting for the ledger (MAC-authenticated)
      spool/quarantine/  spool files that failed authentication, kept for a human
      checkpoints/latest the latest signed checkpoint, anchored outside the ledger file

The home is found from an explicit path, else ``CLEARANCE_HOME``, else
``./.clearance`` (:func:`find_home`).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, cast

import yaml

from clearance._internal.approvals.settings import ApprovalSettings, parse_approval_settings
from clearance._internal.limits import (
    DEFAULT_LIMITS,
    DURABILITIES,
    Durability,
    Limits,
    parse_limits,
)
from clearance._internal.server.settings import (
    DEFAULT_SERVER_SETTINGS,
    ServerSettings,
    parse_server_settings,
)
from clearance.errors import InputError, SigningKeyError

HOME_ENV = "CLEARANCE_HOME"
DATABASE_ENV = "CLEARANCE_DATABASE"
"""Overrides the ``database:`` setting (``--database`` on the command line sets it)."""
DEFAULT_HOME = ".clearance"
SETTINGS_FILE = "clearance.yaml"

_SETTINGS_KEYS = {
    "origin",
    "issuer",
    "audience",
    "durability",
    "grant_lifetime",
    "default_mandate",
    "require_trace",
    "witness_dirs",
    "checkpoint_grace",
    "limits",
    "server",
    "approvals",
    "database",
}
_MANDATE_KEYS = {"text", "bounds"}
DEFAULT_CHECKPOINT_GRACE = 300
"""Seconds an entry may stay without a signed checkpoint before audits call it tampering."""


@dataclass(frozen=True)
class Settings:
    """Typed settings from ``clearance.yaml``."""

    origin: str
    """The log's origin line and checkpoint key name (C2SP tlog-checkpoint)."""
    issuer: str
    """The ``iss`` claim of grants this gate issues."""
    audience: str
    """The ``aud`` claim: the executor audience grants are issued for."""
    durability: Durability = "durable"
    default_mandate: Mapping[str, Any] = field(default_factory=lambda: {"text": "", "bounds": {}})
    """The mandate of a governed call made while no trace is open (``{text, bounds}``).

    The default is the narrowest mandate: no text and no bounds, so a bounded action
    (one whose rules read ``trace.mandate.bounds``) is granted nothing.
    """
    require_trace: bool = False
    """When true, a governed call made while no trace is open is refused outright."""
    witness_dirs: tuple[str, ...] = ()
    """Directories that also receive every anchored checkpoint.

    See :mod:`clearance._internal.ledger.anchor`."""
    checkpoint_grace: int = DEFAULT_CHECKPOINT_GRACE
    """Seconds an entry may remain uncovered by any signed checkpoint before it is tampering."""
    limits: Limits = DEFAULT_LIMITS
    """Every tunable bound (``grant_lifetime`` and the ``limits:`` mapping)."""
    server: ServerSettings = DEFAULT_SERVER_SETTINGS
    """Limits of the runtime API, ``clearance serve`` (the ``server:`` mapping)."""
    approvals: ApprovalSettings = field(default_factory=ApprovalSettings)
    """The ``approvals:`` mapping: the webhook for new approvals (its ``ttl`` is already
    in ``limits.approval_ttl``)."""
    database: str | None = None
    """Where the ledger, the replay store and the API keys live: None for the embedded
    SQLite files in the home, or a ``postgresql://`` URL (the scale-out store).
    ``$CLEARANCE_DATABASE`` overrides it (:attr:`Home.database`)."""

    @property
    def grant_lifetime(self) -> int:
        """Seconds a grant is valid (the top-level ``grant_lifetime`` setting, at most 60)."""
        return self.limits.grant_lifetime

    def to_json(self) -> dict[str, Any]:
        """The YAML form (``limits`` only when some limit differs from its default)."""
        document: dict[str, Any] = {
            "origin": self.origin,
            "issuer": self.issuer,
            "audience": self.audience,
            "durability": self.durability,
            "grant_lifetime": self.grant_lifetime,
            "default_mandate": {
                "text": self.default_mandate.get("text", ""),
                "bounds": dict(self.default_mandate.get("bounds", {})),
            },
            "require_trace": self.require_trace,
            "witness_dirs": list(self.witness_dirs),
            "checkpoint_grace": self.checkpoint_grace,
        }
        overrides = self.limits.overrides()
        if self.approvals.ttl is not None:
            overrides.pop("approval_ttl", None)  # written once, as approvals.ttl
        if overrides:
            document["limits"] = overrides
        server = self.server.overrides()
        if server:
            document["server"] = server
        approvals = self.approvals.to_json()
        if approvals:
            document["approvals"] = approvals
        if self.database is not None:
            document["database"] = self.database
        return document


def parse_settings(raw: object, where: str) -> Settings:
    """Validate a settings mapping; every problem names ``where`` and the key."""
    if not isinstance(raw, dict):
        raise InputError(f"{where}: expected a mapping of settings")
    unknown = set(raw) - _SETTINGS_KEYS
    if unknown:
        raise InputError(
            f"{where}: unknown settings {sorted(unknown)}; allowed: {sorted(_SETTINGS_KEYS)}"
        )
    for key in ("origin", "issuer", "audience"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise InputError(f"{where}: '{key}' must be a non-empty string")
    durability = raw.get("durability", "durable")
    if durability not in DURABILITIES:
        raise InputError(f"{where}: 'durability' must be 'durable' or 'relaxed'")
    limits = parse_limits(
        raw.get("limits"),
        where,
        grant_lifetime=raw.get("grant_lifetime", DEFAULT_LIMITS.grant_lifetime),
    )
    approvals = parse_approval_settings(raw.get("approvals"), where)
    if approvals.ttl is not None:
        if isinstance(raw.get("limits"), Mapping) and "approval_ttl" in raw["limits"]:
            raise InputError(
                f"{where}: set the approval expiry once: 'approvals.ttl' or "
                "'limits.approval_ttl', not both"
            )
        limits = replace(limits, approval_ttl=approvals.ttl)
    origin = str(raw["origin"])
    if any(c.isspace() or c == "+" for c in origin):
        raise InputError(f"{where}: 'origin' may not contain spaces or '+'")
    require_trace = raw.get("require_trace", False)
    if not isinstance(require_trace, bool):
        raise InputError(f"{where}: 'require_trace' must be true or false")
    witnesses = raw.get("witness_dirs", [])
    if not isinstance(witnesses, list) or not all(isinstance(w, str) and w for w in witnesses):
        raise InputError(f"{where}: 'witness_dirs' must be a list of directory paths")
    grace = raw.get("checkpoint_grace", DEFAULT_CHECKPOINT_GRACE)
    if not isinstance(grace, int) or isinstance(grace, bool) or not 1 <= grace <= 86_400:
        raise InputError(f"{where}: 'checkpoint_grace' must be whole seconds from 1 to 86400")
    if not limits.checkpoint_interval < grace:
        # Entries signed less often than the grace allows would be refused at the next open.
        raise InputError(
            f"{where}: 'limits.checkpoint_interval' ({limits.checkpoint_interval:g} s) must be "
            f"shorter than 'checkpoint_grace' ({grace} s)"
        )
    return Settings(
        origin=origin,
        issuer=str(raw["issuer"]),
        audience=str(raw["audience"]),
        durability=cast(Durability, durability),
        default_mandate=parse_mandate(
            raw.get("default_mandate", {}),
            f"{where}: default_mandate",
            max_text=limits.mandate_text,
        ),
        require_trace=require_trace,
        witness_dirs=tuple(witnesses),
        checkpoint_grace=grace,
        limits=limits,
        server=parse_server_settings(raw.get("server"), where),
        approvals=approvals,
        database=_database(raw.get("database"), where),
    )


def _database(raw: object, where: str) -> str | None:
    """The ``database:`` setting: None (SQLite in the home) or a checked PostgreSQL URL."""
    if raw is None or raw == "sqlite":
        return None
    from clearance._internal.postgres import check_url

    if not isinstance(raw, str):
        raise InputError(f"{where}: 'database' must be a postgresql:// URL or 'sqlite'")
    try:
        return check_url(raw)
    except InputError as exc:
        raise InputError(f"{where}: 'database': {exc}") from None


def parse_mandate(
    raw: object, where: str, *, max_text: int = DEFAULT_LIMITS.mandate_text
) -> dict[str, Any]:
    """Validate a mandate ``{text, bounds}`` (both optional); returns the normalized form.

    ``text`` is at most ``max_text`` code points (:attr:`Limits.mandate_text`);
    ``bounds`` must be a JSON object; ``bounds.expires_at``, when present, an RFC 3339
    timestamp. InputError names ``where`` and the problem.
    """
    from clearance._internal.canonical import canonical_json
    from clearance._internal.entries import parse_timestamp

    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise InputError(f"{where}: expected a mapping with 'text' and 'bounds'")
    unknown = set(raw) - _MANDATE_KEYS
    if unknown:
        raise InputError(
            f"{where}: unknown keys {sorted(map(str, unknown))}; allowed: text, bounds"
        )
    text = raw.get("text", "")
    if not isinstance(text, str) or len(text) > max_text:
        raise InputError(f"{where}: 'text' must be a string of at most {max_text} characters")
    bounds = raw.get("bounds", {})
    if bounds is None:
        bounds = {}
    if not isinstance(bounds, Mapping):
        raise InputError(f"{where}: 'bounds' must be a mapping")
    bounds = dict(bounds)
    try:
        canonical_json(bounds)
    except InputError as exc:
        raise InputError(f"{where}: 'bounds' must be JSON: {exc}") from None
    if "expires_at" in bounds:
        try:
            parse_timestamp(str(bounds["expires_at"]))
        except InputError as exc:
            raise InputError(f"{where}: 'bounds.expires_at': {exc}") from None
    return {"text": text, "bounds": bounds}


def find_home(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The home directory: ``explicit``, else ``$CLEARANCE_HOME``, else ``./.clearance``."""
    if explicit is not None and str(explicit):
        return Path(explicit).expanduser()
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env).expanduser()
    return Path.cwd() / DEFAULT_HOME


@dataclass(frozen=True)
class Home:
    """A located, initialised home directory."""

    path: Path
    settings: Settings

    @property
    def database(self) -> str | None:
        """The database in use: ``$CLEARANCE_DATABASE`` when set, else the ``database:``
        setting; None is the embedded SQLite files of the home. InputError for a URL
        that is not a usable PostgreSQL URL."""
        from_env = os.environ.get(DATABASE_ENV, "").strip()
        if from_env and from_env != "sqlite":
            from clearance._internal.postgres import check_url

            try:
                return check_url(from_env)
            except InputError as exc:
                raise InputError(f"${DATABASE_ENV}: {exc}") from None
        if from_env == "sqlite":
            return None
        return self.settings.database

    @property
    def policy_dir(self) -> Path:
        """The active bundle's directory."""
        return self.path / "policies"

    @property
    def grant_key_dir(self) -> Path:
        """Grant-signing keys and the JWKS."""
        return self.path / "keys" / "grant"

    @property
    def log_skey_path(self) -> Path:
        """The log's checkpoint signing key."""
        return self.path / "keys" / "log.skey"

    @property
    def log_vkey_path(self) -> Path:
        """The log's published verifier key."""
        return self.path / "keys" / "log.vkey"

    @property
    def ledger_path(self) -> Path:
        """The SQLite ledger file."""
        return self.path / "ledger.db"

    @property
    def replay_path(self) -> Path:
        """The executor's jti store."""
        return self.path / "replay.db"

    @property
    def spool_dir(self) -> Path:
        """Outcomes waiting for the ledger."""
        return self.path / "spool"

    @property
    def anchor_dir(self) -> Path:
        """Where the latest signed checkpoint is anchored outside the ledger file."""
        return self.path / "checkpoints"

    @property
    def witness_dirs(self) -> tuple[Path, ...]:
        """Operator-configured witness directories (relative paths are under the home)."""
        return tuple(self.path / Path(w).expanduser() for w in self.settings.witness_dirs)

    @classmethod
    def load(cls, path: Path) -> Home:
        """Open an initialised home; InputError tells how to create one otherwise."""
        settings_path = path / SETTINGS_FILE
        if not settings_path.is_file():
            raise InputError(
                f"no clearance home at {path} (missing {SETTINGS_FILE}); "
                f"run `clearance init {path}` or pass --home / set {HOME_ENV}"
            )
        try:
            raw = yaml.safe_load(settings_path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise InputError(f"cannot read {settings_path}: {exc}") from None
        return cls(path=path, settings=parse_settings(raw, str(settings_path)))

    def read_log_skey(self) -> str:
        """The log signer's private key text (fail-closed rule 5 when unreadable)."""
        try:
            return self.log_skey_path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise SigningKeyError(
                f"log signing key {self.log_skey_path} is unreadable: {exc}"
            ) from None


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, text.encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)


def init_home(path: str | os.PathLike[str], *, now: float, example_policies: bool = True) -> Home:
    """Create a home at ``path``: settings, example bundle, sealed grant key ring, log key.

    What ``clearance init`` does, for code (tests, provisioning). ``path`` is a ``str``
    or any path-like; ``now`` (seconds since the epoch) dates the first grant key.
    Refuses to overwrite an existing home, or a file in the way (InputError). The
    settings file is written last, so a home whose creation failed half-way is not
    mistaken for an initialised one.
    """
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"init_home() takes a str or path-like, not {type(path).__name__}")
    path = Path(path)
    if (path / SETTINGS_FILE).exists():
        raise InputError(f"{path} is already a clearance home; refusing to overwrite it")
    if path.exists() and not path.is_dir():
        raise InputError(f"cannot create a clearance home at {path}: it is a file, not a directory")
    try:
        return _create_home(path, now=now, example_policies=example_policies)
    except OSError as exc:
        raise InputError(
            f"cannot create a clearance home at {path}: {exc.strerror or exc}"
            + (f" ({exc.filename})" if exc.filename else "")
        ) from None


def _create_home(path: Path, *, now: float, example_policies: bool) -> Home:
    from clearance._internal import sealing
    from clearance._internal.grants.keys import GrantKeyRing
    from clearance._internal.ledger.checkpoint import NoteSigner

    path.mkdir(parents=True, exist_ok=True)
    host = "".join(c for c in socket.gethostname() if c.isalnum() or c in "-.") or "localhost"
    settings = Settings(
        origin=f"clearance.local/{host}/{secrets.token_hex(4)}",
        issuer=f"clearance://{host}",
        audience="local",
    )
    home = Home(path=path, settings=settings)
    (path / "keys").mkdir(exist_ok=True)
    signer = NoteSigner.generate(settings.origin)
    _write_private(home.log_skey_path, signer.skey() + "\n")
    (path / "keys" / "log.vkey").write_text(signer.vkey() + "\n", encoding="ascii")
    # The log key is written first and the ring's seal key derived from the file as every
    # later reader sees it (Home.read_log_skey), so the new ring verifies when loaded.
    seal_key = sealing.derive_key(home.read_log_skey(), sealing.JWKS_PURPOSE)
    GrantKeyRing.create(home.grant_key_dir, now=now, seal_key=seal_key)
    policy_dir = path / "policies"
    policy_dir.mkdir(exist_ok=True)
    if example_policies:
        source = resources.files("clearance.examples") / "policies"
        for item in source.iterdir():
            if item.name.endswith((".yaml", ".yml")):
                with resources.as_file(item) as src:
                    shutil.copyfile(src, policy_dir / item.name)
    settings_text = "# clearance settings (see README: Settings)\n" + yaml.safe_dump(
        settings.to_json(), sort_keys=False
    )
    (path / SETTINGS_FILE).write_text(settings_text, encoding="utf-8")
    return home
