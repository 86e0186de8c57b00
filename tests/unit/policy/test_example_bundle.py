"""The example bundle (``clearance init``): the optional-memo rule and nothing else changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from clearance._internal.policy.bundle import load_bundle
from clearance._internal.policy.cel_engine import CelPolicyEngine

from .support import request, trace

EXAMPLE = Path(__file__).parents[3] / "src/clearance/examples/policies"
MEMO_RULE = "no-links-in-payment-memos"

example = CelPolicyEngine(load_bundle(EXAMPLE))
document = example.document()
document["rules"] = [rule for rule in document["rules"] if rule["id"] != MEMO_RULE]
without_memo_rule = CelPolicyEngine.from_document(document)


def pay(**args: Any) -> dict[str, Any]:
    return {"to": "acme-supplies", "amount": 120.0, "currency": "EUR", **args}


CAPPED = trace(mandate={"text": "Pay acme-supplies", "bounds": {"spend_cap": 1000}})


def test_the_memo_rule_reads_only_the_memo() -> None:
    (rule,) = [rule for rule in example.bundle.rules if rule.id == MEMO_RULE]
    assert [binding.describe() for binding in rule.condition.bindings] == ['args.get("memo")']


def test_an_absent_memo_is_fine_and_a_link_is_not() -> None:
    assert example.evaluate(request("pay_invoice", pay(), facts=CAPPED)).effect == "allow"
    plain = pay(memo="invoice 2026-03")
    assert example.evaluate(request("pay_invoice", plain, facts=CAPPED)).effect == "allow"
    linked = pay(memo="see https://evil.example/x")
    decision = example.evaluate(request("pay_invoice", linked, facts=CAPPED))
    assert (decision.effect, decision.rule_ids) == ("deny", [MEMO_RULE])


@settings(max_examples=150, deadline=None)
@given(
    to=st.sampled_from(["acme-supplies", "globex-logistics", "evil-corp", "initech-llc"]),
    amount=st.sampled_from([0, 1, 60, 60.0, 120.5, 500, 500.0, 501, 2000.0]),
    memo=st.none() | st.sampled_from(["", "invoice 2026-03", "ref 12", "see x.org"]),
    cap=st.none() | st.sampled_from([100, 500.0, 1000, "700"]),
    spent=st.none() | st.sampled_from([0, 90.5, 400]),
    untrusted=st.booleans(),
    text=st.sampled_from(["", "Pay initech-llc EUR 90"]),
)
def test_decisions_are_otherwise_those_of_the_bundle_without_the_memo_rule(
    to: str,
    amount: float,
    memo: str | None,
    cap: Any,
    spent: float | None,
    untrusted: bool,
    text: str,
) -> None:
    args: dict[str, Any] = {"to": to, "amount": amount, "currency": "EUR"}
    if memo is not None:
        args["memo"] = memo
    facts = trace(
        untrusted=untrusted,
        totals={} if spent is None else {"pay_invoice": {"amount": spent}},
        mandate={"text": text, "bounds": {} if cap is None else {"spend_cap": cap}},
    )
    new = example.evaluate(request("pay_invoice", args, facts=facts))
    old = without_memo_rule.evaluate(request("pay_invoice", args, facts=facts))
    assert (new.effect, new.rule_ids) == (old.effect, old.rule_ids)
