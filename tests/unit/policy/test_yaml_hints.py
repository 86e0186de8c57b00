"""A CEL expression that YAML cannot read as a plain scalar gets an error that says what to do.

Regression for a real bundle: an unquoted ternary ``when: a ? b : c`` failed with
PyYAML's bare "mapping values are not allowed here".
"""

from __future__ import annotations

from pathlib import Path

import pytest

from clearance._internal.policy.bundle import load_bundle
from clearance._internal.policy.yaml_loader import parse_yaml
from clearance.errors import PolicyError

from .support import write

TERNARY = """\
version: 1
rules:
  - id: first
    effect: allow
    when: args.a == 1.0
  - id: optional-memo
    effect: deny
    actions: [pay_invoice]
    when: has(args.memo) ? args.memo.contains("urgent") : false
"""


def load_error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as caught:
        load_bundle(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:"), message
    return message


def test_unquoted_ternary_names_file_line_rule_and_the_fix(tmp_path: Path) -> None:
    message = load_error(tmp_path, TERNARY)
    assert ":9:" in message
    assert "mapping values are not allowed here" in message
    assert "rule 'optional-memo'" in message
    assert "'when'" in message
    assert "quote the expression" in message
    assert "when: >" in message


def test_id_after_the_expression_is_found_too(tmp_path: Path) -> None:
    text = "version: 1\nrules:\n  - effect: allow\n    when: a ? b : c\n    id: late-id\n"
    assert "rule 'late-id'" in load_error(tmp_path, text)


def test_continuation_line_of_a_plain_scalar(tmp_path: Path) -> None:
    text = (
        "version: 1\nrules:\n  - id: wrapped\n    effect: allow\n"
        "    when: has(args.x) &&\n      args.x ? true : false\n"
    )
    message = load_error(tmp_path, text)
    assert ":6:" in message
    assert "rule 'wrapped'" in message
    assert "'when'" in message


def test_flow_mapping(tmp_path: Path) -> None:
    text = "version: 1\nrules:\n  - {id: flow, effect: allow, when: has(args.x) ? true : false}\n"
    message = load_error(tmp_path, text)
    assert "rule 'flow'" in message
    assert "quote the expression" in message


def test_leading_negation_is_a_yaml_tag(tmp_path: Path) -> None:
    text = "version: 1\nrules:\n  - id: bang\n    effect: allow\n    when: !has(args.x) || true\n"
    message = load_error(tmp_path, text)
    assert "rule 'bang'" in message
    assert "quote the expression" in message


def test_other_syntax_errors_get_no_cel_hint() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_yaml("version: 1\ndata:\n  a: [1, 2\n", "bad.yaml")
    message = str(caught.value)
    assert message.startswith("bad.yaml:")
    assert "quote the expression" not in message


def test_mapping_value_error_outside_rules_suggests_quoting_without_a_rule() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_yaml("version: 1\ndata:\n  note: a: b\n", "bad.yaml")
    message = str(caught.value)
    assert message.startswith("bad.yaml:3:")
    assert "rule '" not in message
    assert "'note'" in message
    assert "quote the value" in message


def test_the_quoted_and_folded_forms_load(tmp_path: Path) -> None:
    text = (
        "version: 1\nrules:\n"
        '  - id: quoted\n    effect: allow\n    when: "has(args.x) ? args.x : false"\n'
        "  - id: folded\n    effect: allow\n    when: >\n      has(args.x) ? args.x : false\n"
    )
    bundle = load_bundle(write(tmp_path, text))
    assert [rule.when for rule in bundle.rules] == ["has(args.x) ? args.x : false"] * 2
