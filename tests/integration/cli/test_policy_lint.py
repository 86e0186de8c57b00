"""``clearance policy lint``: warnings, a clean bundle, and a bundle that does not load."""

from __future__ import annotations

import textwrap
from pathlib import Path

from clearance._internal.home import Home

from .support import Run, assert_clean_error

TRAPS = """\
version: 1
strict: false
tools:
  pay_invoice:
    sensitive: [fee]
    args_schema:
      type: object
      properties:
        amount: {type: number}
        fee: {type: number, minimum: 0}
rules:
  - id: within-cap
    effect: deny
    actions: [pay_invoice]
    when: >
      has(trace.totals.pay_invoice) &&
      trace.totals.pay_invoice.amount + trace.totals.pay_invoice.fee > 500.0
  - id: cap-typo
    effect: deny
    actions: [pay-invoice]
    when: args.amount > 500.0
"""


def bundle(tmp_path: Path, name: str, text: str) -> Path:
    directory = tmp_path / name
    directory.mkdir()
    (directory / "policy.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    return directory


def test_lint_prints_each_warning_and_exits_1(cli: Run, tmp_path: Path) -> None:
    result = cli("policy", "lint", str(bundle(tmp_path, "traps", TRAPS)))
    err = assert_clean_error(result, code=1)
    assert "3 lint warning(s)" in err
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "warning[totals-negative] rule within-cap",
        "warning[totals-sensitive] rule within-cap",
        "warning[action-lookalike] rule cap-typo",
    ]
    assert "reopen the cap" in lines[0]


def test_lint_of_a_clean_bundle_exits_0(cli: Run, home: Home, tmp_path: Path) -> None:
    fixed = (
        TRAPS.replace("amount: {type: number}", "amount: {type: number, exclusiveMinimum: 0}")
        .replace("sensitive: [fee]", "sensitive: []")
        .replace("[pay-invoice]", "[pay_invoice]")
    )
    result = cli("policy", "lint", str(bundle(tmp_path, "fixed", fixed)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no warnings" in result.stdout
    example = cli("policy", "lint", str(home.policy_dir))  # the bundle `clearance init` writes
    assert example.returncode == 0, example.stdout + example.stderr
    assert "no warnings" in example.stdout


def test_lint_of_a_bundle_that_does_not_load_exits_2(cli: Run, tmp_path: Path) -> None:
    broken = bundle(tmp_path, "broken", "version: 1\nrules:\n  - id: x\n    effect: maybe\n")
    err = assert_clean_error(cli("policy", "lint", str(broken)), code=2)
    assert "INVALID" in err
    assert "policy.yaml" in err
    missing = cli("policy", "lint", str(tmp_path / "absent"))
    assert "no such directory" in assert_clean_error(missing, code=2)
