"""Durable, atomic file replacement: the one way clearance rewrites a file in place.

Invariant: a reader sees either the whole old file or the whole new one, never a
torn write. The data goes to a fresh temporary file in the same directory
(``O_EXCL``, never following a symbolic link, created with the final ``mode`` so
there is no window with wider permissions), which is fsynced, renamed over the
target, and the directory fsynced so the rename itself survives a power cut.
``sync=False`` skips both fsyncs for data that is allowed to be as durable as the
OS page cache (``relaxed`` durability). Every failure is an ``OSError`` for the
caller to translate; the temporary file is removed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """fsync ``directory`` so that renames and unlinks in it are durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, mode: int, sync: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically (see the module docstring)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if sync:
        fsync_dir(path.parent)
