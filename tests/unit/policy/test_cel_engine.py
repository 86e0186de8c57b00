"""The CEL engine: combining, fail-closed rule errors, strict mode, schemas, variables, replay."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearance._internal.canonical import canonical_json, json_digest
from clearance._internal.policy import DENY_ALL_DIGEST, CelPolicyEngine, DenyAllEngine
from clearance._internal.policy.bundle import EMPTY_DOCUMENT
from clearance._internal.policy.engine import Decision
from clearance.errors import PolicyError

from .support import engine_from, request, trace, write

COMBINING = """\
version: 1
rules:
  - id: allow-small
    effect: allow
    actions: [refund_payment]
    when: args.amount <= 200.0
    message: small refunds are fine
  - id: allow-usd
    effect: allow
    actions: [refund_payment]
    when: args.currency == "USD"
  - id: approve-large
    effect: approval_required
    actions: [refund_payment]
    when: args.amount > 1000.0
  - id: approve-eur
    effect: approval_required
    actions: [refund_payment]
    when: args.currency == "EUR"
  - id: deny-blocked
    effect: deny
    actions: [refund_payment]
    when: args.to == "mallory"
    message: mallory is blocked
"""


def decide(engine: CelPolicyEngine, **kwargs: Any) -> Decision:
    return engine.evaluate(request(**kwargs))


@pytest.fixture
def combining(tmp_path: Path) -> CelPolicyEngine:
    return engine_from(tmp_path, COMBINING)


def test_allow_lists_every_matching_allow_rule(combining: CelPolicyEngine) -> None:
    decision = decide(combining, args={"amount": 50.0, "currency": "USD", "to": "bob"})
    assert decision.effect == "allow"
    assert decision.rule_ids == ["allow-small", "allow-usd"]
    assert decision.reasons[0].message == "small refunds are fine"
    assert decision.reasons[1].message == "matched rule allow-usd"
    assert decision.policy_digest == combining.digest


def test_approval_required_beats_allow(combining: CelPolicyEngine) -> None:
    decision = decide(combining, args={"amount": 50.0, "currency": "EUR", "to": "bob"})
    assert decision.effect == "approval_required"
    assert decision.rule_ids == ["approve-eur"]


def test_deny_beats_everything(combining: CelPolicyEngine) -> None:
    decision = decide(combining, args={"amount": 5000.0, "currency": "EUR", "to": "mallory"})
    assert decision.effect == "deny"
    assert decision.rule_ids == ["deny-blocked"]
    assert decision.reasons[0].message == "mallory is blocked"


def test_nothing_matching_is_default_deny(combining: CelPolicyEngine) -> None:
    decision = decide(combining, args={"amount": 500.0, "currency": "GBP", "to": "bob"})
    assert decision.effect == "deny"
    assert decision.reasons[0].rule == "default-deny"
    assert decision.reasons[0].message == "no rule allows this action"


def test_bundle_without_rules_denies_everything(tmp_path: Path) -> None:
    engine = engine_from(tmp_path, "version: 1\ntools: {refund_payment: {}}\n")
    assert decide(engine).rule_ids == ["default-deny"]
    assert engine.digest != DENY_ALL_DIGEST  # it has a tool, so it is not the empty document


def test_deny_all_engine() -> None:
    engine = DenyAllEngine()
    assert engine.digest == DENY_ALL_DIGEST == json_digest(dict(EMPTY_DOCUMENT))
    assert engine.document() == EMPTY_DOCUMENT
    assert engine.tool("x") is None
    assert engine.principal_attributes("agent:a") == {}
    decision = engine.evaluate(request())
    assert (decision.effect, decision.rule_ids) == ("deny", ["default-deny"])


def test_empty_bundle_has_the_deny_all_digest(tmp_path: Path) -> None:
    engine = engine_from(tmp_path, "version: 1\n")
    assert engine.digest == DENY_ALL_DIGEST
    assert decide(engine).rule_ids == ["default-deny"]


RULE_ERRORS = """\
version: 1
rules:
  - id: allow-all
    effect: allow
  - id: reads-missing
    effect: allow
    actions: [missing_attr]
    when: args.nope == 1
  - id: mixes-types
    effect: allow
    actions: [type_mismatch]
    when: args.amount + "x" == "y"
  - id: not-bool
    effect: allow
    actions: [non_bool]
    when: args.amount
  - id: helper-fails
    effect: deny
    actions: [helper_error]
    when: lower(args.amount) == "x"
"""


@pytest.mark.parametrize(
    ("action", "rule", "detail"),
    [
        ("missing_attr", "reads-missing", "no value at args.nope (missing key"),
        ("type_mismatch", "mixes-types", "Unsupported operation: double + string"),
        ("non_bool", "not-bool", "returned double instead of a bool"),
        ("helper_error", "helper-fails", "lower() expects a string argument, got double"),
    ],
)
def test_rule_error_denies_naming_the_rule(
    tmp_path: Path, action: str, rule: str, detail: str
) -> None:
    engine = engine_from(tmp_path, RULE_ERRORS)
    decision = decide(engine, action=action, args={"amount": 5})
    assert decision.effect == "deny"
    assert decision.rule_ids == [rule]
    assert decision.reasons[0].message.startswith(f"rule {rule} failed: ")
    assert detail in decision.reasons[0].message


def test_rules_of_other_actions_are_never_evaluated(tmp_path: Path) -> None:
    engine = engine_from(tmp_path, RULE_ERRORS)
    decision = decide(engine, action="refund_payment", args={"amount": 5})
    assert (decision.effect, decision.rule_ids) == ("allow", ["allow-all"])


def test_failing_rule_and_matching_deny_are_both_reported(tmp_path: Path) -> None:
    engine = engine_from(
        tmp_path,
        """\
        version: 1
        rules:
          - {id: broken, effect: deny, when: args.nope}
          - {id: blocked, effect: deny, when: "true"}
          - {id: ok, effect: allow}
        """,
    )
    decision = decide(engine)
    assert decision.effect == "deny"
    assert decision.rule_ids == ["blocked", "broken"]


SCHEMA = """\
version: 1
strict: true
tools:
  refund_payment:
    args_schema:
      type: object
      required: [amount]
      properties: {amount: {type: number}}
  fetch_url: {}
rules:
  - id: refund-rule-would-fail-on-a-string
    effect: allow
    actions: [refund_payment]
    when: args.amount + 1.0 < 100.0
  - id: fetch
    effect: allow
    actions: [fetch_url]
"""


def test_args_schema_is_checked_before_any_rule(tmp_path: Path) -> None:
    engine = engine_from(tmp_path, SCHEMA)
    decision = decide(engine, args={"amount": "lots"})
    assert decision.effect == "deny"
    assert decision.rule_ids == ["args-schema"]
    assert decision.reasons[0].message == 'args.amount must be of type "number"'
    assert decide(engine, args={"amount": 5.0}).effect == "allow"


def test_strict_mode_denies_unlisted_actions(tmp_path: Path) -> None:
    engine = engine_from(tmp_path, SCHEMA)
    decision = decide(engine, action="delete_everything")
    assert decision.rule_ids == ["unknown-action"]
    assert "'delete_everything' is not listed under tools" in decision.reasons[0].message
    assert decide(engine, action="fetch_url").effect == "allow"


def test_non_strict_mode_lets_wildcard_rules_decide_unlisted_actions(tmp_path: Path) -> None:
    engine = engine_from(
        tmp_path, SCHEMA.replace("strict: true", "strict: false") + "  - {id: any, effect: allow}\n"
    )
    assert decide(engine, action="delete_everything").rule_ids == ["any"]


def test_tool_registry(tmp_path: Path) -> None:
    engine = engine_from(
        tmp_path,
        "version: 1\ntools:\n  pay:\n    untrusted_output: true\n    sensitive: [card.number]\n",
    )
    spec = engine.tool("pay")
    assert spec is not None
    assert (spec.name, spec.untrusted_output, spec.sensitive, spec.args_schema) == (
        "pay",
        True,
        ("card.number",),
        None,
    )
    assert engine.tool("other") is None


PATTERNS = """\
version: 1
principals:
  agent:billing-bot: {team: finance, limit: 300}
  agent:ops-bot: {team: ops}
rules:
  - id: any-agent-reads
    effect: allow
    principals: ["agent:*"]
    actions: [read]
  - id: billing-by-attribute
    effect: allow
    actions: [refund_payment]
    when: principal.attrs.team == "finance" && args.amount <= principal.attrs.limit
  - id: exact-principal
    effect: allow
    principals: [human:alice]
    actions: ["*"]
  - id: id-check
    effect: deny
    actions: [refund_payment]
    when: principal.id == "agent:ops-bot"
"""


@pytest.mark.parametrize(
    ("principal", "action", "args", "expected"),
    [
        ("agent:anything", "read", {}, ["any-agent-reads"]),
        ("service:x", "read", {}, ["default-deny"]),
        ("human:alice", "anything", {}, ["exact-principal"]),
        ("human:alicex", "anything", {}, ["default-deny"]),
        ("agent:billing-bot", "refund_payment", {"amount": 300}, ["billing-by-attribute"]),
        ("agent:billing-bot", "refund_payment", {"amount": 301}, ["default-deny"]),
        ("agent:ops-bot", "refund_payment", {"amount": 1}, ["id-check"]),
        ("agent:unknown", "refund_payment", {"amount": 1}, ["billing-by-attribute"]),
    ],
)
def test_principal_and_action_patterns_and_attributes(
    tmp_path: Path, principal: str, action: str, args: dict[str, Any], expected: list[str]
) -> None:
    engine = engine_from(tmp_path, PATTERNS)
    decision = decide(engine, principal=principal, action=action, args=args)
    assert decision.rule_ids == expected


def test_unknown_principal_has_no_attributes(tmp_path: Path) -> None:
    engine = engine_from(tmp_path, PATTERNS)
    assert engine.principal_attributes("agent:billing-bot") == {"team": "finance", "limit": 300}
    assert engine.principal_attributes("agent:nobody") == {}
    # principal.attrs.team on an unknown principal is a missing key: the rule fails, deny
    decision = decide(engine, principal="agent:nobody", action="refund_payment", args={"amount": 1})
    assert decision.effect == "deny"
    assert "failed: no value at principal.attrs." in decision.reasons[0].message


VARIABLES = """\
version: 1
data:
  payees: [acme-supplies, globex]
  limits: {default: 100}
rules:
  - id: known-payee
    effect: allow
    actions: [pay]
    when: args.to in data.payees && args.amount <= data.limits.default
  - id: before-expiry
    effect: allow
    actions: [scoped]
    when: now < timestamp(trace.mandate.bounds.expires_at)
  - id: office-hours
    effect: allow
    actions: [hours]
    when: now.getHours() >= 9 && now.getHours() < 17
  - id: resource-and-purpose
    effect: allow
    actions: [read]
    when: resource.startsWith("/public/") && purpose == "audit" && input.ticket == "T-1"
  - id: approved
    effect: allow
    actions: [wire]
    when: approval != null && approval.approvers.size() >= 2
  - id: action-name
    effect: allow
    actions: ["*"]
    when: action == "ping"
"""


def test_data_variable(tmp_path: Path) -> None:
    engine = engine_from(tmp_path, VARIABLES)
    assert decide(engine, action="pay", args={"to": "globex", "amount": 100}).effect == "allow"
    assert decide(engine, action="pay", args={"to": "globex", "amount": 101}).effect == "deny"
    assert decide(engine, action="pay", args={"to": "initech", "amount": 1}).effect == "deny"


def test_now_compared_with_a_mandate_timestamp(tmp_path: Path) -> None:
    engine = engine_from(tmp_path, VARIABLES)
    facts = trace(mandate={"text": "", "bounds": {"expires_at": "2026-01-01T12:00:01Z"}})
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert decide(engine, action="scoped", facts=facts, now=now).effect == "allow"
    later = now + timedelta(seconds=1)
    assert decide(engine, action="scoped", facts=facts, now=later).effect == "deny"


def test_now_keeps_its_timezone(tmp_path: Path) -> None:
    engine = engine_from(tmp_path, VARIABLES)
    ten_utc = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    assert decide(engine, action="hours", now=ten_utc).effect == "allow"
    assert (
        decide(engine, action="hours", now=datetime(2026, 1, 1, 20, 0, tzinfo=UTC)).effect == "deny"
    )
    same_instant_elsewhere = ten_utc.astimezone(timezone(timedelta(hours=-9)))
    assert (
        decide(engine, action="hours", now=same_instant_elsewhere).effect
        == decide(engine, action="hours", now=same_instant_elsewhere).effect
    )


def test_naive_now_is_refused(tmp_path: Path) -> None:
    engine = engine_from(tmp_path, VARIABLES)
    with pytest.raises(PolicyError, match="timezone-aware"):
        decide(engine, action="hours", now=datetime(2026, 1, 1, 10, 0))


def test_resource_purpose_input_and_approval(tmp_path: Path) -> None:
    engine = engine_from(tmp_path, VARIABLES)
    ok = {"resource": "/public/a", "purpose": "audit", "input": {"ticket": "T-1"}}
    assert decide(engine, action="read", **ok).effect == "allow"
    assert decide(engine, action="read", **dict(ok, purpose="fun")).effect == "deny"
    assert decide(engine, action="read", **dict(ok, resource="/etc/passwd")).effect == "deny"
    assert decide(engine, action="wire", approval={"approvers": ["a", "b"]}).effect == "allow"
    assert decide(engine, action="wire", approval=None).effect == "deny"
    assert decide(engine, action="ping").effect == "allow"


MANDATE = """\
version: 1
data:
  payees: [acme-supplies]
rules:
  - id: transfers
    effect: allow
    actions: [transfer_funds]
  - id: no-ungrounded-transfers-after-untrusted-input
    effect: deny
    actions: [transfer_funds]
    when: >
      trace.untrusted && !(args.to in data.payees
                           || mentions(trace.mandate.text, args.to))
"""


@pytest.mark.parametrize(
    ("untrusted", "to", "text", "effect"),
    [
        (False, "mallory@evil.example", "", "allow"),
        (True, "mallory@evil.example", "Pay the invoice from bob@x.com", "deny"),
        (True, "acme-supplies", "", "allow"),
        (True, "bob@x.com", "Pay the invoice from Bob@X.com today", "allow"),
        (True, "ob@x.com", "Pay the invoice from bob@x.com", "deny"),
    ],
)
def test_mandate_grounding(
    tmp_path: Path, untrusted: bool, to: str, text: str, effect: str
) -> None:
    engine = engine_from(tmp_path, MANDATE)
    facts = trace(untrusted=untrusted, mandate={"text": text, "bounds": {}})
    decision = decide(engine, action="transfer_funds", args={"to": to}, facts=facts)
    assert decision.effect == effect
    if effect == "deny":
        assert decision.rule_ids == ["no-ungrounded-transfers-after-untrusted-input"]


def test_from_document_rebuilds_an_identical_engine(tmp_path: Path) -> None:
    engine = engine_from(
        tmp_path,
        VARIABLES
        + MANDATE.split("rules:\n", 1)[1].replace("data:\n  payees: [acme-supplies]\n", ""),
    )
    replayed = CelPolicyEngine.from_document(json.loads(json.dumps(engine.document())))
    assert replayed.digest == engine.digest
    cases: list[dict[str, Any]] = [
        {"action": "pay", "args": {"to": "globex", "amount": 10}},
        {"action": "pay", "args": {"to": "globex", "amount": 1000}},
        {
            "action": "scoped",
            "facts": trace(mandate={"text": "", "bounds": {"expires_at": "2027-01-01T00:00:00Z"}}),
        },
        {"action": "transfer_funds", "args": {"to": "x"}, "facts": trace(untrusted=True)},
        {"action": "ping"},
    ]
    for case in cases:
        assert replayed.evaluate(request(**case)) == engine.evaluate(request(**case))


def test_document_is_a_copy(tmp_path: Path) -> None:
    engine = engine_from(tmp_path, VARIABLES)
    document = engine.document()
    document["rules"].clear()
    assert engine.document()["rules"]


def test_unconvertible_input_is_a_policy_error(tmp_path: Path) -> None:
    engine = engine_from(tmp_path, VARIABLES)
    with pytest.raises(PolicyError, match="cannot pass the request to CEL"):
        decide(engine, action="pay", args={"to": object(), "amount": 1})
    # the engine recovers for the next request
    assert decide(engine, action="pay", args={"to": "globex", "amount": 1}).effect == "allow"


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-1000, 1000)
    | st.floats(-1e6, 1e6)
    | st.text(max_size=8)
)


@settings(max_examples=60, deadline=None)
@given(
    action=st.sampled_from(["pay", "scoped", "hours", "read", "wire", "ping", "transfer_funds"]),
    args=st.dictionaries(st.sampled_from(["to", "amount", "x"]), json_scalars, max_size=3),
    untrusted=st.booleans(),
    text=st.text(max_size=20),
    hour=st.integers(0, 23),
)
def test_same_input_twice_gives_the_same_decision(
    tmp_path_factory: pytest.TempPathFactory,
    action: str,
    args: dict[str, Any],
    untrusted: bool,
    text: str,
    hour: int,
) -> None:
    engine = _shared_engine(tmp_path_factory)
    facts = trace(untrusted=untrusted, mandate={"text": text, "bounds": {}})
    now = datetime(2026, 1, 1, hour, tzinfo=UTC)
    first = decide(engine, action=action, args=args, facts=facts, now=now)
    decide(engine, action="pay", args={"to": "globex", "amount": 1})  # something in between
    second = decide(engine, action=action, args=args, facts=facts, now=now)
    assert first == second


_ENGINES: dict[str, CelPolicyEngine] = {}


def _shared_engine(factory: pytest.TempPathFactory) -> CelPolicyEngine:
    if "e" not in _ENGINES:
        directory = factory.mktemp("determinism")
        write(directory, VARIABLES, "a.yaml")
        write(
            directory,
            MANDATE.replace("version: 1\ndata:\n  payees: [acme-supplies]\n", "version: 1\n"),
            "b.yaml",
        )
        _ENGINES["e"] = CelPolicyEngine.from_directory(directory)
    return _ENGINES["e"]


def test_decisions_from_many_threads_agree(tmp_path: Path) -> None:
    engine = engine_from(tmp_path, COMBINING)
    inputs = [
        {"amount": float(a), "currency": c, "to": t}
        for a in (10, 500, 5000)
        for c in ("USD", "EUR")
        for t in ("bob", "mallory")
    ]
    expected = [decide(engine, args=args) for args in inputs]
    failures: list[str] = []

    def worker() -> None:
        for _ in range(20):
            for args, want in zip(inputs, expected, strict=True):
                got = decide(engine, args=args)
                if got != want:
                    failures.append(f"{args}: {got} != {want}")

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_deny_all_digest_is_pinned() -> None:
    assert canonical_json(dict(EMPTY_DOCUMENT)) == (
        b'{"data":{},"principals":{},"rules":[],"strict":false,"tools":{},"version":1}'
    )
    assert DENY_ALL_DIGEST == (
        "sha256:ccfb7d1817eca5c48ee1d175bb84cc2b9100b9c583916b8fc6800b39ac451eaa"
    )
