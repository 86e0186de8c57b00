"""What the hook remembers between its processes: a trace per session, a grant per call.

Each hook event runs in a new process, so the link between a Claude Code session and its
clearance trace, and between a PreToolUse decision and its PostToolUse outcome, lives in
files under one directory (``HOME/hooks/claude-code`` in process, ``--state-dir`` for
the HTTP variant).

Invariants:

* Names are never taken from the event: a file is named by the SHA-256 of the
  session id (and tool use id), so no session id can walk out of the directory.
* A session's trace is published once, atomically (written to a temporary file, then
  hard-linked to its final name, which fails if it exists), so concurrent first events
  of one session (parallel tool calls) all end up in the same trace: the loser of the
  race adopts the winner's trace (its own trace entry stays unused in the ledger).
* A call record is written before the hook answers ``allow`` and consumed (removed)
  by the PostToolUse event that records the outcome, so one allowed call gets at most
  one outcome from this hook.
* The directory is trusted state, like the home itself (the hook trusts what it
  reads back): keep it where the agent's tools cannot write (see the README).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clearance.errors import InputError


def _name(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        encoded = part.encode("utf-8", "surrogatepass")
        digest.update(len(encoded).to_bytes(8, "big") + encoded)
    return digest.hexdigest()


class HookState:
    """The session and call records under ``root`` (created on first use, mode 0700)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, kind: str) -> Path:
        path = self.root / kind
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path

    def _write_new(self, path: Path, record: Mapping[str, Any]) -> bool:
        """Publish ``record`` at ``path`` unless a record is there; True when this one won."""
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(record, out)
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(temporary, path)
            except FileExistsError:
                return False
            return True
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)

    @staticmethod
    def _read(path: Path) -> dict[str, Any] | None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        record = json.loads(text)
        if not isinstance(record, dict):
            raise InputError(f"hook state {path} is not a JSON object")
        return record

    # -- sessions ----------------------------------------------------------------------

    def session_trace(self, session_id: str) -> str | None:
        """The trace id kept for ``session_id``, if any."""
        record = self._read(self._dir("sessions") / _name(session_id))
        if record is None:
            return None
        trace_id = record.get("trace_id")
        if record.get("session_id") != session_id or not isinstance(trace_id, str):
            raise InputError("the hook state of this session is damaged")
        return trace_id

    def adopt_trace(self, session_id: str, trace_id: str, opened_at: float) -> str:
        """Keep ``trace_id`` for ``session_id`` unless one is kept; returns the one kept."""
        path = self._dir("sessions") / _name(session_id)
        record = {"session_id": session_id, "trace_id": trace_id, "opened_at": opened_at}
        if self._write_new(path, record):
            return trace_id
        kept = self.session_trace(session_id)
        if kept is None:
            raise InputError("the hook state of this session vanished while it was written")
        return kept

    # -- calls -------------------------------------------------------------------------

    def _call_path(self, session_id: str, tool_use_id: str) -> Path:
        return self._dir("calls") / _name(session_id, tool_use_id)

    def remember_call(self, session_id: str, tool_use_id: str, record: Mapping[str, Any]) -> None:
        """Keep the decision of one tool call until its outcome is recorded.

        A second PreToolUse event for the same call replaces the first record.
        """
        path = self._call_path(session_id, tool_use_id)
        full = {**record, "session_id": session_id, "tool_use_id": tool_use_id}
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self._write_new(path, full)

    def take_call(self, session_id: str, tool_use_id: str) -> dict[str, Any] | None:
        """The kept decision of one tool call, removed so it is recorded once; or None."""
        path = self._call_path(session_id, tool_use_id)
        taken = path.with_name(path.name + f".taking-{os.getpid()}")
        try:
            os.rename(path, taken)  # atomic: exactly one PostToolUse process gets it
        except FileNotFoundError:
            return None
        try:
            record = self._read(taken)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(taken)
        if record is None or record.get("tool_use_id") != tool_use_id:
            raise InputError("the hook state of this tool call is damaged")
        return record
