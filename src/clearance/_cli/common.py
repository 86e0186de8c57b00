"""Shared pieces of the ``clearance`` command: consoles, options, input readers.

Conventions every command follows (see :mod:`clearance._cli.main`):

* Results go to standard output (JSON when asked for, rich tables otherwise);
  diagnostics go to standard error.
* A command never prints a traceback for a :class:`~clearance.errors.Error`:
  it raises, and :func:`clearance._cli.main.main` prints ``error: <diagnostics>``
  in one place. Exit codes: 2 for bad input or a failure to run, 1 when a
  check ran and failed (:class:`CheckFailed`), and command-specific codes
  documented in each command's help.
* Files named on the command line are read here, with size limits and
  messages that name the file and say what was expected.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from clearance._internal import strict_json
from clearance.errors import InputError

MAX_INPUT_FILE = 16 << 20
"""Largest file (bytes) a command reads: receipts carry whole policy bundles."""

PIPE_WIDTH = 180
"""Width of tables written to a pipe or file (a terminal's own width is used otherwise)."""

out = Console(highlight=False, emoji=False, width=None if sys.stdout.isatty() else PIPE_WIDTH)
"""Standard output, for results."""

DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database",
        help=(
            "A postgresql:// URL (the scale-out store) or 'sqlite' (the home's files, the "
            "default); same as the global --database and $CLEARANCE_DATABASE."
        ),
        show_default=False,
    ),
]


def use_database(database: str | None) -> None:
    """Make ``database`` (a ``--database`` value) the database of this process and its
    children; InputError for a URL that is neither ``sqlite`` nor PostgreSQL."""
    if database is None:
        return
    from clearance._internal.home import DATABASE_ENV
    from clearance._internal.postgres import check_url

    chosen = database.strip()
    if chosen != "sqlite":
        check_url(chosen)
    os.environ[DATABASE_ENV] = chosen


HomeOption = Annotated[
    Path | None,
    typer.Option(
        "--home",
        help="The clearance home directory. Defaults to $CLEARANCE_HOME, else ./.clearance.",
        show_default=False,
    ),
]


def now() -> float:
    """The CLI is the outermost layer: the only place that reads the clock."""
    return time.time()


def read_text(path: Path | str, what: str, *, limit: int = MAX_INPUT_FILE) -> str:
    """Read ``path`` (``-`` for standard input) as UTF-8 text, naming ``what`` on failure."""
    name = str(path)
    try:
        if name == "-":
            data = sys.stdin.buffer.read(limit + 1)
            name = "standard input"
        else:
            with open(name, "rb") as handle:
                data = handle.read(limit + 1)
    except FileNotFoundError:
        raise InputError(f"{what} {name}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{what} {name}: is a directory, expected a file") from None
    except OSError as exc:
        raise InputError(f"{what} {name}: cannot read it ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise InputError(f"{what} {name}: larger than {limit} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{what} {name}: not UTF-8 text (byte {exc.start})") from None


def parse_json(text: str, where: str) -> Any:
    """Strict JSON: duplicate keys and NaN/Infinity are rejected; errors say where."""
    try:
        return strict_json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{where}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise InputError(f"{where}: invalid JSON: {exc}") from None


def print_json(value: Any) -> None:
    """Print ``value`` as indented JSON on standard output (no rich markup)."""
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def short(text: Any, width: int = 48) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
