"""The ``clearance`` command line.

Every command raises :class:`~clearance.errors.Error` for anything that goes
wrong; :func:`main` is the one place that catches it, prints ``error:`` and
the error's :meth:`~clearance.errors.Error.diagnostics` on standard error and
exits with status 2 (1 for a :class:`~clearance._cli.common.CheckFailed`). No
command prints a traceback for an expected failure.

Exit statuses: 0 success; 1 a check ran and failed (a denial from ``check``,
a log that does not verify, a receipt that does not verify, a replay
mismatch, a failing policy test); 2 bad input or a failure to run; 3 the
decision is ``approval_required`` (``check`` only).

The commands live in small modules: :mod:`clearance._cli.log` (``log``),
:mod:`clearance._cli.admin` (``policy``, ``keys``) and
:mod:`clearance._cli.audit` (``check``, ``replay``, ``receipt``, ``verify``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from clearance._cli.admin import keys_app, policy_app
from clearance._cli.apikeys import apikeys_app
from clearance._cli.approvals import approvals_app
from clearance._cli.audit import register as register_audit
from clearance._cli.common import HomeOption, now, out, use_database
from clearance._cli.hook import hook_app
from clearance._cli.log import log_app
from clearance._cli.mcp import mcp_app
from clearance._cli.migrate import migrate
from clearance._cli.serve import serve
from clearance.errors import CheckFailed, Error, InputError

app = typer.Typer(
    name="clearance",
    help=(
        "Pre-execution authorization for AI agents, with a verifiable audit log.\n\n"
        "Every action an agent takes is decided by policy, logged in an append-only "
        "Merkle log (RFC 9162) before it runs, and executed only with a short-lived "
        "grant bound to the exact intent. Start with `clearance init`, then try "
        "`clearance demo`."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)


@app.callback()
def root(
    database: Annotated[
        str | None,
        typer.Option(
            "--database",
            help=(
                "Where the ledger, replay store and API keys live: a postgresql:// URL (the "
                "scale-out store) or 'sqlite' (the home's own files, the default). Same as "
                "$CLEARANCE_DATABASE; overrides `database:` in clearance.yaml."
            ),
            show_default=False,
        ),
    ] = None,
) -> None:
    """Options every command shares."""
    use_database(database)  # for the command and the processes it starts


@app.command()
def init(
    directory: Annotated[
        Path | None,
        typer.Argument(
            help="Where to create the home. Defaults to $CLEARANCE_HOME, else ./.clearance.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Create a clearance home: settings, keys, the example policy bundle and the ledger.

    The grant-signing key and the log's checkpoint key are written with mode
    0600. The example bundle (`policies/agent.yaml`) is a starting point:
    edit it, then check it with `clearance policy validate`. An existing home
    is never overwritten.
    """
    from clearance._internal.grants.keys import GrantKeyRing
    from clearance._internal.home import find_home, init_home
    from clearance._internal.wiring import open_ledger

    target = find_home(directory)
    home = init_home(target, now=now())
    with open_ledger(home) as ledger:
        size = ledger.size()
    ring = GrantKeyRing.load(home.grant_key_dir)
    out.print(f"[bold]Created clearance home[/] {home.path}")
    out.print(f"  settings        {home.path / 'clearance.yaml'}")
    out.print(f"  grant key       {home.grant_key_dir} (kid {ring.active_kid}, mode 0600)")
    out.print(f"  log signing key {home.log_skey_path} (mode 0600)")
    vkey = home.log_vkey_path.read_text(encoding="ascii").strip()
    out.print(f"  log vkey        {home.log_vkey_path}")
    out.print(f"                  {vkey}")
    for policy in sorted(home.policy_dir.glob("*.y*ml")):
        out.print(f"  policy          {policy}")
    out.print(f"  ledger          {home.ledger_path} ({size} entries)")
    out.print(f"  origin          {home.settings.origin}")
    out.print("Next: `clearance policy validate " + str(home.policy_dir) + "`")


register_audit(app)
app.command()(serve)


@app.command()
def demo(
    home: Annotated[
        Path | None,
        typer.Option(
            "--home",
            help="The demo's own home (created if missing, reused if it exists).",
            show_default="./.clearance-demo",
        ),
    ] = None,
    exit_after: Annotated[
        bool,
        typer.Option(
            "--exit",
            help="Stop the gateway and the tool service and exit after the run, without "
            "serving the console (the default when stdin is not a terminal).",
        ),
    ] = False,
) -> None:
    """Run a scripted agent through the real gate, against real local tools.

    Act 1, in process: the agent writes and reads files in a sandbox, reads an
    invoice carrying a prompt injection, and tries to pay an attacker; it pays
    the real supplier into a SQLite payments table. A forged grant and a
    replayed grant are presented to the executor. Act 2, over the runtime API:
    `clearance serve` and the example tool service start on loopback; an
    orchestrator key opens a trace, the agent key pays through the tool service
    with its grant, is denied, and waits while an approver key approves a
    larger payment; calls to the tool without a valid grant are refused and
    logged. Every outcome comes from the policy bundle, the ledger and the
    grant checks; each act ends with a log audit and an offline-verified
    receipt.

    On a terminal, the servers then keep running until Ctrl-C, and the
    gateway serves the governance console: its URL is printed with an admin
    key to log in (made for the demo) and the approver's key. The demo's
    decisions are in the feed, a payment waits in the approvals inbox, and
    the runtime demo page runs the agent's steps one by one against the live
    gate. With --exit, or without a terminal, the servers are stopped.
    Re-runnable: an existing demo home is reused (and its API keys), and each
    run opens new traces, so the log keeps growing and each run proves that the
    log still extends the checkpoint the previous run saved.
    """
    from clearance._demo.run import DEFAULT_DEMO_HOME, run_demo

    summary = run_demo(
        home if home is not None else Path(DEFAULT_DEMO_HOME),
        out,
        keep_running=not exit_after and sys.stdin is not None and sys.stdin.isatty(),
    )
    if not summary.ok:
        raise CheckFailed("the demo finished, but a check failed (see above)")


@app.command()
def bench(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of tables.")
    ] = False,
    quick: Annotated[
        bool,
        typer.Option("--quick", help="Fewer iterations and no 10^6-entry ledger runs (seconds)."),
    ] = False,
    http: Annotated[
        bool,
        typer.Option(
            "--http",
            help="Instead: load a real `clearance serve` on loopback (authorize, executions).",
        ),
    ] = False,
    clients: Annotated[
        int,
        typer.Option("--clients", min=1, max=1024, help="Concurrent connections (--http)."),
    ] = 32,
    requests: Annotated[
        int,
        typer.Option("--requests", min=1, max=1_000_000, help="Requests per phase (--http)."),
    ] = 10_000,
    bench_database: Annotated[
        str | None,
        typer.Option(
            "--database",
            help=(
                "With --http: also run the load on this PostgreSQL database with one and with "
                "two gateway processes (each run in a scratch schema it drops afterwards)."
            ),
            show_default=False,
        ),
    ] = None,
) -> None:
    """Measure decision latency, governed-call latency and ledger throughput.

    Runs in process on a temporary home with the SQLite ledger: a decision
    over 300 rules and 30 tools; the full in-process governed call (decision,
    durable decision entry, empty body, outcome entry) with one fsync, the
    decision's (durable), and OS-buffered (relaxed), beside the cost of one
    fsync on the same file system; the same call at trace lengths 1,
    1,000 and 10,000; authorize + execute with a signed grant; a breakdown of
    where a governed call spends its time; the floor of a relaxed call (digest,
    evaluation and a bare SQLite commit); and ledger appends, proofs and audit.
    Medians of repeated runs are reported, with ratios to an OpenSSL Ed25519
    sign + verify measured alongside.

    With --http: starts `clearance serve` (SQLite, durable) on a temporary home and
    drives POST /v1/authorize, then POST /v1/executions for every grant, from
    --clients keep-alive connections; reports requests/s, p50, p99, errors and the
    machine's busy cores. With --http --database postgresql://...: the same load on
    SQLite, then on PostgreSQL with one and with two gateway processes, with the CPU
    time per authorization and the most two gateways could scale on this machine.
    """
    if bench_database is not None and not http:
        raise InputError("bench --database needs --http")
    if http:
        from clearance._bench.http_report import run_http_bench, run_postgres_bench

        if bench_database is not None:
            from clearance._internal.postgres import check_url

            run_postgres_bench(
                requests=requests if not quick else min(requests, 2000),
                clients=clients,
                database=check_url(bench_database),
                as_json=as_json,
                console=out,
            )
            return
        run_http_bench(
            requests=requests if not quick else min(requests, 2000),
            clients=clients,
            as_json=as_json,
            console=out,
        )
        return
    from clearance._bench.run import run_bench

    run_bench(quick=quick, as_json=as_json, console=out)


app.command()(migrate)
app.add_typer(policy_app, name="policy")
app.add_typer(keys_app, name="keys")
app.add_typer(log_app, name="log")
app.add_typer(apikeys_app, name="api-keys")
app.add_typer(approvals_app, name="approvals")
app.add_typer(hook_app, name="hook")
app.add_typer(mcp_app, name="mcp")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``clearance`` script: run the command, print errors in one place."""
    try:
        app(args=argv, prog_name="clearance")
    except Error as exc:
        # Plain text on purpose: a diagnostic may quote user input, which rich would
        # otherwise read as markup or emoji codes.
        sys.stderr.write(f"error: {exc.diagnostics()}\n")
        sys.exit(exc.exit_code if isinstance(exc, CheckFailed) else 2)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)


__all__ = ["HomeOption", "app", "main"]

if __name__ == "__main__":
    main()
