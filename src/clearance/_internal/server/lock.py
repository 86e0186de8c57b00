"""One ``clearance serve`` per home: an exclusive lock on ``HOME/serve.lock``.

Invariants: the SQLite ledger has one appending process at a time (docs/design.md §7),
and the server's one-report-per-grant check relies on it, so a second server on the same
home refuses to start, naming the process that holds the lock. The lock is an
``flock`` on an open file: the kernel releases it when the holder exits, however it
exits, so a crashed server never leaves a stale lock behind. Within one process the
lock is counted (the CLI takes it before uvicorn starts, the app takes it again when
it starts up), because two ``flock`` calls on two descriptors would refuse each other.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from pathlib import Path
from typing import Final

from clearance.errors import Conflict, InputError

LOCK_FILE: Final = "serve.lock"

_held: dict[Path, tuple[int, int]] = {}
"""Resolved lock path -> (descriptor, holders in this process)."""
_guard = threading.Lock()


class ServeLock:
    """A hold on a home's serve lock; :meth:`release` it (or use ``with``)."""

    def __init__(self, path: Path) -> None:
        """Internal; use :meth:`acquire`."""
        self.path = path
        self._released = False

    @classmethod
    def acquire(cls, home: Path) -> ServeLock:
        """Hold the serve lock of ``home``; Conflict when another process serves it."""
        path = (home / LOCK_FILE).resolve()
        with _guard:
            found = _held.get(path)
            if found is not None:
                _held[path] = (found[0], found[1] + 1)
                return cls(path)
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            except OSError as exc:
                raise InputError(f"cannot open {path}: {exc.strerror or exc}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _holder(fd)
                os.close(fd)
                raise Conflict(
                    f"another `clearance serve` ({holder}) is serving the home {home}: one "
                    "server per ledger; stop it first or serve another home"
                ) from None
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode("ascii"))
            _held[path] = (fd, 1)
        return cls(path)

    def release(self) -> None:
        """Give up this hold (the lock is released when the last hold is)."""
        if self._released:
            return
        self._released = True
        with _guard:
            fd, count = _held[self.path]
            if count > 1:
                _held[self.path] = (fd, count - 1)
                return
            del _held[self.path]
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)

    def __enter__(self) -> ServeLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder(fd: int) -> str:
    """Who holds the lock, as far as the file says."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return f"pid {text}" if text.isdigit() else "another process"
