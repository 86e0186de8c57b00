"""Policy lint: each trap is reported on a minimal bundle and not on its corrected twin."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest

from clearance._internal.policy.bundle import Bundle, load_bundle
from clearance._internal.policy.lint import CODES, LintWarning, lint_bundle, totals_reads
from clearance._internal.policy.reload import PolicyHolder

from .support import write

EXAMPLE = Path(__file__).parents[3] / "src" / "clearance" / "examples" / "policies"

CAP_RULE = """
rules:
  - id: within-cap
    effect: deny
    actions: [pay_invoice]
    when: >
      has(trace.totals.pay_invoice) &&
      trace.totals.pay_invoice.amount + args.amount > 500.0
"""


def bundle_of(directory: Path, text: str) -> Bundle:
    directory.mkdir(parents=True, exist_ok=True)
    write(directory, text)
    return load_bundle(directory)


def pay_tool(amount: str, *, sensitive: str = "[]", strict: str = "false") -> str:
    """A bundle with a pay_invoice tool whose amount property is ``amount`` (a YAML flow map)."""
    return (
        textwrap.dedent(f"""
        version: 1
        strict: {strict}
        tools:
          pay_invoice:
            sensitive: {sensitive}
            args_schema:
              type: object
              properties:
                to: {{type: string}}
                amount: {amount}
        """)
        + CAP_RULE
    )


def codes(bundle: Bundle) -> list[tuple[str, str | None]]:
    return [(w.code, w.rule) for w in lint_bundle(bundle)]


# --- totals-negative -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "amount",
    [
        "{type: number}",
        "{type: integer}",
        "{type: [number, string]}",
        "{}",
        "{type: number, minimum: -1}",
        "{type: number, exclusiveMinimum: -0.5}",
        "{type: number, maximum: 0}",
        "{enum: [5, -5]}",
        "{type: number, allOf: [{minimum: 0}]}",  # not interpreted: put the bound on the property
    ],
)
def test_totals_negative_fires_when_the_amount_may_be_negative(tmp_path: Path, amount: str) -> None:
    warnings = lint_bundle(bundle_of(tmp_path, pay_tool(amount)))
    assert [(w.code, w.rule) for w in warnings] == [("totals-negative", "within-cap")]
    assert "a negative amount would lower the running total and reopen the cap" in (
        warnings[0].message
    )
    assert "trace.totals.pay_invoice.amount" in warnings[0].message


@pytest.mark.parametrize(
    "amount",
    [
        "{type: number, minimum: 0}",
        "{type: number, minimum: 0.01}",
        "{type: integer, exclusiveMinimum: 0}",
        "{type: number, exclusiveMinimum: 0, maximum: 10000}",
        "{type: string}",  # never a number, so it never counts toward totals
        "{enum: [5, 10]}",
        "{const: 7}",
        "false",
    ],
)
def test_totals_negative_is_quiet_when_the_amount_cannot_be_negative(
    tmp_path: Path, amount: str
) -> None:
    assert codes(bundle_of(tmp_path, pay_tool(amount))) == []


def test_totals_negative_fires_without_a_schema_or_a_property(tmp_path: Path) -> None:
    no_schema = "version: 1\ntools:\n  pay_invoice: {}\n" + CAP_RULE
    assert codes(bundle_of(tmp_path / "a", no_schema)) == [("totals-negative", "within-cap")]
    other_props = "version: 1\ntools:\n  pay_invoice:\n    args_schema: {type: object}\n"
    assert codes(bundle_of(tmp_path / "b", other_props + CAP_RULE)) == [
        ("totals-negative", "within-cap")
    ]
    closed = (
        "version: 1\ntools:\n  pay_invoice:\n    args_schema:\n"
        "      type: object\n      additionalProperties: false\n      properties: {to: {}}\n"
    )
    assert codes(bundle_of(tmp_path / "c", closed + CAP_RULE)) == []  # amount cannot exist


def test_totals_negative_for_an_undeclared_action_depends_on_strict(tmp_path: Path) -> None:
    rule = CAP_RULE.replace("actions: [pay_invoice]", "actions: [read_file]")
    lax = "version: 1\nstrict: false\ntools:\n  read_file: {}\n" + rule
    assert codes(bundle_of(tmp_path / "lax", lax)) == [("totals-negative", "within-cap")]
    strict = "version: 1\nstrict: true\ntools:\n  read_file: {}\n" + rule
    # Under strict: true an undeclared pay_invoice is denied before any rule, so no totals.
    assert codes(bundle_of(tmp_path / "strict", strict)) == []


# --- totals-sensitive ------------------------------------------------------------------------


def test_totals_sensitive_fires_for_a_sensitive_amount(tmp_path: Path) -> None:
    text = pay_tool("{type: number, minimum: 0}", sensitive="[amount]")
    warnings = lint_bundle(bundle_of(tmp_path, text))
    assert [(w.code, w.rule) for w in warnings] == [("totals-sensitive", "within-cap")]
    assert "never count toward totals" in warnings[0].message
    # It replaces totals-negative for the same read: a value that never counts cannot lower it.
    loose = pay_tool("{type: number}", sensitive="[amount]")
    assert codes(bundle_of(tmp_path / "loose", loose)) == [("totals-sensitive", "within-cap")]


def test_totals_sensitive_is_quiet_for_a_non_sensitive_amount(tmp_path: Path) -> None:
    text = pay_tool("{type: number, minimum: 0}", sensitive="[to, card.number]")
    assert codes(bundle_of(tmp_path, text)) == []


# --- action-lookalike / action-undeclared -----------------------------------------------------

LOOKALIKE = """
version: 1
strict: {strict}
tools:
  pay_invoice: {{}}
rules:
  - id: cap-payments
    effect: deny
    actions: [{actions}]
    when: args.amount > 500.0
"""


@pytest.mark.parametrize("name", ["pay-invoice", "Pay_Invoice", "PAY-INVOICE"])
def test_action_lookalike_fires_with_strict_false(tmp_path: Path, name: str) -> None:
    warnings = lint_bundle(
        bundle_of(tmp_path, LOOKALIKE.format(strict="false", actions=f"{name}, {name}"))
    )
    assert [(w.code, w.rule) for w in warnings] == [("action-lookalike", "cap-payments")]
    assert repr(name) in warnings[0].message
    assert "'pay_invoice'" in warnings[0].message


def test_action_lookalike_is_quiet_for_the_exact_name(tmp_path: Path) -> None:
    text = LOOKALIKE.format(strict="false", actions="pay_invoice")
    assert codes(bundle_of(tmp_path, text)) == []
    wildcard = LOOKALIKE.format(strict="false", actions='"*"')
    assert codes(bundle_of(tmp_path / "w", wildcard)) == []


def test_strict_bundles_refuse_lookalikes_at_load_so_lint_never_sees_them(
    tmp_path: Path,
) -> None:
    from clearance.errors import PolicyError

    with pytest.raises(PolicyError, match="not under tools"):
        bundle_of(tmp_path, LOOKALIKE.format(strict="true", actions="pay-invoice"))


def test_action_undeclared_only_when_the_bundle_declares_tools(tmp_path: Path) -> None:
    text = LOOKALIKE.format(strict="false", actions="pay_invoice, send_email")
    assert codes(bundle_of(tmp_path, text)) == [("action-undeclared", "cap-payments")]
    no_tools = "version: 1\nrules:\n  - id: r\n    effect: allow\n    actions: [send_email]\n"
    assert codes(bundle_of(tmp_path / "bare", no_tools)) == []


# --- finding totals reads --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "reads"),
    [
        ("trace.totals.pay.amount > 1.0", [("pay", "amount")]),
        ('trace.totals["pay-out"]["amount"] > 1.0', [("pay-out", "amount")]),
        (
            "trace.totals['pay'].amount + trace.totals.pay['fee'] > 1.0",
            [("pay", "amount"), ("pay", "fee")],
        ),
        ("has(trace.totals.pay.amount) && trace.totals.pay.amount > 1.0", [("pay", "amount")]),
        ("has(trace.totals.pay) && args.x == 1", []),
        ('args.note == "trace.totals.pay.amount"', []),  # inside a string: not a read
        ("trace.totals[args.kind].amount > 1.0", []),  # computed key: not found
        ("trace.totals.pay.exists(k, k == 'amount')", []),
        ("args.trace.totals.pay.amount > 1", []),
        ('trace.totals["a\\u0062"]["amount"] > 1.0', []),  # escapes are not guessed
    ],
)
def test_totals_reads(source: str, reads: list[tuple[str, str]]) -> None:
    assert totals_reads(source) == reads


def test_a_cap_with_an_index_spelling_is_checked_too(tmp_path: Path) -> None:
    text = pay_tool("{type: number}").replace(
        "trace.totals.pay_invoice.amount", 'trace.totals["pay_invoice"]["amount"]'
    )
    assert codes(bundle_of(tmp_path, text)) == [("totals-negative", "within-cap")]


def test_render_and_codes() -> None:
    assert (
        LintWarning("totals-negative", "r1", "m").render() == "warning[totals-negative] rule r1: m"
    )
    assert LintWarning("x", None, "m").render() == "warning[x]: m"
    assert CODES == (
        "totals-negative",
        "totals-sensitive",
        "action-lookalike",
        "action-undeclared",
        "provenance-unmarked",
    )


def test_the_shipped_example_bundles_lint_clean() -> None:
    assert lint_bundle(load_bundle(EXAMPLE)) == []
    assert lint_bundle(load_bundle(EXAMPLE.parent / "provenance")) == []


# --- provenance-unmarked ------------------------------------------------------------------------

PROVENANCE = """
version: 1
tools:
  fetch: {untrusted_output: UNTRUSTED}
  profile: {sensitive_output: SENSITIVE}
  send: {}
rules:
  - id: injected
    effect: deny
    actions: [send]
    when: from_untrusted(args.to)
  - id: secrets
    effect: deny
    actions: [send]
    when: carries_sensitive(args.body)
"""


def test_provenance_helpers_without_a_marked_tool_are_reported(tmp_path: Path) -> None:
    clean = PROVENANCE.replace("UNTRUSTED", "true").replace("SENSITIVE", "true")
    assert codes(bundle_of(tmp_path / "clean", clean)) == []
    unmarked = PROVENANCE.replace("UNTRUSTED", "false").replace("SENSITIVE", "false")
    warnings = lint_bundle(bundle_of(tmp_path / "unmarked", unmarked))
    assert [(w.code, w.rule) for w in warnings] == [
        ("provenance-unmarked", "injected"),
        ("provenance-unmarked", "secrets"),
    ]
    assert "no tool is marked untrusted_output" in warnings[0].message


def test_lint_changes_neither_the_bundle_nor_its_digest(tmp_path: Path) -> None:
    bundle = bundle_of(tmp_path, pay_tool("{type: number}"))
    before = (bundle.digest, repr(bundle.document))
    assert lint_bundle(bundle)
    assert (bundle.digest, repr(bundle.document)) == before


# --- load time -------------------------------------------------------------------------------


def test_loading_logs_each_warning_on_the_clearance_policy_logger(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path, pay_tool("{type: number}"))
    with caplog.at_level(logging.WARNING, logger="clearance.policy"):
        holder = PolicyHolder.load(tmp_path)
    records = [r for r in caplog.records if r.name == "clearance.policy"]
    assert len(records) == 1
    assert records[0].levelno == logging.WARNING
    message = records[0].getMessage()
    assert str(tmp_path) in message
    assert "warning[totals-negative] rule within-cap:" in message
    # The warning is advice only: the bundle is active, digest unchanged.
    assert holder.digest == load_bundle(tmp_path).digest


def test_a_reload_logs_the_new_bundles_warnings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path, pay_tool("{type: number, minimum: 0}"))
    with caplog.at_level(logging.WARNING, logger="clearance.policy"):
        holder = PolicyHolder.load(tmp_path, interval=0.0)
        assert not caplog.records
        write(tmp_path, pay_tool("{type: number}", sensitive="[amount]"))
        assert holder.reload() is True
    assert len(caplog.records) == 1
    assert "warning[totals-sensitive] rule within-cap:" in caplog.records[0].getMessage()


def test_a_clean_bundle_logs_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="clearance.policy"):
        PolicyHolder.load(EXAMPLE)
    assert not [r for r in caplog.records if r.name == "clearance.policy"]
