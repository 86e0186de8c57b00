"""``clearance api-keys …``: create, list and revoke the runtime API's keys.

Keys live in ``HOME/apikeys.db`` (:mod:`clearance._internal.apikeys`); creating and
revoking one appends an ``apikey`` entry to the home's ledger, safely even while
``clearance serve`` has the same ledger open. A created key is printed once and
never again: the home keeps only its hash.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Final

import typer
from rich.markup import escape
from rich.table import Table

from clearance._cli.common import HomeOption, now, out, print_json
from clearance.errors import InputError

if TYPE_CHECKING:
    from clearance._internal.apikeys import ApiKey, ApiKeyStore

apikeys_app = typer.Typer(
    help=(
        "Create, list and revoke API keys for `clearance serve` (scopes: agent, "
        "orchestrator, approver, auditor, admin)."
    ),
    no_args_is_help=True,
)

_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION: Final = re.compile(r"([0-9]{1,10})([smhdw])")
SHOWN_ONCE: Final = (
    "This key is shown only once: store it now (for example in your secret manager). "
    "clearance keeps only its hash and cannot show it again."
)


def parse_duration(text: str) -> float:
    """``30d``, ``12h``, ``15m``, ``3600s`` or ``2w`` as seconds; InputError otherwise."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise InputError(
            f"--expires {text!r} is not a duration: use a whole number and a unit, "
            "s m h d or w (e.g. 3600s, 12h, 30d)"
        )
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise InputError(f"--expires {text!r} must be a positive duration (e.g. 12h)")
    return float(seconds)


def _moment(value: float | None, empty: str = "-") -> str:
    if value is None:
        return empty
    from clearance._internal.entries import timestamp

    return timestamp(value)[:19].replace("T", " ") + "Z"


@contextmanager
def _store(home: HomeOption, *, with_ledger: bool) -> Iterator[ApiKeyStore]:
    """The home's key store, with its ledger open when entries are to be written."""
    from clearance._internal.home import Home, find_home
    from clearance._internal.wiring import open_api_keys, open_ledger

    located = Home.load(find_home(home))
    if not with_ledger:
        with open_api_keys(located, clock=now) as store:
            yield store
        return
    with open_ledger(located) as ledger, open_api_keys(located, ledger=ledger, clock=now) as store:
        yield store


def _ledger_index(store: ApiKeyStore, name: str, event: str) -> int | None:
    """The index of the newest ``apikey`` entry of ``name`` for ``event`` (None: not logged)."""
    ledger = store.ledger
    if ledger is None:
        return None
    found = [e for e in ledger.find("apikey", name) if e.entry.get("event") == event]
    return found[-1].index if found else None


@apikeys_app.command("create")
def create(
    name_arg: Annotated[
        str | None,
        typer.Argument(
            metavar="[NAME]",
            help="A unique name (a-z 0-9 _ . -). Default: a generated key-<hex>.",
            show_default=False,
        ),
    ] = None,
    name_opt: Annotated[
        str | None, typer.Option("--name", help="The name, as an option (same as NAME).")
    ] = None,
    scope: Annotated[
        list[str] | None,
        typer.Option(
            "--scope",
            help="A scope (repeat for several): agent, orchestrator, approver, auditor, admin.",
            show_default=False,
        ),
    ] = None,
    principal: Annotated[
        str | None,
        typer.Option(
            "--principal",
            help="The identity requests made with the key act as, e.g. agent:billing-bot.",
            show_default=False,
        ),
    ] = None,
    expires: Annotated[
        str | None,
        typer.Option(
            "--expires",
            help="Lifetime: 3600s, 15m, 12h, 30d or 2w. Default: no expiry (revoke it instead).",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object (with the key) instead of text.")
    ] = False,
    home: HomeOption = None,
) -> None:
    """Create an API key and print it ONCE; the home keeps only its hash.

    The key authenticates requests to `clearance serve` as `--principal`, with the
    given scopes, from the moment this returns. Creation is an `apikey` entry in the
    ledger (the name, id, scopes, principal and expiry; never the key).
    """
    import secrets

    from clearance._internal.apikeys.model import (
        check_expires_in,
        check_name,
        check_principal,
        check_scopes,
    )

    if name_arg is not None and name_opt is not None and name_arg != name_opt:
        raise InputError(f"two names given ({name_arg!r} and --name {name_opt!r}); give one")
    name = name_arg or name_opt or f"key-{secrets.token_hex(4)}"
    if not scope:
        raise InputError(
            "give at least one --scope: agent, orchestrator, approver, auditor or admin"
        )
    if principal is None:
        raise InputError("give --principal, the identity the key acts as (e.g. agent:billing-bot)")
    lifetime = parse_duration(expires) if expires is not None else None
    # Checked before the ledger is opened, so a typo costs nothing.
    check_name(name)
    check_scopes(scope)
    check_principal(principal)
    check_expires_in(lifetime)
    with _store(home, with_ledger=True) as store:
        token, key = store.create(name, scopes=scope, principal=principal, expires_in=lifetime)
        index = _ledger_index(store, name, "created")
    if as_json:
        print_json({**key.to_json(), "key": token, "ledger_index": index, "warning": SHOWN_ONCE})
        return
    out.print(f"[bold green]Created[/] API key {escape(key.name)!r} (id {key.key_id})")
    out.print(f"  scopes     {', '.join(sorted(key.scopes))}")
    out.print(f"  principal  {escape(key.principal)}")
    out.print(f"  expires    {_moment(key.expires_at, 'never')}")
    if index is not None:
        out.print(f"  ledger     entry {index}")
    out.print("")
    # Written raw: rich would fold a long word at the terminal's width.
    sys.stdout.write(token + "\n\n")
    sys.stdout.flush()
    out.print(f"[bold yellow]{SHOWN_ONCE}[/]")


def _row(key: ApiKey, at: float) -> dict[str, object]:
    return {**key.to_json(), "status": key.status(at)}


@apikeys_app.command("list")
def list_keys(
    as_json: Annotated[bool, typer.Option("--json", help="Print the keys as JSON.")] = False,
    home: HomeOption = None,
) -> None:
    """List API keys: name, scopes, principal, created, last used, expiry and status.

    Revoked and expired keys are listed too. Never shows a key: only the home's
    hash of it exists. Last use is recorded to within a minute.
    """
    with _store(home, with_ledger=False) as store:
        keys = store.list()
    at = now()
    if as_json:
        print_json([_row(k, at) for k in keys])
        return
    if not keys:
        out.print(
            "no API keys; create one with `clearance api-keys create --scope SCOPE --principal ID`"
        )
        return
    table = Table(title=f"API keys ({len(keys)})", title_justify="left")
    columns = ("name", "id", "scopes", "principal", "created", "last used", "expires", "status")
    for column in columns:
        table.add_column(column, overflow="fold")
    for key in keys:
        status = key.status(at)
        shown = {"active": "[green]active[/]", "expired": "[yellow]expired[/]"}.get(
            status, f"[red]revoked[/] {_moment(key.revoked_at)}"
        )
        table.add_row(
            escape(key.name),
            key.key_id,
            ", ".join(sorted(key.scopes)),
            escape(key.principal),
            _moment(key.created_at),
            _moment(key.last_used_at, "never"),
            _moment(key.expires_at, "never"),
            shown,
        )
    out.print(table)


@apikeys_app.command("revoke")
def revoke(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The key to revoke.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the revoked key as JSON.")] = False,
    home: HomeOption = None,
) -> None:
    """Revoke an API key: running servers refuse it within a second.

    The revocation is an `apikey` entry in the ledger. Revoking a revoked key is
    an error, unless its ledger entry could not be written the first time: then
    this writes it.
    """
    with _store(home, with_ledger=True) as store:
        key = store.revoke(name)
        index = _ledger_index(store, name, "revoked")
    if as_json:
        print_json({**_row(key, now()), "ledger_index": index})
        return
    out.print(
        f"[bold green]Revoked[/] API key {escape(key.name)!r} (id {key.key_id}) at "
        f"{_moment(key.revoked_at)}; running servers refuse it within a second"
    )
    if index is not None:
        out.print(f"  ledger     entry {index}")
