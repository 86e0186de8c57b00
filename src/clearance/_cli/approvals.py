"""``clearance approvals …``: list, show, approve and deny human approvals.

The commands open the home's ledger only (no policy, spool or replay store) and work
on it directly, so they run beside a gate or a server that has the same home open: a
vote appended here is noticed by a gate waiting for it within a fraction of a second.

Who votes: ``--approver`` names the principal the vote is cast as. Anyone who can run
this command on the home can write its ledger, so the flag is trusted as the runtime
API trusts an approver key's principal; the same rules apply (nobody votes on their
own principal's request, the rule's ``approvers`` patterns, one vote per approver, one
``deny`` denies). Every vote is a ledger entry naming its approver and reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from clearance._cli.common import HomeOption, now, out, print_json, short

if TYPE_CHECKING:
    from clearance._internal.approvals.book import ApprovalBook
    from clearance._internal.approvals.model import Approval

approvals_app = typer.Typer(
    help=(
        "Human approvals: list and inspect them, approve or deny with a reason. "
        "Every vote is a ledger entry linked to the decision that asked for it."
    ),
    no_args_is_help=True,
)

IdArgument = Annotated[
    str, typer.Argument(metavar="APPROVAL_ID", help="The approval id (from ApprovalRequired).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ApproverOption = Annotated[
    str,
    typer.Option(
        "--approver",
        help="The principal you vote as, e.g. user:alice (never the request's own principal).",
        show_default=False,
    ),
]
ReasonOption = Annotated[
    str, typer.Option("--reason", help="Why (recorded in the ledger).", show_default=False)
]
_STATUS_STYLE = {
    "pending": "yellow",
    "approved": "green",
    "collected": "green",
    "denied": "red",
    "expired": "red",
}


@contextmanager
def _book(home: HomeOption) -> Iterator[ApprovalBook]:
    from clearance._internal.approvals.book import ApprovalBook
    from clearance._internal.home import Home, find_home
    from clearance._internal.wiring import open_ledger

    located = Home.load(find_home(home))
    with open_ledger(located, clock=now) as ledger:
        yield ApprovalBook(ledger=ledger, clock=now)


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _status(approval: Approval) -> str:
    style = _STATUS_STYLE.get(approval.status, "")
    return f"[{style}]{approval.status}[/]" if style else approval.status


def _progress(approval: Approval) -> str:
    return f"{len(approval.approved_by)}/{approval.required}"


@approvals_app.command("list")
def list_approvals(
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            help="Only pending, approved, denied, expired or collected approvals.",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many (1 to 1000).")] = 100,
    after: Annotated[
        str | None,
        typer.Option("--after", help="Continue after this approval id.", show_default=False),
    ] = None,
    as_json: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """List approvals, newest first.

    A pending approval past its expiry is listed as expired (it counts as denied);
    `clearance approvals show` records that in the ledger.
    """
    with _book(home) as book:
        found = book.list(status, limit=limit, after=after)
    if as_json:
        print_json({"approvals": [approval.to_json() for approval in found]})
        return
    if not found:
        out.print("no approvals" + (f" with status {escape(status)}" if status else ""))
        return
    table = Table(title="Approvals", title_justify="left")
    for name in ("approval", "status", "approved", "action", "principal", "expires", "rules"):
        table.add_column(name, overflow="fold")
    for approval in found:
        table.add_row(
            approval.approval_id,
            _status(approval),
            _progress(approval),
            escape(approval.action),
            escape(approval.principal),
            _when(approval.expires_at),
            escape(", ".join(approval.rules)),
        )
    out.print(table)


def _print(approval: Approval) -> None:
    out.print(f"[bold]approval[/] {approval.approval_id}  {_status(approval)}")
    rows = (
        ("request", approval.request_id),
        ("trace", approval.trace_id or "-"),
        ("principal", approval.principal),
        ("action", approval.action),
        ("args", short(json.dumps(approval.intent.get("args"), sort_keys=True), 120)),
        ("intent digest", approval.intent_digest),
        ("rules", ", ".join(approval.rules)),
        ("approvals", f"{_progress(approval)} from {', '.join(approval.approvers) or 'nobody'}"),
        ("expires", _when(approval.expires_at)),
        ("decision entry", str(approval.decision_index)),
        ("collected entry", "-" if approval.collected_index is None else approval.collected_index),
    )
    for name, value in rows:
        out.print(f"  {name:<16}{escape(str(value))}")
    for vote in approval.votes:
        out.print(
            f"  vote            {escape(vote.approver)} {vote.decision} at {_when(vote.at)}: "
            f"{escape(vote.reason)}"
        )


@approvals_app.command("show")
def show(approval_id: IdArgument, as_json: JsonOption = False, home: HomeOption = None) -> None:
    """Show one approval: the request, the rules that asked, the votes so far.

    Reading a pending approval after its expiry records it as expired.
    """
    with _book(home) as book:
        approval = book.get(approval_id)
    if as_json:
        print_json(approval.to_json())
    else:
        _print(approval)


def _vote(
    approval_id: str, approver: str, decision: str, reason: str, home: HomeOption, as_json: bool
) -> None:
    with _book(home) as book:
        approval = book.vote(approval_id, approver=approver, decision=decision, reason=reason)
    if as_json:
        print_json(approval.to_json())
        return
    verb = "approved" if decision == "approve" else "denied"
    out.print(
        f"[bold]{escape(approver)}[/] {verb} approval {approval.approval_id}: now "
        f"{_status(approval)} ({_progress(approval)} approvals)"
    )


@approvals_app.command("approve")
def approve(
    approval_id: IdArgument,
    approver: ApproverOption,
    reason: ReasonOption,
    as_json: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """Vote to approve. The vote that reaches the rule's quorum approves the request.

    Refused (exit 2) when you are the request's principal or not among the rule's
    approvers, when you already voted, or when the approval is no longer pending.
    """
    _vote(approval_id, approver, "approve", reason, home, as_json)


@approvals_app.command("deny")
def deny(
    approval_id: IdArgument,
    approver: ApproverOption,
    reason: ReasonOption,
    as_json: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """Vote to deny. One deny vote denies the request at once."""
    _vote(approval_id, approver, "deny", reason, home, as_json)
