"""``clearance log …``: the ledger's verifier key, checkpoints, audit, anchor and contents.

The log is an RFC 9162 Merkle tree whose checkpoints are C2SP tlog-checkpoint
signed notes. ``log verify`` recomputes everything from the stored leaves and
checks the ledger against its anchor and witnesses (:mod:`clearance._internal.ledger.anchor`);
``log consistency`` proves (RFC 9162 §2.1.4) that the current log extends a
checkpoint saved earlier, which is how an auditor detects a rewritten history;
``log anchor --adopt`` is the one deliberate, human way to accept a ledger that
no longer extends its anchor.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from clearance._cli.common import HomeOption, now, out, print_json, read_text, short
from clearance.errors import CheckFailed, Error, InputError, ProofError, TamperError

if TYPE_CHECKING:
    from clearance._internal.home import Home
    from clearance._internal.ledger.anchor import AnchorFile, CheckpointAnchor
    from clearance._internal.ledger.checkpoint import NoteVerifier
    from clearance._internal.ledger.store import LedgerStore

log_app = typer.Typer(
    help="Inspect and audit the ledger: vkey, checkpoints, full verification, contents.",
    no_args_is_help=True,
)


def _open(home: Path | None) -> Any:
    from clearance._internal.home import Home, find_home
    from clearance._internal.wiring import open_ledger

    return open_ledger(Home.load(find_home(home)))


@log_app.command("vkey")
def vkey(home: HomeOption = None) -> None:
    """Print the log's verifier key (C2SP vkey), which checks checkpoints and receipts.

    Publish it: anyone holding it can verify receipts offline with
    `clearance verify RECEIPT --vkey KEY`.
    """
    from clearance._internal.home import Home, find_home

    located = Home.load(find_home(home))
    text = read_text(located.log_vkey_path, "log vkey file", limit=4096).strip()
    typer.echo(text)


@log_app.command("checkpoint")
def checkpoint(home: HomeOption = None) -> None:
    """Print the latest signed checkpoint (a C2SP signed note) covering the whole log.

    Save the output: later, `clearance log consistency SAVED_FILE` proves the
    log still extends it, i.e. that no entry before it was changed or removed.
    """
    with _open(home) as ledger:
        size = ledger.size()
        if size == 0:
            raise InputError("the ledger is empty, so there is no checkpoint yet")
        latest = ledger.latest_checkpoint()
        if latest is None or latest.size < size:
            latest = ledger.checkpoint_covering(size - 1, timeout=2.0)
    typer.echo(latest.note, nl=False)


def _anchor(located: Home) -> CheckpointAnchor:
    from clearance._internal.ledger.anchor import CheckpointAnchor

    return CheckpointAnchor.for_home(
        located.anchor_dir,
        located.witness_dirs,
        origin=located.settings.origin,
        sync=located.settings.durability == "durable",
    )


@log_app.command("verify")
def verify(home: HomeOption = None) -> None:
    """Audit the whole log: recompute every leaf hash, subtree and checkpoint.

    Checks that each stored entry is canonical JSON whose leaf hash matches,
    that the stored tree rebuilds from the leaves, that every stored checkpoint
    is validly signed and consistent with the tree, and that the derived
    columns (type, ref, trace_id) match each leaf. Then the anchor: the ledger
    must extend the checkpoint in HOME/checkpoints/latest and in every witness
    directory (present whenever the ledger holds checkpoints), and entries no
    checkpoint covers must be younger than `checkpoint_grace`. Read-only: it
    writes nothing. On failure it names the first bad leaf index (when there
    is one) and exits with status 1.
    """
    from clearance._internal.home import Home, find_home
    from clearance._internal.ledger.audit import verify as audit

    located = Home.load(find_home(home))
    anchor = _anchor(located)
    database = located.database
    if database is None and not located.ledger_path.is_file():
        for file in anchor.files:
            if file.path.exists():
                raise CheckFailed(
                    f"log verification FAILED at index 0: the ledger {located.ledger_path} "
                    f"is missing, but {file.describe()} anchors a signed checkpoint"
                )
        raise InputError(f"no ledger at {located.ledger_path}; nothing has been logged yet")
    vkey_text = read_text(located.log_vkey_path, "log vkey file", limit=4096).strip()
    report = audit(
        database if database is not None else located.ledger_path,
        vkey=vkey_text,
        origin=located.settings.origin,
        anchor=anchor,
        grace=located.settings.checkpoint_grace,
        now=now(),
    )
    if not report.ok:
        where = f" at index {report.first_bad_index}" if report.first_bad_index is not None else ""
        more = f" ({len(report.problems)} problems in all)" if len(report.problems) > 1 else ""
        raise CheckFailed(f"log verification FAILED{where}: {report.message}{more}")
    anchored = (
        f"; the ledger extends its {report.anchors} anchored checkpoint(s)"
        if report.anchors
        else "; nothing is anchored yet"
    )
    out.print(
        f"[bold green]OK[/] {report.size} entries and {report.checkpoints} checkpoints verify "
        f"against {vkey_text.split('+')[0]}{anchored}"
    )


def _anchor_state(
    file: AnchorFile, verifier: NoteVerifier, ledger: LedgerStore
) -> tuple[str, bool]:
    """A line describing what ``file`` anchors now, and whether the ledger extends it."""
    try:
        cp = file.read(verifier, ledger.origin)
    except Error as exc:
        return f"unusable ({exc})", False
    if cp is None:
        return "missing", False
    root = base64.b64encode(cp.root).decode("ascii")
    if cp.size > ledger.size():
        return f"size {cp.size}, root {root}: NOT extended (the ledger is shorter)", False
    if ledger.root(cp.size) != cp.root:
        return f"size {cp.size}, root {root}: NOT extended (the ledger differs)", False
    return f"size {cp.size}, root {root}: extended by the ledger", True


@log_app.command("anchor")
def anchor(
    adopt: Annotated[
        bool,
        typer.Option(
            "--adopt",
            help="Accept the ledger as it is now, even if it does not extend the anchor.",
        ),
    ] = False,
    home: HomeOption = None,
) -> None:
    """Write the ledger's latest signed checkpoint to the anchor and every witness.

    Without --adopt the ledger is opened with every check (it must extend the
    anchored checkpoints), so this only brings the anchor files up to date.

    With --adopt it is the deliberate, human recovery step for a ledger that
    is refused: an anchor or witness file that is missing (a newly configured
    witness, a home restored from a backup), unsigned entries older than the
    grace period (a writer that crashed and stayed down), or a ledger that no
    longer extends its anchor. The ledger must still verify against its own
    latest checkpoint and have intact rows. It prints what it adopts: the
    ledger's size, the entries it signs now, and what every anchor file held
    and whether the ledger extends that; then it signs a checkpoint covering
    every entry and writes it to every anchor file, replacing what was there.
    Run `clearance log verify` first and adopt only a ledger you trust:
    adoption is exactly the step an attacker would want you to take.
    """
    from clearance._internal.home import Home, find_home
    from clearance._internal.ledger.checkpoint import NoteSigner
    from clearance._internal.ledger.sqlite import SQLiteLedger
    from clearance._internal.postgres import redact
    from clearance._internal.wiring import open_ledger

    located = Home.load(find_home(home))
    files = _anchor(located)
    if not adopt:
        with open_ledger(located) as ledger:
            if ledger.size() == 0:
                raise InputError("the ledger is empty, so there is no checkpoint to anchor")
            cp = ledger.checkpoint_covering(ledger.size() - 1)
            files.advance(cp, NoteSigner.from_skey(located.read_log_skey()).verifier())
        out.print(f"[bold green]OK[/] checkpoint {cp.size} is anchored in:")
        for file in files.files:
            out.print(f"  {escape(file.describe())}")
        return
    signer = NoteSigner.from_skey(located.read_log_skey())
    verifier = signer.verifier()
    # No anchor and no grace here, on purpose: this is the step that replaces them.
    database = located.database
    opener: Callable[..., LedgerStore]
    if database is not None:
        from clearance._internal.ledger.postgres import PostgresLedger

        opener = functools.partial(PostgresLedger.open, database)
    else:
        opener = functools.partial(SQLiteLedger.open, located.ledger_path)
    with opener(
        signer=signer, origin=located.settings.origin, durability=located.settings.durability
    ) as ledger:
        size = ledger.size()
        if size == 0:
            raise InputError("the ledger is empty: there is nothing to adopt")
        latest = ledger.latest_checkpoint()
        signed = latest.size if latest is not None else 0
        where = redact(database) if database is not None else str(located.ledger_path)
        out.print(f"[bold]Adopting[/] the ledger {escape(where)} as it is now:")
        out.print(f"  entries       {size} (signed checkpoints cover {signed})")
        if signed < size:
            first = ledger.get(signed).entry.get("at")
            out.print(
                f"  signing now   entries {signed}..{size - 1}, which no checkpoint covers "
                f"(entry {signed} logged at {escape(str(first))})"
            )
        for file in files.files:
            state, _ = _anchor_state(file, verifier, ledger)
            out.print(f"  {escape(file.describe())}: was {escape(state)}")
        cp = ledger.checkpoint_covering(size - 1)
        files.adopt(cp)
    root = base64.b64encode(cp.root).decode("ascii")
    out.print(
        f"[bold green]Adopted[/] checkpoint {cp.size} (root {root}) into "
        f"{len(files.files)} anchor file(s)"
    )


@log_app.command("consistency")
def consistency(
    saved: Annotated[
        Path,
        typer.Argument(
            metavar="SAVED_CHECKPOINT_FILE",
            help="A checkpoint saved earlier with `clearance log checkpoint`.",
        ),
    ],
    home: HomeOption = None,
) -> None:
    """Prove that the current log extends a checkpoint you saved earlier (RFC 9162 §2.1.4).

    The saved checkpoint's signature and origin are checked against this
    log's key, then a consistency proof from its tree to the current signed
    tree is computed and verified. A failure means history was rewritten:
    exit status 1.
    """
    from clearance._internal.ledger.checkpoint import NoteVerifier
    from clearance._internal.ledger.consistency import check_consistency_with

    note = read_text(saved, "checkpoint file", limit=1 << 20)
    try:
        with _open(home) as ledger:
            verifier = NoteVerifier.from_vkey(ledger.vkey)
            head = check_consistency_with(ledger, note, verifier)
            saved_size = ledger_size_of(note, verifier, ledger.origin)
    except ProofError as exc:
        raise CheckFailed(f"consistency FAILED (step '{exc.step}'): {exc}") from None
    except TamperError as exc:
        where = f" (first affected index {exc.index})" if exc.index is not None else ""
        raise CheckFailed(f"consistency FAILED{where}: {exc}") from None
    out.print(
        f"[bold green]OK[/] the log at size {head.size} (root "
        f"{base64.b64encode(head.root).decode('ascii')}) extends the saved checkpoint "
        f"at size {saved_size}"
    )


def ledger_size_of(note: str, verifier: Any, origin: str) -> int:
    """The tree size a (verified) checkpoint note commits to."""
    from clearance._internal.ledger.checkpoint import parse_checkpoint

    return parse_checkpoint(note, verifier, origin=origin).size


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def summarize(entry: Mapping[str, Any]) -> str:
    """One line describing an entry, for tables (any JSON values: a row may be crafted)."""
    kind = entry.get("type")
    if kind == "decision":
        intent = _mapping(entry.get("intent"))
        reasons = entry.get("reasons")
        rules = ",".join(
            str(r.get("rule") if isinstance(r, Mapping) else r)
            for r in (reasons if isinstance(reasons, list) else [])
        )
        return f"{entry.get('effect')} {intent.get('action')} [{rules or 'no rule matched'}]"
    if kind == "execution":
        detail = entry.get("error_type") or entry.get("result_digest") or ""
        return f"{entry.get('status')} {short(detail, 40)}".strip()
    if kind == "policy":
        return f"bundle {short(entry.get('digest'), 24)}"
    if kind == "key":
        return f"grant key {entry.get('kid')}"
    if kind == "trace":
        mandate = _mapping(entry.get("mandate"))
        return f"mandate: {short(mandate.get('text', ''), 50)}"
    if kind == "approval":
        return f"approval {entry.get('approval_id')} {entry.get('status')}"
    if kind == "provenance":
        sizes = (
            f"{name} {len(value) if isinstance(value, list) else '?'}"
            for name, value in ((o, entry.get(o)) for o in ("untrusted", "sensitive"))
        )
        return "fingerprints: " + ", ".join(sizes)
    if kind == "apikey":
        return f"api key {entry.get('event')} {entry.get('name')} ({entry.get('key_id')})"
    return ""


@log_app.command("show")
def show(
    start: Annotated[int, typer.Option("--from", min=0, help="First leaf index to show.")] = 0,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many entries to show.")] = 50,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the entries as JSON (with their index).")
    ] = False,
    home: HomeOption = None,
) -> None:
    """List ledger entries: index, type, time, request id and a one-line summary.

    Every entry shown is first proven to be the one the verified tree holds at
    its index (RFC 9162 inclusion); a row edited in the file is an error naming
    its index, not a line of the table.
    """
    with _open(home) as ledger:
        size = ledger.size()
        if start > size or (start == size and size > 0):
            raise InputError(
                f"--from {start} is past the end of the log, which has {size} entries "
                f"(indices 0..{size - 1})"
            )
        rows = [ledger.prove(r) for r in ledger.scan(start, min(size, start + limit))]
    if as_json:
        print_json([{"index": r.index, "entry": dict(r.entry)} for r in rows])
        return
    table = Table(title=f"Ledger entries {start}..{start + len(rows) - 1} of {size}")
    for name in ("index", "type", "at", "request id", "summary"):
        table.add_column(
            name, justify="right" if name == "index" else "left", no_wrap=name != "summary"
        )
    for r in rows:
        e = r.entry
        ref = e.get("request_id") or e.get("trace_id") or ""
        table.add_row(
            str(r.index),
            escape(str(e.get("type"))),
            escape(str(e.get("at"))),
            escape(str(ref)),
            escape(summarize(e)),
        )
    out.print(table)
