"""``clearance policy …`` and ``clearance keys …``: bundles and grant-signing keys."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from clearance._cli.common import HomeOption, now, out, print_json
from clearance.errors import CheckFailed, InputError, PolicyError

if TYPE_CHECKING:
    from clearance._internal.grants.keys import GrantKeyRing
    from clearance._internal.home import Home
    from clearance._internal.policy.cel_engine import CelPolicyEngine
    from clearance._internal.policy_impact import (
        ImpactReport,
        Outcome,
        UnverifiableDecision,
    )

policy_app = typer.Typer(
    help="Validate and lint policy bundles, run their table-driven tests, and show what a "
    "candidate would change among logged decisions.",
    no_args_is_help=True,
)
keys_app = typer.Typer(
    help="Publish and rotate the grant-signing keys (Ed25519, JWKS).", no_args_is_help=True
)

DirArgument = Annotated[
    Path,
    typer.Argument(metavar="DIR", help="A directory of policy YAML files (one bundle)."),
]


def _load_engine(directory: Path) -> Any:
    from clearance._internal.policy.cel_engine import CelPolicyEngine

    if not directory.is_dir():
        raise InputError(f"{directory}: no such directory; pass the bundle's directory")
    try:
        return CelPolicyEngine.from_directory(directory)
    except PolicyError as exc:
        raise CheckFailed(f"the bundle in {directory} is INVALID: {exc.diagnostics()}") from None


def _load_or_refuse(directory: Path) -> CelPolicyEngine:
    """The engine of the bundle in ``directory``; InputError or PolicyError (exit 2) otherwise."""
    from clearance._internal.policy.cel_engine import CelPolicyEngine

    if not directory.is_dir():
        raise InputError(f"{directory}: no such directory; pass the bundle's directory")
    try:
        return CelPolicyEngine.from_directory(directory)
    except PolicyError as exc:
        raise PolicyError(f"the bundle in {directory} is INVALID: {exc.diagnostics()}") from None


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


@policy_app.command("lint")
def lint(directory: DirArgument) -> None:
    """Report policy-author traps in a bundle that loads (the gate logs the same warnings).

    Prints one line per warning, ``warning[CODE] rule ID: message``, or "no
    warnings". Codes: totals-negative (a capped total whose amount may be
    negative), totals-sensitive (a capped total over a sensitive argument,
    which never counts), action-lookalike and action-undeclared (with strict:
    false, a rule action that is not a declared tool). Exit status 0 when
    clean, 1 when there is at least one warning, 2 when the bundle does not
    load.
    """
    from clearance._internal.policy.lint import lint_bundle

    # Exit 2 for a bundle that does not load, not CheckFailed's 1: 1 means "loaded, with warnings".
    engine = _load_or_refuse(directory)
    warnings = lint_bundle(engine.bundle)
    for warning in warnings:
        out.print(warning.render(), markup=False, soft_wrap=True)
    if not warnings:
        out.print(f"no warnings in bundle {directory}", markup=False, soft_wrap=True)
        return
    raise CheckFailed(f"{len(warnings)} lint warning(s) in the bundle in {directory}")


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
    from clearance._internal.policy.testing import run_cases

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


_EFFECT_STYLE = {"allow": "green", "deny": "bold red", "approval_required": "yellow"}


def _outcome(outcome: Outcome) -> str:
    rules = ", ".join(outcome.rules) or "(no rule matched)"
    return f"{outcome.effect} [{rules}]"


def _print_impact(report: ImpactReport, directory: Path) -> None:
    """The human form: a row per change or unverifiable decision, then the counts."""
    from clearance._internal.policy_impact import DecisionChange

    table = Table(
        title=f"Policy impact of {directory} ({report.candidate_digest[:19]}…)",
        title_justify="left",
    )
    for name in ("index", "request id", "action", "logged", "candidate"):
        table.add_column(name, justify="right" if name == "index" else "left", overflow="fold")
    listed: list[DecisionChange | UnverifiableDecision] = [*report.changes, *report.unverifiable]
    listed.sort(key=lambda r: r.decision.index)
    for row in listed:
        if isinstance(row, DecisionChange):
            other = " (other rules)" if row.kind == "rules" else ""
            style = _EFFECT_STYLE[row.candidate.effect]
            shown = f"[{style}]{escape(_outcome(row.candidate))}[/]{other}"
        else:
            shown = f"[yellow]unverifiable[/]: {escape(row.reason)}"
        table.add_row(
            str(row.decision.index),
            escape(row.decision.request_id),
            escape(row.decision.action),
            escape(_outcome(row.logged)),
            shown,
        )
    if listed:
        out.print(table)
    window = (
        f" (log entries {report.first_index} to {report.last_index})"
        if report.first_index is not None
        else ""
    )
    out.print(
        f"{report.examined} decisions examined{window}: {report.unchanged} unchanged, "
        f"{len(report.changes)} would change, {len(report.unverifiable)} unverifiable",
        markup=False,
        soft_wrap=True,
    )
    if report.changes:
        for name, counts in (
            ("by change", report.by_transition),
            ("by candidate rule", report.by_candidate_rule),
            ("by logged rule", report.by_logged_rule),
            ("by action", report.by_action),
        ):
            line = f"  {name}: " + ", ".join(f"{key} {n}" for key, n in counts.items())
            out.print(line, markup=False, soft_wrap=True)


@policy_app.command("impact")
def impact(
    directory: DirArgument,
    last: Annotated[
        int | None,
        typer.Option(
            "--last",
            min=1,
            metavar="N",
            help="How many of the newest decisions to examine (default 1000).",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    home: HomeOption = None,
) -> None:
    """Show which logged decisions a candidate bundle would decide differently.

    Evaluates the newest N decision entries of the home's ledger under the bundle
    in DIR, each with the intent, trace facts, clock and value provenance it was
    logged with (as `clearance replay` rebuilds them), and lists every decision
    whose effect would change (allow, deny, approval_required) or that other rules
    would decide with the same effect. Counts them by change, by rule (candidate
    and logged) and by action. A decision the candidate cannot be evaluated on
    faithfully (a rule reads a redacted argument, fingerprints need the home's
    key) is listed as unverifiable with the reason. Writes nothing. Exit status 0
    when no decision would change, 1 when at least one would, 2 when the bundle
    does not load or the home cannot be opened.
    """
    from clearance._internal.home import Home, find_home
    from clearance._internal.policy_impact import DEFAULT_LAST, analyze_impact
    from clearance._internal.sealing import PROVENANCE_PURPOSE, derive_key
    from clearance._internal.wiring import open_ledger

    engine = _load_or_refuse(directory)
    located = Home.load(find_home(home))
    with open_ledger(located) as ledger:
        key = derive_key(located.read_log_skey(), PROVENANCE_PURPOSE)
        report = analyze_impact(
            ledger, engine, last=DEFAULT_LAST if last is None else last, provenance_key=key
        )
    if as_json:
        print_json(report.to_json())
    else:
        _print_impact(report, directory)
    if report.changes:
        raise CheckFailed(
            f"{len(report.changes)} of {report.examined} decisions would change under the "
            f"bundle in {directory}"
        )


def _sealed_ring(located: Home) -> GrantKeyRing:
    """The home's grant key ring, verified with the seal key derived from its log key."""
    from clearance._internal import sealing
    from clearance._internal.grants.keys import GrantKeyRing

    seal_key = sealing.derive_key(located.read_log_skey(), sealing.JWKS_PURPOSE)
    return GrantKeyRing.load(located.grant_key_dir, seal_key=seal_key)


@keys_app.command("jwks")
def jwks(home: HomeOption = None) -> None:
    """Print the public grant-verification keys as a JWK Set (RFC 7517, OKP/Ed25519).

    Executors that run tools elsewhere verify grants with these keys alone;
    the HTTP gateway serves the same set at /.well-known/jwks.json. Only a
    ring whose seal verifies is published. It holds the active key and the
    retired keys that signed grants still within their lifetime; a retired
    key the ledger never logged (it signed nothing) is left out.
    """
    from clearance._internal.home import Home, find_home
    from clearance._internal.wiring import open_ledger

    located = Home.load(find_home(home))
    ring = _sealed_ring(located)
    with open_ledger(located) as ledger:
        document = ring.jwks(now(), keep_retired=lambda kid: bool(ledger.find("key", kid)))
    print_json(document)


@keys_app.command("rotate")
def rotate(home: HomeOption = None) -> None:
    """Make a fresh grant-signing key active and retire the current one.

    The retired public key stays in the JWKS until every grant it signed has
    expired (the grant lifetime plus a small leeway), so nothing in flight
    breaks. Gates pick up the new key when they next open the home.
    """
    from clearance._internal.home import Home, find_home

    located = Home.load(find_home(home))
    ring = _sealed_ring(located)
    old = ring.active_kid
    key = ring.rotate(now(), float(located.settings.grant_lifetime))
    out.print(f"[bold green]Rotated[/] grant key: {old} -> {key.kid}")
    out.print(f"  the retired key stays published for {located.settings.grant_lifetime}s + leeway")


@keys_app.command("seal")
def seal(home: HomeOption = None) -> None:
    """Seal the grant key ring's jwks.json as it is now, vouching for every key it lists.

    Gates and `clearance keys` refuse a ring whose seal is missing (written by
    an older version) or does not verify (edited outside clearance). Inspect
    keys/grant/jwks.json first: every kid must be a key this home created.
    Prints each key sealed and warns about retired keys the ledger never
    logged, which no grant of this home was signed with.
    """
    from clearance._internal import sealing
    from clearance._internal.grants.keys import GrantKeyRing
    from clearance._internal.home import Home, find_home
    from clearance._internal.wiring import open_ledger
    from clearance.errors import Error

    located = Home.load(find_home(home))
    seal_key = sealing.derive_key(located.read_log_skey(), sealing.JWKS_PURPOSE)
    ring = GrantKeyRing.reseal(located.grant_key_dir, seal_key=seal_key)
    logged: set[str] | None
    try:
        with open_ledger(located) as ledger:
            logged = {k.kid for k in ring.keys if ledger.find("key", k.kid)}
    except Error as exc:
        logged = None
        out.print(f"[yellow]warning:[/] cannot read the ledger's key entries: {escape(str(exc))}")
    out.print(f"[bold green]Sealed[/] grant key ring {escape(str(located.grant_key_dir))}")
    unlogged = [
        k.kid for k in ring.keys if not k.active and logged is not None and k.kid not in logged
    ]
    for key in ring.keys:
        mark = "  (retired, never signed a grant here)" if key.kid in unlogged else ""
        out.print(f"  {'active ' if key.active else 'retired'}  {key.kid}{mark}")
    if unlogged:
        # A retired key the ledger never saw is what the key-injection attack leaves behind
        # (a rotation straight after another one looks the same, and is harmless to drop).
        out.print(
            f"[yellow]warning:[/] {len(unlogged)} retired key(s) have no `key` entry in the "
            "ledger: no grant of this home was signed with them, and `clearance keys jwks` "
            "leaves them out. If you did not retire them yourself, remove them from "
            "jwks.json and run `clearance keys seal` again."
        )
