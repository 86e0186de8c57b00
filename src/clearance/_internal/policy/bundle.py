"""Policy bundles: YAML files with CEL conditions, validated and merged into one document.

Bundle format (docs/design.md §3)
-------------------------

A bundle is a directory of ``*.yaml`` / ``*.yml`` files, read non-recursively in
sorted file-name order (names starting with ``.`` are skipped) and merged into
one; a single file path is accepted too. A directory without such files is an
error, not an empty policy. Each file is UTF-8 YAML of at most 1 MiB, without
aliases, loaded with PyYAML's safe constructors only, and is a mapping with
these top-level keys, and no others:

``version`` (required)
    ``1``. Every file must say so.
``strict`` (optional, default ``false``)
    When true, an action that is not listed under ``tools`` is denied with the
    reason ``unknown-action`` before any rule runs, and a rule that names such
    an action is refused at load. Files that set it must agree.
``principals`` (optional)
    The trusted principal registry: principal id → attribute mapping.
    Conditions see the attributes as ``principal.attrs``.
``tools`` (optional)
    Action name → ``{args_schema, untrusted_output, sensitive_output,
    sensitive}``, all optional.
    ``args_schema`` is a JSON Schema (Draft 2020-12), checked with
    ``check_schema`` at load; an intent's ``args`` are checked against it
    before any rule is evaluated, and a violation denies with the reason
    ``args-schema`` naming the argument path. ``untrusted_output: true`` marks
    tools whose results may carry injected instructions (it sets
    ``trace.untrusted`` for later decisions, and the values in their recorded
    results feed ``from_untrusted``). ``sensitive_output: true`` marks tools
    whose results carry the user's secrets (their values feed
    ``carries_sensitive``; :mod:`clearance._internal.policy.provenance`).
    ``sensitive`` lists dot paths into ``args`` (``card.number``) that the
    ledger stores salted-hashed.
``data`` (optional)
    Reference data for conditions (``data.payees``): any JSON values.
``rules`` (optional)
    A list of rules, each ``{id, effect, principals, actions, when, message}``:
    ``id`` (required, unique across the bundle, ``^[a-z0-9][a-z0-9_.-]*$``);
    ``effect`` (required: ``allow``, ``deny`` or ``approval_required``);
    ``principals`` (ids, or prefixes ending in ``*`` such as ``agent:*``;
    absent means every principal); ``actions`` (action names or ``*``; absent
    means every action); ``when`` (a CEL expression, absent means ``true``);
    ``message`` (shown with the decision; default ``"matched rule <id>"``).
    An ``approval_required`` rule may also set ``approvals`` (the quorum of
    distinct approvers, 1 to 100, default 1), ``approvers`` (who may vote: ids or
    prefixes ending in ``*``, like ``principals``; absent means anyone trusted to
    approve) and ``approval_ttl`` (seconds until the approval expires, as the
    ``approvals.ttl`` setting); any other rule that sets one is refused
    (:mod:`clearance._internal.policy.approval_rules`).
    A rule matches when the principal and action patterns match and ``when``
    is true. Conditions read ``principal`` (``{id, attrs}``), ``action``,
    ``resource``, ``args``, ``purpose``, ``input``, ``trace``, ``data``,
    ``now`` and ``approval``, and may call the helpers of
    :mod:`clearance._internal.policy.functions`. A condition that fails (missing key,
    type mismatch, non-boolean result) denies the whole decision, naming the
    rule, so read optional attributes behind ``has(...)`` or with the helper
    ``get(map, key, default)``. Every number a condition reads is a CEL
    ``double``, so write ``1.0``, not ``1``, in arithmetic (see
    :mod:`clearance._internal.policy.cel_engine`).

A bundle with no rules denies everything (``default-deny``), as does the
:class:`~clearance._internal.policy.cel_engine.DenyAllEngine` used when nothing is loaded.

Merging refuses a second definition of a rule id, tool, principal id or
top-level ``data`` key, naming both files. Unknown keys are refused anywhere,
naming the file, line, path and the allowed keys. Every ``when`` is compiled at
load and may read only the policy variables and call only CEL builtins and our
helpers (:mod:`clearance._internal.policy.conditions`); a ``data.<key>`` that the bundle's
data does not define is refused too. Values must be JSON: YAML dates stay
strings, only ``true``/``false`` are booleans, and non-finite numbers or numbers
beyond ±2**53 are refused (see :mod:`clearance._internal.policy.yaml_loader`).

Canonical document and digest
-----------------------------

The canonical document is the JSON object ``{version, strict, principals,
tools, data, rules}`` with every default filled in: tools as ``{args_schema:
<schema or null>, untrusted_output: <bool>, sensitive: [...]}``, plus
``sensitive_output: true`` for a tool that sets it (a false value is left out,
so bundles that do not use it keep the digest they had before it existed), rules in file
order as ``{id, effect, principals (default ["*"]), actions (default ["*"]),
when (stripped, default "true"), message (default "")}``, plus ``approvals``
(only above 1), ``approvers`` and ``approval_ttl`` when an ``approval_required`` rule
sets them (so, again, bundles without them keep their digest). Numbers follow JSON
(RFC 8785 writes ``200.0`` as ``200``), so an integral float in the bundle is
loaded as an integer, and conditions see every number, ``data`` and principal
attributes included, as a CEL double: the live engine and one rebuilt from the
logged document then see the same values. The digest is
:func:`clearance._internal.canonical.json_digest` of the document (``sha256:`` + hex of
SHA-256 over its RFC 8785 form). :func:`bundle_from_document` validates a
document exactly like a file and rebuilds an identical bundle (same digest).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from clearance._internal.canonical import json_digest
from clearance._internal.intent import ACTION_PATTERN, PRINCIPAL_PATTERN
from clearance._internal.policy.approval_rules import (
    APPROVAL_KEYS,
    RuleApproval,
    parse_approval_keys,
    rule_approval,
)
from clearance._internal.policy.conditions import Condition, ConditionError, compile_condition
from clearance._internal.policy.engine import EFFECTS, Effect, ToolSpec
from clearance._internal.policy.functions import HELPERS
from clearance._internal.policy.schema import ArgsSchema, SchemaDefinitionError
from clearance._internal.policy.yaml_loader import (
    LoadedFile,
    SourceChecker,
    describe_kind,
    load_yaml_file,
)
from clearance.errors import InputError, PolicyError

__all__ = [
    "EMPTY_DOCUMENT",
    "Bundle",
    "Rule",
    "Tool",
    "bundle_from_document",
    "load_bundle",
    "policy_files",
]

EMPTY_DOCUMENT: Final[Mapping[str, Any]] = {
    "version": 1,
    "strict": False,
    "principals": {},
    "tools": {},
    "data": {},
    "rules": [],
}
"""The canonical document of a bundle with nothing in it."""

_TOP_KEYS: Final = ("version", "strict", "principals", "tools", "data", "rules")
_TOOL_KEYS: Final = ("args_schema", "untrusted_output", "sensitive_output", "sensitive")
_RULE_KEYS: Final = ("id", "effect", "principals", "actions", "when", "message", *APPROVAL_KEYS)
_RULE_ID: Final = re.compile(r"[a-z0-9][a-z0-9_.-]*")
_PRINCIPAL_PREFIX: Final = re.compile(r"[A-Za-z0-9_.:@/+-]*")
_DOT_PATH: Final = re.compile(r"[^.\s]+(?:\.[^.\s]+)*")


@dataclass(frozen=True)
class Tool:
    """A tool registry entry."""

    name: str
    untrusted_output: bool
    sensitive: tuple[str, ...]
    schema: ArgsSchema | None
    sensitive_output: bool = False

    def spec(self) -> ToolSpec:
        """The engine-protocol view of this tool."""
        return ToolSpec(
            name=self.name,
            untrusted_output=self.untrusted_output,
            sensitive=self.sensitive,
            args_schema=None if self.schema is None else self.schema.schema,
            sensitive_output=self.sensitive_output,
        )


@dataclass(frozen=True)
class Rule:
    """One validated rule with its compiled condition; ``origin`` is ``file:line``."""

    id: str
    effect: Effect
    principals: tuple[str, ...]
    actions: tuple[str, ...]
    when: str
    message: str
    condition: Condition
    origin: str
    approval: RuleApproval | None = None
    """Quorum, approvers and expiry of an ``approval_required`` rule (None for other effects)."""

    def matches_principal(self, principal: str) -> bool:
        """Whether ``principal`` is one of this rule's ids or starts with one of its prefixes."""
        for pattern in self.principals:
            if pattern.endswith("*"):
                if principal.startswith(pattern[:-1]):
                    return True
            elif principal == pattern:
                return True
        return False


@dataclass(frozen=True)
class Bundle:
    """A loaded, validated bundle and its canonical document."""

    document: Mapping[str, Any]
    digest: str
    strict: bool
    principals: Mapping[str, Mapping[str, Any]]
    tools: Mapping[str, Tool]
    data: Mapping[str, Any]
    rules: tuple[Rule, ...]


@dataclass
class _Part:
    """What one file contributes, before merging."""

    source: SourceChecker
    strict: bool | None
    principals: dict[str, dict[str, Any]]
    tools: dict[str, tuple[dict[str, Any], Tool]]
    data: dict[str, Any]
    rules: list[_PendingRule]


def _parse_tools(src: SourceChecker, raw: Any) -> dict[str, tuple[dict[str, Any], Tool]]:
    tools: dict[str, tuple[dict[str, Any], Tool]] = {}
    for name, value in src.mapping(raw, "tools").items():
        path = f"tools.{name}"
        if not ACTION_PATTERN.fullmatch(name):
            src.fail(path, "not a valid action name (letters, digits, _ . : -)", raw, name)
        entry = src.mapping(value, path, _TOOL_KEYS)
        untrusted = entry.get("untrusted_output", False)
        if not isinstance(untrusted, bool):
            src.fail(f"{path}.untrusted_output", "must be true or false", entry, "untrusted_output")
        secret = entry.get("sensitive_output", False)
        if not isinstance(secret, bool):
            src.fail(f"{path}.sensitive_output", "must be true or false", entry, "sensitive_output")
        sensitive = entry.get("sensitive") or []
        if not isinstance(sensitive, list) or not all(
            isinstance(p, str) and _DOT_PATH.fullmatch(p) for p in sensitive
        ):
            src.fail(
                f"{path}.sensitive", "must be a list of dot paths into args", entry, "sensitive"
            )
        schema_raw = entry.get("args_schema")
        schema = None
        if schema_raw is not None:
            if not isinstance(schema_raw, dict):
                src.fail(f"{path}.args_schema", "must be a mapping", entry, "args_schema")
            schema_raw = src.json(schema_raw, f"{path}.args_schema", entry, "args_schema")
            try:
                schema = ArgsSchema.build(schema_raw)
            except SchemaDefinitionError as exc:
                src.fail(f"{path}.args_schema", str(exc), entry, "args_schema")
        normalized = {
            "args_schema": schema_raw,
            "untrusted_output": untrusted,
            "sensitive": list(sensitive),
        }
        if secret:
            normalized["sensitive_output"] = True
        tools[name] = (normalized, Tool(name, untrusted, tuple(sensitive), schema, secret))
    return tools


def _string_list(src: SourceChecker, rule: dict[str, Any], key: str, path: str) -> list[str]:
    value = rule.get(key)
    if value is None:
        return ["*"]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        src.fail(
            f"{path}.{key}",
            f"must be a non-empty list of strings (omit it for all {key})",
            rule,
            key,
        )
    return list(value)


def _check_patterns(
    src: SourceChecker, rule: dict[str, Any], path: str
) -> tuple[list[str], list[str]]:
    principals = _string_list(src, rule, "principals", path)
    for pattern in principals:
        if pattern.endswith("*"):
            ok = _PRINCIPAL_PREFIX.fullmatch(pattern[:-1]) is not None
        else:
            ok = PRINCIPAL_PATTERN.fullmatch(pattern) is not None
        if not ok:
            src.fail(
                f"{path}.principals",
                f"{pattern!r} is neither a principal id nor a prefix ending in '*'",
                rule,
                "principals",
            )
    actions = _string_list(src, rule, "actions", path)
    for action in actions:
        if action != "*" and not ACTION_PATTERN.fullmatch(action):
            src.fail(
                f"{path}.actions", f"{action!r} is neither an action name nor '*'", rule, "actions"
            )
    return principals, actions


@dataclass(frozen=True)
class _PendingRule:
    """A structurally valid rule whose condition is compiled once the bundle's data is known."""

    normalized: dict[str, Any]
    origin: str
    path: str

    def build(self, data: Mapping[str, Any]) -> Rule:
        rule = self.normalized
        try:
            condition = compile_condition(rule["when"], helpers=HELPERS, data=data)
        except ConditionError as exc:
            raise PolicyError(f"{self.origin}: {self.path}.when: {exc}") from None
        return Rule(
            id=rule["id"],
            effect=rule["effect"],
            principals=tuple(rule["principals"]),
            actions=tuple(rule["actions"]),
            when=rule["when"],
            message=rule["message"],
            condition=condition,
            origin=self.origin,
            approval=rule_approval(rule) if rule["effect"] == "approval_required" else None,
        )


def _parse_rule(src: SourceChecker, raw: Any, index: int, container: list[Any]) -> _PendingRule:
    path = f"rules[{index}]"
    if not isinstance(raw, dict):
        src.fail(path, f"a rule must be a mapping, found {describe_kind(raw)}", container, index)
    rule = src.mapping(raw, path, _RULE_KEYS)
    rule_id = rule.get("id")
    if not isinstance(rule_id, str) or not _RULE_ID.fullmatch(rule_id):
        src.fail(
            f"{path}.id",
            "required; use lower-case letters, digits, _ . - (e.g. refund-small)",
            rule,
            "id",
        )
    path = f"rules[{index}] ({rule_id})"
    effect = rule.get("effect")
    if effect not in EFFECTS:
        src.fail(
            f"{path}.effect",
            f"must be one of {', '.join(EFFECTS)}, found {effect!r}",
            rule,
            "effect",
        )
    principals, actions = _check_patterns(src, rule, path)
    when = rule.get("when", "true")
    if isinstance(when, bool):
        when = "true" if when else "false"
    if not isinstance(when, str) or not when.strip():
        src.fail(f"{path}.when", "must be a CEL expression (a non-empty string)", rule, "when")
    message = rule.get("message", "")
    if not isinstance(message, str):
        src.fail(f"{path}.message", "must be a string", rule, "message")
    normalized = {
        "id": rule_id,
        "effect": effect,
        "principals": principals,
        "actions": actions,
        "when": when.strip(),
        "message": message,
        **parse_approval_keys(src, rule, path, effect),
    }
    return _PendingRule(normalized, src.where(container, index), path)


def _parse_part(loaded: LoadedFile) -> _Part:
    src = SourceChecker(loaded)
    top = loaded.value
    if not isinstance(top, dict):
        src.fail("(top level)", f"a policy file must be a mapping, found {describe_kind(top)}")
    src.mapping(top, "(top level)", _TOP_KEYS)
    version = top.get("version")
    if "version" not in top:
        src.fail("version", "required (version: 1)", top)
    if type(version) is not int or version != 1:
        src.fail(
            "version",
            f"unsupported version {version!r} (this clearance reads version 1)",
            top,
            "version",
        )
    strict = top.get("strict")
    if strict is not None and not isinstance(strict, bool):
        src.fail("strict", "must be true or false", top, "strict")
    principals: dict[str, dict[str, Any]] = {}
    raw_principals = src.mapping(top.get("principals"), "principals")
    for pid, attrs in raw_principals.items():
        if not PRINCIPAL_PATTERN.fullmatch(pid):
            src.fail(f"principals.{pid}", "not a valid principal id", raw_principals, pid)
        attrs_map = src.mapping(attrs, f"principals.{pid}")
        principals[pid] = src.json(attrs_map, f"principals.{pid}", raw_principals, pid)
    data = src.json(src.mapping(top.get("data"), "data"), "data", top, "data")
    raw_rules = top.get("rules")
    if raw_rules is None:
        raw_rules = []
    if not isinstance(raw_rules, list):
        src.fail("rules", f"must be a list, found {describe_kind(raw_rules)}", top, "rules")
    rules = [_parse_rule(src, raw, i, raw_rules) for i, raw in enumerate(raw_rules)]
    return _Part(src, strict, principals, _parse_tools(src, top.get("tools")), data, rules)


def _merge_unique(
    kind: str, target: dict[str, Any], owners: dict[str, str], items: Mapping[str, Any], name: str
) -> None:
    for key, value in items.items():
        if key in owners:
            raise PolicyError(f"{kind} {key!r} is defined twice: in {owners[key]} and in {name}")
        owners[key] = name
        target[key] = value


def _merge(parts: list[_Part]) -> Bundle:
    strict: bool | None = None
    strict_owner = ""
    principals: dict[str, dict[str, Any]] = {}
    tools: dict[str, tuple[dict[str, Any], Tool]] = {}
    data: dict[str, Any] = {}
    pending: list[_PendingRule] = []
    owners: dict[str, dict[str, str]] = {
        k: {} for k in ("principal", "tool", "data key", "rule id")
    }
    for part in parts:
        name = part.source.name
        if part.strict is not None:
            if strict is not None and strict != part.strict:
                raise PolicyError(
                    f"strict is {str(strict).lower()} in {strict_owner} "
                    f"but {str(part.strict).lower()} in {name}"
                )
            strict, strict_owner = part.strict, name
        _merge_unique("principal", principals, owners["principal"], part.principals, name)
        _merge_unique("tool", tools, owners["tool"], part.tools, name)
        _merge_unique("data key", data, owners["data key"], part.data, name)
        for rule in part.rules:
            rule_id = rule.normalized["id"]
            _merge_unique("rule id", {}, owners["rule id"], {rule_id: rule}, rule.origin)
            pending.append(rule)
    is_strict = bool(strict)
    rules = tuple(rule.build(data) for rule in pending)
    _check_references(is_strict, tools, data, rules)
    document = {
        "version": 1,
        "strict": is_strict,
        "principals": principals,
        "tools": {name: normalized for name, (normalized, _) in tools.items()},
        "data": data,
        "rules": [rule.normalized for rule in pending],
    }
    try:
        digest = json_digest(document)
    except InputError as exc:
        raise PolicyError(f"the bundle cannot be canonicalized: {exc}") from None
    return Bundle(
        document=document,
        digest=digest,
        strict=is_strict,
        principals=principals,
        tools={name: tool for name, (_, tool) in tools.items()},
        data=data,
        rules=rules,
    )


def _check_references(
    strict: bool, tools: Mapping[str, Any], data: Mapping[str, Any], rules: tuple[Rule, ...]
) -> None:
    for rule in rules:
        if strict:
            for action in rule.actions:
                if action != "*" and action not in tools:
                    raise PolicyError(
                        f"{rule.origin}: rule {rule.id!r} names action {action!r}, which is not "
                        "under tools; strict mode denies it before any rule runs"
                    )
        keys = rule.condition.data_need
        for key in sorted(keys or ()):
            if key not in data:
                known = ", ".join(sorted(data)) or "none"
                raise PolicyError(
                    f"{rule.origin}: rule {rule.id!r} reads data.{key}, but the bundle's data "
                    f"has no key {key!r} (keys: {known})"
                )


def policy_files(path: str | Path) -> list[Path]:
    """The files a bundle path stands for, in load order; raises PolicyError if there are none."""
    root = Path(path)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise PolicyError(f"{root}: no such policy file or directory")
    try:
        files = sorted(
            child
            for child in root.iterdir()
            if child.suffix in (".yaml", ".yml")
            and not child.name.startswith(".")
            and child.is_file()
        )
    except OSError as exc:
        raise PolicyError(f"{root}: cannot list policy directory: {exc.strerror or exc}") from None
    if not files:
        raise PolicyError(f"{root}: no *.yaml or *.yml policy files in the directory")
    return files


def load_bundle(
    path: str | Path, *, reader: Callable[[Path], LoadedFile] = load_yaml_file
) -> Bundle:
    """Load, validate and merge the bundle at ``path`` (a directory or one file)."""
    return _merge([_parse_part(reader(file)) for file in policy_files(path)])


def bundle_from_document(document: Mapping[str, Any]) -> Bundle:
    """Rebuild a bundle from its canonical document (e.g. from a ``policy`` ledger entry)."""
    if not isinstance(document, Mapping):
        raise PolicyError(
            f"<document>: a policy document must be a JSON object, found {describe_kind(document)}"
        )
    return _merge([_parse_part(LoadedFile(name="<document>", value=dict(document)))])
