"""``clearance policy …`` and ``clearance keys …``: bundles and grant-signing keys."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from clearance.cli_common import CheckFailed, HomeOption, now, out, print_json
from clearance.errors import InputError, PolicyError

policy_app = typer.Typer(
    help="Validate policy bundles and run their table-driven tests.", no_args_is_help=True
)
keys_app = typer.Typer(
    help="Publish and rotate the grant-signing keys (Ed25519, JWKS).", no_args_is_help=True
)

DirArgument = Annotated[
    Path,
    typer.Argument(metavar="DIR", help="A directory of policy YAML files (one bundle)."),
]


def _load_engine(directory: Path) -> Any:
    from clearance.policy.cel_engine import CelPolicyEngine

    if not directory.is_dir():
        raise InputError(f"{directory}: no such directory; pass the bundle's directory")
    try:
        return CelPolicyEngine.from_directory(directory)
    except PolicyError as exc:
        raise CheckFailed(f"the bundle in {directory} is INVALID: {exc.diagnostics()}") from None


@policy_app.command("validate")
def validate(directory: DirArgument) -> None:
    """Load and validate a bundle: YAML, schemas, CEL conditions, rule ids.

    Prints the bundle digest (what decisions and grants name) and how many
    rules and tools it has. Exit status 1, with the problem and where it is,
    when the bundle does not load: a gate would refuse to start with it.
    """
    engine = _load_engine(directory)
    document = engine.document()
    rules = document.get("rules") or []
    tools = document.get("tools") or {}
    out.print(f"[bold green]OK[/] bundle {directory} is valid")
    out.print(f"  digest  {engine.digest}")
    out.print(f"  rules   {len(rules)}")
    out.print(f"  tools   {len(tools)}")
    if not rules:
        out.print("  [yellow]warning:[/] no rules: this bundle denies everything")


@policy_app.command("test")
def test(
    directory: DirArgument,
    cases: Annotated[
        Path,
        typer.Argument(
            metavar="CASES.yaml",
            help="Table-driven cases: an intent, facts, and the expected effect.",
        ),
    ],
) -> None:
    """Run table-driven test cases against a bundle and show each pass or failure.

    Each case gives an intent (and optionally trace facts and a clock) and the
    expected effect and rule ids; a failing case shows what was expected and
    what the bundle decided. Exit status 1 when any case fails.
    """
    from clearance.policy.testing import run_cases

    engine = _load_engine(directory)
    if not cases.is_file():
        raise InputError(f"{cases}: no such file; pass the YAML file of test cases")
    results = run_cases(engine, cases)
    table = Table(title=f"Policy tests: {cases}", title_justify="left")
    for name in ("case", "result", "expected", "decided"):
        table.add_column(name, overflow="fold")
    for r in results:
        expected = r.case.expect + (f" {sorted(r.case.rules)}" if r.case.rules is not None else "")
        table.add_row(
            escape(r.case.name),
            "[green]pass[/]" if r.passed else "[bold red]FAIL[/]",
            escape(expected),
            escape(f"{r.decision.effect} {r.decision.rule_ids}"),
        )
    out.print(table)
    failed = [r for r in results if not r.passed]
    for r in failed:
        out.print(escape(r.diff()), style="red")
    out.print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        raise CheckFailed(f"{len(failed)} of {len(results)} policy test cases failed")


@keys_app.command("jwks")
def jwks(home: HomeOption = None) -> None:
    """Print the public grant-verification keys as a JWK Set (RFC 7517, OKP/Ed25519).

    Executors that run tools elsewhere verify grants with these keys alone;
    the HTTP gateway serves the same set at /.well-known/jwks.json.
    """
    from clearance.home import Home, find_home
    from clearance.keys import GrantKeyRing

    located = Home.load(find_home(home))
    print_json(GrantKeyRing.load(located.grant_key_dir).jwks(now()))


@keys_app.command("rotate")
def rotate(home: HomeOption = None) -> None:
    """Make a fresh grant-signing key active and retire the current one.

    The retired public key stays in the JWKS until every grant it signed has
    expired (the grant lifetime plus a small leeway), so nothing in flight
    breaks. Gates pick up the new key when they next open the home.
    """
    from clearance.home import Home, find_home
    from clearance.keys import GrantKeyRing

    located = Home.load(find_home(home))
    ring = GrantKeyRing.load(located.grant_key_dir)
    old = ring.active_kid
    key = ring.rotate(now(), float(located.settings.grant_lifetime))
    out.print(f"[bold green]Rotated[/] grant key: {old} -> {key.kid}")
    out.print(f"  the retired key stays published for {located.settings.grant_lifetime}s + leeway")
