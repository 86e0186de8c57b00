"""``clearance migrate``: bring the stores' schemas up to date, or copy a log between stores.

Without ``--from``/``--to`` it applies the pending schema steps of every store of the
home's database (:mod:`clearance._internal.migrations`), and refuses a database whose
schema is newer than this clearance knows. With them, it copies a whole log between a
SQLite file and PostgreSQL and proves the copy has the same root and checkpoints
(:mod:`clearance._internal.ledger.copy`).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from clearance._cli.common import DatabaseOption, HomeOption, out, read_text, use_database
from clearance.errors import InputError

if TYPE_CHECKING:
    from clearance._internal.home import Home
    from clearance._internal.migrations import Migration


def _postgres_components() -> list[tuple[str, Sequence[Migration]]]:
    from clearance._internal.apikeys import pg_db
    from clearance._internal.grants import jti_store_pg
    from clearance._internal.ledger import postgres_schema

    return [
        (postgres_schema.COMPONENT, postgres_schema.MIGRATIONS),
        (jti_store_pg.COMPONENT, jti_store_pg.MIGRATIONS),
        (pg_db.COMPONENT, pg_db.MIGRATIONS),
    ]


def migrate(
    home: HomeOption = None,
    database: DatabaseOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the pending steps; change nothing.")
    ] = False,
    source: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Copy the log from here (sqlite:///PATH or postgresql://...); needs --to.",
            show_default=False,
        ),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="...to here, which must hold no log yet; the copy is proven equal.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Apply pending schema migrations, or copy a log between SQLite and PostgreSQL.

    Refuses a database whose schema is newer than this clearance knows (upgrade
    clearance first). `--from SOURCE --to TARGET` copies the whole log (entries, Merkle
    nodes, signed checkpoints) and proves the copy: the source and the copy are both
    audited against the home's log key, and the copy must have the same root and
    exactly the same checkpoints. Nothing is signed during a copy.
    """
    from clearance._internal.home import Home, find_home

    use_database(database)
    located = Home.load(find_home(home))
    if (source is None) != (target is None):
        raise InputError("--from and --to go together")
    if source is not None and target is not None:
        _copy(located.log_vkey_path, source, target, dry_run)
        return
    url = located.database
    if url is None:
        _sqlite(located, dry_run)
        return
    from clearance._internal.migrations import apply, current, pending
    from clearance._internal.postgres import connect, redact

    with connect(url, autocommit=True) as conn:
        for component, steps in _postgres_components():
            todo = pending(conn, component, steps)
            at = current(conn, component)
            if not todo:
                out.print(f"{component:8} version {at}: up to date")
                continue
            names = ", ".join(f"{s.version} ({s.summary})" for s in todo)
            if dry_run:
                out.print(f"{component:8} version {at}: would apply {escape(names)}")
                continue
            now_at = apply(conn, component, steps)
            out.print(f"{component:8} version {at} → {now_at}: applied {escape(names)}")
    out.print(
        f"[bold green]OK[/] {escape(redact(url))} is at the newest schema this clearance knows"
    )


def _sqlite_components(located: Home) -> list[tuple[str, Path, Sequence[Migration]]]:
    from clearance._internal.apikeys import api_keys_path, db
    from clearance._internal.grants import jti_store
    from clearance._internal.ledger import sqlite_db

    return [
        (sqlite_db.COMPONENT, located.ledger_path, sqlite_db.SQLITE_MIGRATIONS),
        (jti_store.COMPONENT, located.replay_path, jti_store.MIGRATIONS),
        (db.COMPONENT, api_keys_path(located.path), db.SQLITE_MIGRATIONS),
    ]


def _sqlite(located: Home, dry_run: bool) -> None:
    """Each SQLite store is its own file with its own version (``user_version``); opening a
    store applies its pending steps, so migrating is opening each one."""
    import sqlite3
    from contextlib import closing

    from clearance._internal.migrations import current, pending
    from clearance._internal.wiring import open_api_keys, open_ledger, open_replay_guard

    for component, path, steps in _sqlite_components(located):
        if not path.exists():
            out.print(f"{component:8} {escape(str(path))}: not created yet (made when first used)")
            continue
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            at, todo = current(conn, component), pending(conn, component, steps)
        names = ", ".join(f"{s.version} ({s.summary})" for s in todo)
        if not todo:
            state = "up to date"
        elif dry_run:
            state = f"would apply {names}"
        else:
            state = f"applying {names}"
        out.print(f"{component:8} {escape(str(path))}: version {at}, {escape(state)}")
    if dry_run:
        return
    with open_ledger(located) as ledger:
        size = ledger.size()
    open_replay_guard(located).close()
    open_api_keys(located).close()
    out.print(
        f"[bold green]OK[/] the SQLite stores of {escape(str(located.path))} are at the newest "
        f"schema this clearance knows (ledger of {size} entries)"
    )


def _copy(vkey_path: Path, source: str, target: str, dry_run: bool) -> None:
    from clearance._internal.ledger.copy import copy_log, parse_location

    vkey = read_text(vkey_path, "log vkey file", limit=4096).strip()
    origin, destination = parse_location(source), parse_location(target)
    if dry_run:
        out.print("would copy the log; --dry-run copies nothing")
        return
    copied = copy_log(origin, destination, vkey=vkey)
    root = base64.b64encode(copied.root).decode("ascii")
    out.print(
        f"[bold green]OK[/] copied {copied.size} entries and {copied.checkpoints} checkpoints "
        f"from {escape(copied.source)} to {escape(copied.target)}; both verify and have the "
        f"root {root}"
    )
