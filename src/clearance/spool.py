"""A durable spool for execution outcomes the ledger could not take.

Invariant: an outcome is never lost silently (DESIGN §1 step 7). When appending
an execution entry fails, the entry is written to ``<dir>/<request_id>.json``
(written to a temporary file, fsynced, renamed, and the directory fsynced), and
:meth:`Spool.drain` appends every spooled entry on the next open. A spooled
entry is removed only after the ledger holds an execution entry for its
request id, and drain skips entries the ledger already holds, so a crash
between append and removal cannot duplicate an outcome.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from clearance.canonical import canonical_json
from clearance.errors import LedgerError


class Spool:
    """A directory of outcomes waiting for the ledger."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def put(self, entry: Mapping[str, Any]) -> Path:
        """Write ``entry`` durably; raises LedgerError if even the spool cannot take it."""
        request_id = str(entry["request_id"])
        target = self.directory / f"{request_id}.json"
        tmp = self.directory / f".{request_id}.tmp"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, canonical_json(dict(entry)))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, target)
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise LedgerError(
                f"could not record an execution outcome in the ledger or in the spool at "
                f"{self.directory}: {exc.strerror or exc}"
            ) from None
        return target

    def pending(self) -> list[Path]:
        """Spooled files, oldest first."""
        if not self.directory.is_dir():
            return []
        files = [p for p in self.directory.glob("*.json") if p.is_file()]
        return sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name))

    def drain(
        self,
        append: Callable[[Mapping[str, Any]], int],
        already_logged: Callable[[str], bool],
    ) -> int:
        """Append every spooled entry not yet in the ledger; returns how many were appended.

        Stops at the first append failure (the rest stay spooled for next time).
        """
        appended = 0
        for path in self.pending():
            try:
                entry = json.loads(path.read_bytes())
            except (OSError, ValueError):
                # A torn file cannot come from put() (it renames only complete files);
                # keep it for a human rather than guessing.
                continue
            if not isinstance(entry, dict) or "request_id" not in entry:
                continue
            if not already_logged(str(entry["request_id"])):
                append(entry)
                appended += 1
            path.unlink()
        return appended
