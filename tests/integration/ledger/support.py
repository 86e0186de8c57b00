"""Shared helpers for the SQLite ledger tests: keys, entries, raw (attacker) access."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any

from clearance._internal.ledger.checkpoint import NoteSigner
from clearance._internal.ledger.sqlite import SQLiteLedger
from clearance._internal.limits import Durability

ORIGIN = "ledger.test.example/log"


def entry(i: int, **extra: Any) -> dict[str, Any]:
    """A small valid decision entry whose content is determined by ``i``."""
    return {
        "type": "decision",
        "v": 1,
        "at": f"2026-11-28T10:00:{i % 60:02d}.000000Z",
        "request_id": f"req-{i}",
        "trace_id": f"trace-{i % 5}",
        "effect": "allow" if i % 3 else "deny",
        **extra,
    }


def open_ledger(
    path: Path,
    signer: NoteSigner,
    *,
    durability: Durability = "relaxed",
    interval: float = 0.2,
) -> SQLiteLedger:
    """Open the test ledger at ``path``."""
    return SQLiteLedger.open(
        path, signer=signer, origin=ORIGIN, durability=durability, checkpoint_interval=interval
    )


def attacker(path: Path) -> sqlite3.Connection:
    """A raw connection with the append-only triggers dropped, as an attacker would."""
    conn = sqlite3.connect(path, isolation_level=None)
    names = [
        str(name)
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
    ]
    for name in names:
        conn.execute(f'DROP TRIGGER "{name}"')
    return conn


def rehash_from(raw: sqlite3.Connection, start: int) -> None:
    """Recompute every stored hash from ``start`` on, as the store would (an attacker's tool)."""
    stack: list[tuple[int, bytes]] = []
    for idx, leaf in raw.execute("SELECT idx, leaf FROM entries ORDER BY idx").fetchall():
        level, node = 0, hashlib.sha256(b"\x00" + bytes(leaf)).digest()
        stored = node
        while stack and stack[-1][0] == level:
            node = hashlib.sha256(b"\x01" + stack.pop()[1] + node).digest()
            stored += node
            level += 1
        stack.append((level, node))
        if idx >= start:
            raw.execute("UPDATE entries SET hashes = ? WHERE idx = ?", (stored, idx))
