"""``/readyz``: can this server decide right now? Each check says ``ok`` or what is wrong.

Ready means the three things a decision needs (fail-closed rules 1, 4 and 5): the
ledger takes appends (the store is usable, its file and directory are writable, the
file system is not read-only or full; on PostgreSQL, the server answers a read), a
policy bundle is loaded, and the grant-signing key and the log's checkpoint key can be
read and authenticated. Checks read state and
write nothing, so a probe never adds to the log.
"""

from __future__ import annotations

import os
from pathlib import Path

from clearance._internal.gate.core import Gate
from clearance._internal.grants.keys import GrantKeyRing
from clearance._internal.home import Home
from clearance._internal.policy.cel_engine import DENY_ALL_DIGEST
from clearance._internal.sealing import JWKS_PURPOSE, derive_key
from clearance.errors import Error


def check_ledger(gate: Gate, path: Path) -> str:
    """``ok`` if the ledger takes appends, else why not."""
    try:
        gate.ledger.scan(0, 0)  # raises when the store refused further use (tamper, closed)
        ping = getattr(gate.ledger, "ping", None)
        if ping is not None:  # a database server: can it be reached now?
            ping()
            return "ok"
    except Error as exc:
        return f"the ledger is unusable: {exc}"
    for target in (path, path.parent):
        if not os.access(target, os.W_OK):
            return f"{target} is not writable"
    try:
        fs = os.statvfs(path.parent)
    except OSError as exc:
        return f"cannot stat the ledger's file system: {exc.strerror or exc}"
    if fs.f_flag & os.ST_RDONLY:
        return "the ledger's file system is read-only"
    if fs.f_bavail == 0:
        return "the ledger's file system is full"
    return "ok"


def check_policy(gate: Gate) -> str:
    """``ok`` if a bundle is loaded (an engine other than deny-all), else why not."""
    try:
        digest = gate.engine.digest
    except Error as exc:
        return f"no policy: {exc}"
    if digest == DENY_ALL_DIGEST:
        return "no policy bundle is loaded: every action is denied"
    return "ok"


def check_signing_key(home: Home) -> str:
    """``ok`` if the log key and the sealed grant key ring load and sign, else why not."""
    try:
        secret = home.read_log_skey()
        ring = GrantKeyRing.load(home.grant_key_dir, seal_key=derive_key(secret, JWKS_PURPOSE))
        ring.signing_key()
    except Error as exc:
        return f"signing key unavailable: {exc.diagnostics()}"
    return "ok"


def readiness(gate: Gate, home: Home) -> dict[str, str]:
    """Every check by name: ``ledger``, ``policy``, ``signing_key``."""
    return {
        "ledger": check_ledger(gate, home.ledger_path),
        "policy": check_policy(gate),
        "signing_key": check_signing_key(home),
    }
