"""``clearance check``, ``replay``, ``receipt`` and ``verify``: deciding and auditing.

``verify`` is deliberately offline: it opens no home and no database, and
trusts nothing but the verifier key it is given (docs/design.md §5 "Receipt").
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.markup import escape
from rich.table import Table

from clearance._cli.common import (
    HomeOption,
    now,
    out,
    parse_json,
    print_json,
    read_text,
    short,
)
from clearance.errors import CheckFailed, InputError, ProofError

EXIT_DENY = 1
EXIT_APPROVAL = 3


def check(
    intent_file: Annotated[
        str,
        typer.Argument(
            metavar="INTENT.json", help="The intent to decide, as a JSON file; '-' reads stdin."
        ),
    ],
    mandate: Annotated[
        str | None,
        typer.Option(
            "--mandate",
            help="Decide as if in a new trace opened with this mandate text.",
            show_default=False,
        ),
    ] = None,
    bounds: Annotated[
        str | None,
        typer.Option(
            "--bounds",
            metavar="JSON",
            help="The mandate's bounds as a JSON object, e.g. '{\"spend_cap\": 600}'.",
            show_default=False,
        ),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Decide an intent without running it and without opening the ledger (a dry run).

    The intent is decided as a governed call made with no trace open would be:
    under the home's default mandate (`default_mandate` in clearance.yaml), at
    depth 0; with `--mandate`/`--bounds`, as the first call of a new trace opened
    with that mandate. An intent naming a `trace_id` or `parent_id` is refused (only trusted
    code opens traces). Prints the decision as JSON: effect, the reasons (rule ids
    and messages), the policy bundle digest, the intent digest and the trace facts
    the policy saw. Writes nothing: no ledger, spool, replay store or checkpoint is
    opened. Exit status: 0 allow, 1 deny, 3 approval_required, 2 for a malformed
    intent (unknown fields, wrong types) or a missing home.
    """
    from clearance._internal.intent import Intent

    where = "standard input" if intent_file == "-" else intent_file
    raw = parse_json(read_text(intent_file, "intent file"), where)
    try:
        intent = Intent.from_json(raw)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    from clearance._internal.gate.dry_run import dry_run  # imported late: bad input fails fast
    from clearance._internal.home import Home, find_home, parse_mandate

    located = Home.load(find_home(home))
    given = None
    if mandate is not None or bounds is not None:
        parsed_bounds = parse_json(bounds, "--bounds") if bounds is not None else {}
        given = parse_mandate({"text": mandate or "", "bounds": parsed_bounds}, "--bounds")
    parsed, decision, facts = dry_run(located, intent, now(), mandate=given)
    print_json(
        {
            "effect": decision.effect,
            "reasons": [r.to_json() for r in decision.reasons],
            "policy_digest": decision.policy_digest,
            "intent_digest": parsed.digest,
            "facts": facts,
            "trace_required": located.settings.require_trace,
        }
    )
    if decision.effect == "deny":
        raise typer.Exit(EXIT_DENY)
    if decision.effect == "approval_required":
        raise typer.Exit(EXIT_APPROVAL)


def _rules(summary: Any) -> str:
    if not isinstance(summary, dict):
        return "-"
    rules = ", ".join(str(r) for r in summary.get("rules") or []) or "(no rule matched)"
    return f"{summary.get('effect')} [{rules}]"


def replay(
    request_id: Annotated[
        str | None,
        typer.Argument(help="The request id of one decision (r…); omit with --all."),
    ] = None,
    replay_all: Annotated[
        bool, typer.Option("--all", help="Replay every decision in the log.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    home: HomeOption = None,
) -> None:
    """Re-evaluate logged decisions under the exact bundle and facts they were made with.

    Each decision entry names its policy digest; the bundle is read from the
    log's `policy` entry, the trace facts and the clock from the decision
    entry itself, and the trace's value fingerprints from the `provenance`
    entry its facts name. `match` means the same effect and rules came out again;
    `mismatch` means the engine, the bundle or the log changed (exit status 1);
    `unverifiable` means the log lacks the bundle or the decision's sensitive
    arguments are redacted.
    """
    from clearance._internal.decision_replay import DecisionReplayer
    from clearance._internal.home import Home, find_home
    from clearance._internal.sealing import PROVENANCE_PURPOSE, derive_key
    from clearance._internal.wiring import open_ledger

    if replay_all == (request_id is not None):
        raise InputError("give either one REQUEST_ID or --all (not both, not neither)")
    located = Home.load(find_home(home))
    with open_ledger(located) as ledger:
        key = derive_key(located.read_log_skey(), PROVENANCE_PURPOSE)
        replayer = DecisionReplayer(ledger, provenance_key=key)
        if request_id is not None:
            results = [replayer.replay_request(request_id)]
        else:
            results = list(replayer.replay_all())
    if as_json:
        print_json([r.to_json() for r in results])
    else:
        table = Table(title="Decision replay", title_justify="left")
        for name in ("index", "request id", "logged", "replayed", "status"):
            table.add_column(name, justify="right" if name == "index" else "left")
        colours = {"match": "green", "mismatch": "bold red", "unverifiable": "yellow"}
        for r in results:
            detail = f" {escape(short(r.detail, 60))}" if r.detail else ""
            table.add_row(
                str(r.index),
                escape(r.request_id),
                escape(_rules(r.logged)),
                escape(_rules(r.replayed)),
                f"[{colours[r.status]}]{r.status}[/]{detail}",
            )
        out.print(table)
        counts = {s: sum(1 for r in results if r.status == s) for s in colours}
        out.print(
            f"{len(results)} decisions: {counts['match']} match, "
            f"{counts['mismatch']} mismatch, {counts['unverifiable']} unverifiable"
        )
    if any(r.status == "mismatch" for r in results):
        raise typer.Exit(1)


def receipt(
    request_id: Annotated[str, typer.Argument(help="The request id (r…) whose entry to prove.")],
    entry_kind: Annotated[
        str,
        typer.Option(
            "--entry",
            help="Which entry of the request: 'decision' or 'execution'.",
        ),
    ] = "decision",
    output_format: Annotated[
        str,
        typer.Option(
            "--format", help="'json' (docs/design.md §5 receipt) or 'tlog-proof' (C2SP text)."
        ),
    ] = "json",
    home: HomeOption = None,
) -> None:
    """Print an offline-verifiable receipt for one ledger entry of a request.

    The receipt holds the entry, its RFC 9162 inclusion proof and a signed
    checkpoint (waiting up to two seconds for one that covers the entry), plus
    the log's verifier key. Anyone can check it with `clearance verify` and
    the log's vkey, without access to this machine.
    """
    from clearance._internal.home import Home, find_home
    from clearance._internal.ledger.receipts import receipt_for_request, to_tlog_proof
    from clearance._internal.wiring import open_ledger

    if entry_kind not in ("decision", "execution"):
        raise InputError(f"--entry must be 'decision' or 'execution', not {entry_kind!r}")
    if output_format not in ("json", "tlog-proof"):
        raise InputError(f"--format must be 'json' or 'tlog-proof', not {output_format!r}")
    with open_ledger(Home.load(find_home(home))) as ledger:
        built = receipt_for_request(ledger, request_id, entry_kind)
    if output_format == "json":
        print_json(built)
    else:
        typer.echo(to_tlog_proof(built), nl=False)


def read_vkey(value: str) -> str:
    """A vkey given inline, or the path of a file holding one (``log.vkey``)."""
    candidate = Path(value)
    if "+" not in value or candidate.is_file():
        text = read_text(candidate, "vkey file", limit=4096).strip()
        if not text:
            raise InputError(f"vkey file {value} is empty")
        return text
    return value.strip()


def verify(
    receipt_file: Annotated[
        str,
        typer.Argument(
            metavar="RECEIPT_FILE",
            help="A JSON receipt or C2SP tlog-proof text; '-' reads stdin.",
        ),
    ],
    vkey: Annotated[
        str,
        typer.Option(
            "--vkey", help="The log's verifier key (name+keyid+base64), or a file holding it."
        ),
    ],
    entry_file: Annotated[
        str | None,
        typer.Option(
            "--entry",
            metavar="ENTRY.json",
            help="For a tlog-proof without an 'extra' line: the entry it proves.",
        ),
    ] = None,
    origin: Annotated[
        str | None,
        typer.Option("--origin", help="Also require the checkpoint to be for this log origin."),
    ] = None,
) -> None:
    """Verify a receipt OFFLINE, with nothing but the log's verifier key.

    Checks the checkpoint's signature, that the receipt's tree size is the
    signed one, and that the inclusion proof leads from the entry's leaf hash
    to the signed root. Opens no home and no database. On failure it names
    the step that failed (format, vkey, signature, checkpoint-format, origin,
    tree-size, canonical, inclusion) and exits with status 1.
    """
    from clearance._internal.ledger.receipts import (
        TLOG_PROOF_HEADER,
        verify_receipt,
        verify_tlog_proof,
    )

    trusted = read_vkey(vkey)
    text = read_text(receipt_file, "receipt file")
    kind: Literal["receipt", "tlog-proof"] = (
        "tlog-proof" if text.startswith(TLOG_PROOF_HEADER) else "receipt"
    )
    entry: dict[str, Any] | None = None
    if entry_file is not None:
        raw = parse_json(read_text(entry_file, "entry file"), entry_file)
        if not isinstance(raw, dict):
            raise InputError(f"{entry_file}: the entry must be a JSON object")
        entry = raw
    try:
        if kind == "tlog-proof":
            result = verify_tlog_proof(text, trusted, entry=entry, origin=origin)
        else:
            if entry is not None:
                raise InputError(
                    "--entry applies to tlog-proof files only; a receipt holds its entry"
                )
            result = verify_receipt(text, trusted, origin=origin)
    except ProofError as exc:
        raise CheckFailed(f"{kind} does NOT verify: step '{exc.step}' failed: {exc}") from None
    logged = result.entry
    out.print(f"[bold green]OK[/] {kind} verifies against {trusted.split('+')[0]}")
    out.print(f"  entry       {logged.get('type')} {logged.get('request_id') or ''}".rstrip())
    out.print(f"  leaf index  {result.leaf_index} of a tree of {result.tree_size}")
    out.print(f"  root        {base64.b64encode(result.root).decode('ascii')}")
    out.print(f"  log origin  {result.origin}")


def register(app: typer.Typer) -> None:
    """Attach these commands to the top-level ``clearance`` app."""
    app.command()(check)
    app.command()(replay)
    app.command()(receipt)
    app.command()(verify)
