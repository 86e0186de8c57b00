"""Bundle loading: every validation error, merging, canonical document and digest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clearance._internal.canonical import json_digest
from clearance._internal.policy.bundle import EMPTY_DOCUMENT, bundle_from_document, load_bundle
from clearance._internal.policy.yaml_loader import MAX_FILE_BYTES
from clearance.errors import PolicyError

from .support import write

MINIMAL = """\
version: 1
tools:
  refund_payment: {}
rules:
  - id: r1
    effect: allow
    actions: [refund_payment]
"""


RULE = "version: 1\nrules:\n  - id: r1\n    effect: allow\n"


def load_text(tmp_path: Path, text: str) -> None:
    write(tmp_path, text)
    load_bundle(tmp_path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "version: 1\nrulez: []\n",
            ["policy.yaml:2", "(top level): unknown key 'rulez'", "allowed: version, strict"],
            id="unknown-top-level-key",
        ),
        pytest.param(
            "version: 1\ntools:\n  t:\n    schema: {}\n",
            [
                "policy.yaml:4",
                "tools.t: unknown key 'schema'",
                "allowed: args_schema, untrusted_output, sensitive",
            ],
            id="unknown-tool-key",
        ),
        pytest.param(
            "version: 1\nrules:\n  - id: r1\n    effect: allow\n    condition: 'true'\n",
            [
                "policy.yaml:5",
                "rules[0]: unknown key 'condition'",
                "allowed: id, effect, principals",
            ],
            id="unknown-rule-key",
        ),
        pytest.param("rules: []\n", ["version: required"], id="missing-version"),
        pytest.param("version: 2\n", ["policy.yaml:1", "unsupported version 2"], id="bad-version"),
        pytest.param("version: '1'\n", ["unsupported version '1'"], id="string-version"),
        pytest.param(
            "version: 1\nstrict: yes\n", ["strict: must be true or false"], id="strict-not-bool"
        ),
        pytest.param(
            "version: 1\nrules:\n  - id: Bad_Id\n    effect: allow\n",
            ["policy.yaml:3", "rules[0].id: required; use lower-case letters"],
            id="bad-rule-id",
        ),
        pytest.param(
            "version: 1\nrules:\n  - effect: allow\n",
            ["rules[0].id: required"],
            id="missing-rule-id",
        ),
        pytest.param(
            "version: 1\nrules:\n  - id: r1\n    effect: permit\n",
            [
                "policy.yaml:4",
                "rules[0] (r1).effect: must be one of allow, deny, approval_required,",
                "found 'permit'",
            ],
            id="bad-effect",
        ),
        pytest.param(
            "version: 1\nrules:\n  - id: r1\n    effect: allow\n  - id: r1\n    effect: deny\n",
            ["rule id 'r1' is defined twice: in ", "policy.yaml:3 and in ", "policy.yaml:5"],
            id="duplicate-rule-id-in-file",
        ),
        pytest.param(
            "version: 1\nrules:\n  - id: r1\n    effect: allow\n    principals: ['agent:*x']\n",
            ["rules[0] (r1).principals: 'agent:*x' is neither a principal id nor a prefix"],
            id="bad-principal-pattern",
        ),
        pytest.param(
            "version: 1\nrules:\n  - id: r1\n    effect: allow\n    principals: []\n",
            ["principals: must be a non-empty list of strings (omit it for all principals)"],
            id="empty-principals",
        ),
        pytest.param(
            "version: 1\nrules:\n  - id: r1\n    effect: allow\n    actions: ['refund_*']\n",
            ["actions: 'refund_*' is neither an action name nor '*'"],
            id="bad-action-pattern",
        ),
        pytest.param(
            "version: 1\nrules:\n  - id: r1\n    effect: allow\n    when: 'args.amount <'\n",
            [
                "policy.yaml:3",
                "rules[0] (r1).when: syntax error in 'args.amount <'",
                "Syntax error",
            ],
            id="when-parse-error",
        ),
        pytest.param(
            "version: 1\nrules:\n  - id: r1\n    effect: allow\n    when: user.admin\n",
            ["rules[0] (r1).when: unknown variable(s) user (allowed: principal, action"],
            id="when-unknown-variable",
        ),
        pytest.param(
            RULE + "    when: args.to.lowerAscii() == 'x'\n",
            ["rules[0] (r1).when: unknown function(s) lowerAscii (helpers: carries_sensitive, "],
            id="when-unknown-function",
        ),
        pytest.param(
            RULE + "    when: '[1].all(data, data > 0)'\n",
            ["comprehension variable 'data' shadows a policy variable"],
            id="when-shadowing",
        ),
        pytest.param(
            "version: 1\nrules:\n  - id: r1\n    effect: allow\n    when: 5\n",
            ["rules[0] (r1).when: must be a CEL expression (a non-empty string)"],
            id="when-not-a-string",
        ),
        pytest.param(
            "version: 1\nrules:\n  - id: r1\n    effect: allow\n    message: [x]\n",
            ["rules[0] (r1).message: must be a string"],
            id="message-not-a-string",
        ),
        pytest.param(
            RULE + "    when: args.to in data.payess\ndata: {payees: []}\n",
            [
                "rule 'r1' reads data.payess, but the bundle's data has no key 'payess'",
                "(keys: payees)",
            ],
            id="unknown-data-key",
        ),
        pytest.param(
            RULE + "    actions: [b]\nstrict: true\ntools: {a: {}}\n",
            ["policy.yaml:3", "rule 'r1' names action 'b', which is not under tools; strict mode"],
            id="strict-rule-for-unlisted-action",
        ),
        pytest.param(
            "version: 1\ntools:\n  t:\n    args_schema: {type: money}\n",
            ["policy.yaml:4", "tools.t.args_schema: invalid JSON Schema at type"],
            id="bad-args-schema",
        ),
        pytest.param(
            "version: 1\ntools:\n  t:\n    sensitive: card.number\n",
            ["tools.t.sensitive: must be a list of dot paths into args"],
            id="sensitive-not-a-list",
        ),
        pytest.param(
            "version: 1\ntools:\n  t:\n    untrusted_output: maybe\n",
            ["tools.t.untrusted_output: must be true or false"],
            id="untrusted-output-not-bool",
        ),
        pytest.param(
            "version: 1\ntools:\n  'bad name': {}\n",
            ["tools.bad name: not a valid action name"],
            id="bad-tool-name",
        ),
        pytest.param(
            "version: 1\nprincipals:\n  'agent x': {}\n",
            ["principals.agent x: not a valid principal id"],
            id="bad-principal-id",
        ),
        pytest.param(
            "version: 1\nprincipals:\n  agent:x: [1]\n",
            ["principals.agent:x: must be a mapping, found a list"],
            id="principal-attrs-not-a-mapping",
        ),
        pytest.param(
            "version: 1\ndata:\n  ratio: .nan\n",
            ["policy.yaml:3", "data.ratio: number nan is not representable in JSON"],
            id="nan-in-data",
        ),
        pytest.param(
            "version: 1\ndata:\n  big: 9007199254740993\n",
            ["data.big: integer beyond ±2**53-1"],
            id="huge-integer-in-data",
        ),
        pytest.param(
            "version: 1\nrules: {}\n",
            ["rules: must be a list, found a mapping"],
            id="rules-not-a-list",
        ),
        pytest.param(
            "version: 1\nrules:\n  - just-a-string\n",
            ["policy.yaml:3", "rules[0]: a rule must be a mapping"],
            id="rule-not-a-mapping",
        ),
        pytest.param(
            "- 1\n",
            ["(top level): a policy file must be a mapping, found a list"],
            id="file-not-a-mapping",
        ),
        pytest.param(
            "", ["(top level): a policy file must be a mapping, found null"], id="empty-file"
        ),
        pytest.param(
            "version: 1\ndata:\n  a: &x [1, 2]\n  b: *x\n",
            ["policy.yaml:4:6", "YAML aliases (*x) are not allowed"],
            id="yaml-alias",
        ),
        pytest.param(
            "version: 1\nversion: 1\n",
            ["policy.yaml:2:1: duplicate key 'version'"],
            id="duplicate-yaml-key",
        ),
        pytest.param("version: 1\ndata: [\n", ["policy.yaml:3:1"], id="yaml-syntax-error"),
        pytest.param(
            "version: 1\ndata:\n  blob: !!binary aGk=\n",
            ["policy.yaml:3:9", "tag:yaml.org,2002:binary is not allowed"],
            id="yaml-binary-tag",
        ),
        pytest.param(
            "version: 1\ndata: !!python/object:os.system {}\n",
            ["could not determine a constructor"],
            id="yaml-python-tag",
        ),
    ],
)
def test_validation_errors(tmp_path: Path, text: str, expected: list[str]) -> None:
    with pytest.raises(PolicyError) as caught:
        load_text(tmp_path, text)
    for fragment in expected:
        assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("second", "expected"),
    [
        ("version: 1\ntools: {refund_payment: {}}\n", "tool 'refund_payment' is defined twice"),
        ("version: 1\nprincipals: {'agent:a': {}}\n", "principal 'agent:a' is defined twice"),
        ("version: 1\ndata: {payees: []}\n", "data key 'payees' is defined twice"),
        ("version: 1\nrules: [{id: r1, effect: deny}]\n", "rule id 'r1' is defined twice"),
        ("version: 1\nstrict: true\n", "strict is false in "),
    ],
)
def test_duplicates_across_files_name_both_files(
    tmp_path: Path, second: str, expected: str
) -> None:
    write(
        tmp_path,
        MINIMAL + "strict: false\nprincipals: {'agent:a': {}}\ndata: {payees: []}\n",
        "a.yaml",
    )
    write(tmp_path, second, "b.yaml")
    with pytest.raises(PolicyError) as caught:
        load_bundle(tmp_path)
    message = str(caught.value)
    assert expected in message
    assert "a.yaml" in message
    assert "b.yaml" in message


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "version: 1\n# " + "x" * MAX_FILE_BYTES + "\n")
    with pytest.raises(PolicyError, match=f"larger than {MAX_FILE_BYTES} bytes"):
        load_bundle(tmp_path)


def test_non_utf8_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_bytes(b"version: 1\ndata: {a: '\xff'}\n")
    with pytest.raises(PolicyError, match="not UTF-8"):
        load_bundle(tmp_path)


def test_directory_without_policy_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("version: 1\n")
    with pytest.raises(PolicyError, match=r"no \*.yaml or \*.yml policy files"):
        load_bundle(tmp_path)


def test_missing_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="no such policy file or directory"):
        load_bundle(tmp_path / "absent")


def test_files_merge_in_name_order_and_dotfiles_are_skipped(tmp_path: Path) -> None:
    write(tmp_path, "version: 1\nrules: [{id: second, effect: deny}]\n", "20-b.yml")
    write(tmp_path, "version: 1\nrules: [{id: first, effect: allow}]\n", "10-a.yaml")
    write(tmp_path, "not: [valid\n", ".#10-a.yaml")
    bundle = load_bundle(tmp_path)
    assert [rule.id for rule in bundle.rules] == ["first", "second"]


def test_single_file_path_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    assert [rule.id for rule in load_bundle(path).rules] == ["r1"]


def test_canonical_document_fills_defaults_and_normalizes_numbers(tmp_path: Path) -> None:
    write(
        tmp_path,
        """\
        version: 1
        principals:
          agent:a: {limit: 200.0}
        tools:
          refund_payment:
            args_schema: {type: object, properties: {amount: {maximum: 100.0}}}
          fetch_url:
        data:
          expires: 2026-02-01T00:00:00Z
          country: NO
          ratio: 0.5
        rules:
          - id: r1
            effect: allow
            when: >
              args.amount <= 200.0
        """,
    )
    bundle = load_bundle(tmp_path)
    assert bundle.document == {
        "version": 1,
        "strict": False,
        "principals": {"agent:a": {"limit": 200}},
        "tools": {
            "refund_payment": {
                "args_schema": {"type": "object", "properties": {"amount": {"maximum": 100}}},
                "untrusted_output": False,
                "sensitive": [],
            },
            "fetch_url": {"args_schema": None, "untrusted_output": False, "sensitive": []},
        },
        "data": {"expires": "2026-02-01T00:00:00Z", "country": "NO", "ratio": 0.5},
        "rules": [
            {
                "id": "r1",
                "effect": "allow",
                "principals": ["*"],
                "actions": ["*"],
                "when": "args.amount <= 200.0",
                "message": "",
            }
        ],
    }
    assert bundle.digest == json_digest(bundle.document)
    assert bundle.digest.startswith("sha256:")


def test_document_round_trip_keeps_the_digest(tmp_path: Path) -> None:
    bundle = load_bundle(Path(__file__).parents[3] / "src/clearance/examples/policies")
    logged = json.loads(json.dumps(bundle.document))
    rebuilt = bundle_from_document(logged)
    assert rebuilt.digest == bundle.digest
    assert rebuilt.document == bundle.document


def test_document_is_validated_like_a_file() -> None:
    document = dict(EMPTY_DOCUMENT, rules=[{"id": "r1", "effect": "allow", "when": "nope("}])
    with pytest.raises(PolicyError, match=r"<document>: rules\[0\] \(r1\).when: syntax error"):
        bundle_from_document(document)
    with pytest.raises(PolicyError, match="must be a JSON object"):
        bundle_from_document([])  # type: ignore[arg-type]


def test_empty_bundle_has_the_empty_document(tmp_path: Path) -> None:
    write(tmp_path, "version: 1\n")
    bundle = load_bundle(tmp_path)
    assert bundle.document == EMPTY_DOCUMENT
    assert bundle.rules == ()
