"""The demo's API keys: made with the real key store, reused across runs of the same home.

The runtime act needs four keys: the orchestrator that opens the trace with the
human's mandate, the agent, a human approver, and the example tool service (which
reports refusals and outcomes to the log). Each is created with
:meth:`ApiKeyStore.create` (an ``apikey`` ledger entry, the store keeps only a hash)
and its secret is written to ``HOME/demo/keys/<role>.key`` (mode 0600, directory
0700), the one copy the demo keeps so a later run can reuse it.

Invariants:

* A key is reused only if the store still authenticates its secret (not revoked, not
  expired, the right secret) AND it still has the role's scopes and principal;
  otherwise a new key is created under the next free name (names are never reused)
  and its file replaced atomically. So re-runs are idempotent: an unchanged home
  creates no key, a damaged one is repaired with new keys.
* A secret is printed only when the demo goes on serving the console on a terminal:
  the console admin's (:data:`CONSOLE_ADMIN`, made only then) and the approver's, so
  a person can log in. Everywhere else :attr:`DemoKey.hint` shows the public id only.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from clearance._demo.agent import PRINCIPAL
from clearance._internal.apikeys import ApiKeyStore, api_keys_path
from clearance._internal.home import Home
from clearance.errors import InputError, NotFound, Unauthenticated

AGENT_PRINCIPAL: Final = PRINCIPAL
APPROVER_PRINCIPAL: Final = "user:demo-approver"
TOOL_PRINCIPAL: Final = "service:payments"
ORCHESTRATOR_PRINCIPAL: Final = "service:demo-orchestrator"


@dataclass(frozen=True)
class Role:
    """What one demo key is for: its base name, scopes and principal."""

    role: str
    name: str
    scopes: frozenset[str]
    principal: str


ROLES: Final = (
    Role("orchestrator", "demo-orchestrator", frozenset({"orchestrator"}), ORCHESTRATOR_PRINCIPAL),
    Role("agent", "demo-agent", frozenset({"agent"}), AGENT_PRINCIPAL),
    Role("approver", "demo-approver", frozenset({"approver"}), APPROVER_PRINCIPAL),
    Role("tool", "demo-payments-service", frozenset({"agent"}), TOOL_PRINCIPAL),
)
"""The keys of the runtime act, in the order they are made."""
CONSOLE_ADMIN: Final = Role(
    "console", "demo-console-admin", frozenset({"admin"}), "user:demo-admin"
)
"""The admin key a person logs in to the console with while the demo serves it."""

_MAX_SECRET_FILE = 256


@dataclass(frozen=True)
class DemoKey:
    """One usable demo key. ``token`` is the secret: never print it."""

    role: str
    name: str
    key_id: str
    principal: str
    scopes: frozenset[str]
    path: Path
    """The 0600 file holding the secret."""
    reused: bool
    token: str = field(repr=False)

    def to_json(self) -> dict[str, object]:
        """Everything but the secret, JSON-ready (for ``last-run.json``)."""
        return {
            "role": self.role,
            "name": self.name,
            "key_id": self.key_id,
            "principal": self.principal,
            "scopes": sorted(self.scopes),
            "path": str(self.path),
            "reused": self.reused,
        }

    @property
    def hint(self) -> str:
        """The key as it may be shown: its public id, the secret elided."""
        return f"clk_{self.key_id}_…"


def keys_dir(home: Home) -> Path:
    """Where the demo keeps its keys' secrets."""
    return home.path / "demo" / "keys"


def demo_keys(home: Home, roles: tuple[Role, ...] = ROLES) -> dict[str, DemoKey]:
    """The keys of ``roles`` (default: the runtime act's four) by role, reused or created
    (see the module doc).

    Creations are ``apikey`` entries in the home's ledger, so the ledger is opened
    here: call it while no server holds the home.
    """
    from clearance._internal.wiring import open_ledger

    folder = keys_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    found: dict[str, DemoKey] = {}
    with (
        open_ledger(home) as ledger,
        ApiKeyStore.open(api_keys_path(home.path), ledger=ledger) as store,
    ):
        for role in roles:
            found[role.role] = _reuse(store, role, folder) or _create(store, role, folder)
    return found


def _reuse(store: ApiKeyStore, role: Role, folder: Path) -> DemoKey | None:
    path = folder / f"{role.role}.key"
    token = _read_secret(path)
    if token is None:
        return None
    try:
        key = store.authenticate(token)
    except Unauthenticated:
        return None  # revoked, expired or not this store's: replaced below
    if key.principal != role.principal or key.scopes != role.scopes:
        return None
    return DemoKey(role.role, key.name, key.key_id, key.principal, key.scopes, path, True, token)


def _create(store: ApiKeyStore, role: Role, folder: Path) -> DemoKey:
    name = _free_name(store, role.name)
    token, key = store.create(name, scopes=role.scopes, principal=role.principal)
    path = folder / f"{role.role}.key"
    _write_secret(path, token)
    return DemoKey(role.role, key.name, key.key_id, key.principal, key.scopes, path, False, token)


def _free_name(store: ApiKeyStore, base: str) -> str:
    """``base``, or ``base-2``, ``base-3``… : the first name the store never used."""
    for n in range(1, 1000):
        name = base if n == 1 else f"{base}-{n}"
        try:
            store.get(name)
        except NotFound:
            return name
    raise InputError(f"the demo home has used every API key name {base}-N; use a new --home")


def _read_secret(path: Path) -> str | None:
    """The secret in ``path``; None when there is no regular, small, readable file."""
    try:
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_SECRET_FILE:
            return None
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


def _write_secret(path: Path, token: str) -> None:
    """Write ``token`` to ``path`` (mode 0600) atomically: a reader sees old or new."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, (token + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
