"""Value provenance, the pure part: candidate extraction, normalization, the helpers' view.

Each extraction rule of :mod:`clearance._internal.policy.provenance` has a test here,
and so does each stated limit (what is *not* recognized).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clearance._internal.canonical import canonical_json
from clearance._internal.policy.bundle import load_bundle
from clearance._internal.policy.cel_engine import CelPolicyEngine
from clearance._internal.policy.functions import HELPERS, PROVENANCE_HELPERS
from clearance._internal.policy.provenance import (
    EMPTY,
    Provenance,
    ProvenanceUnavailable,
    candidates,
    fingerprint,
    key_check,
    output_candidates,
    trace_key,
    view_of,
)
from clearance._internal.policy.testing import run_cases
from clearance.errors import PolicyError

from .support import engine_from, request, write

SALT = b"0123456789abcdef"
EXAMPLE = Path(__file__).parents[3] / "src/clearance/examples/provenance"
EXAMPLE_CASES = Path(__file__).parents[2] / "assets/policies/provenance/cases.yaml"


def found(text: str, origin: str = "sensitive") -> list[str]:
    return candidates(text, origin)  # type: ignore[arg-type]


# --- extraction, rule by rule -------------------------------------------------------------------


def test_the_whole_string_counts_from_four_characters() -> None:
    assert found("  Jane   DOE ") == ["jane doe"]
    assert found("abc") == []


def test_emails_and_urls_are_found_and_ascii_lowered() -> None:
    text = "Mail Evil@Attacker.Example, see HTTPS://Attacker.Example/Drop."
    cands = found(text)
    assert "evil@attacker.example" in cands
    assert "https://attacker.example/drop" in cands


def test_domains_count_for_untrusted_output_only() -> None:
    text = "write to billing@attacker.example"
    assert "attacker.example" in found(text, "untrusted")
    assert "attacker.example" not in found(text, "sensitive")


def test_ibans_with_a_valid_check_are_found_with_or_without_spaces() -> None:
    assert "de89370400440532013000" in found("IBAN DE89 3704 0044 0532 0130 00, thanks")
    assert "de89370400440532013000" in found("iban de89370400440532013000")
    # a glued word is dropped by the check digits, not kept as part of the IBAN
    assert "de89370400440532013000" in found("DE89 3704 0044 0532 0130 00 please pay")
    assert "de88370400440532013000" not in found("DE88 3704 0044 0532 0130 00")  # bad check


def test_card_like_numbers_with_spaces_or_dashes_are_digits_only() -> None:
    for text in ("4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111"):
        assert "4111111111111111" in found(f"card {text} exp 12/29")
    # glued to a neighbouring number: every 13-19 digit window of groups counts
    assert "4111111111111111" in found("ref 12 4111 1111 1111 1111 99")


def test_digit_runs_of_six_or_more_count_even_inside_words() -> None:
    assert "4366918" in found("passport P4366918")
    assert "12345" not in found("order 12345 shipped")


def test_quoted_strings_of_eight_characters_count() -> None:
    text = "the code is \"Open Sesame 42\" or 'blue whale' or “long enough” or `tick tock!`"
    cands = found(text)
    for quoted in ("open sesame 42", "blue whale", "long enough", "tick tock!"):
        assert quoted in cands
    assert found("it's a don't, isn't it") == ["it's a don't, isn't it"]  # apostrophes
    assert found('say "a          b"') == ['say "a b"']  # eight characters after collapsing


def test_tokens_need_eight_characters_and_more_than_letters() -> None:
    cands = found("(X1234567), acme-payout-7; everything; tomorrow!")
    assert "x1234567" in cands
    assert "acme-payout-7" in cands
    assert "everything" not in cands  # a plain word never counts
    assert "tomorrow" not in cands


def test_numbers_count_from_six_digits_when_integral() -> None:
    assert candidates(4111111111111111, "sensitive") == ["4111111111111111"]
    assert candidates(4111111111111111.0, "sensitive") == ["4111111111111111"]
    assert candidates(-123456, "sensitive") == ["123456"]
    assert candidates(12345, "sensitive") == []
    assert candidates(123456.5, "sensitive") == []
    assert candidates(float("nan"), "sensitive") == []


def test_only_ascii_letters_fold() -> None:
    # KELVIN SIGN, Cyrillic a and fullwidth letters stay themselves.
    assert found("\u212araken-ltd-99") != found("Kraken-ltd-99")
    assert found("KRAKEN-LTD-99") == found("kraken-ltd-99")
    assert "\u0430cme-supplies" in found("\u0430cme-supplies")


def test_what_is_not_recognized() -> None:
    secret = set(
        output_candidates({"passport": "P4366918", "card": "4111 1111 1111 1111"}, "sensitive")
    )
    for disguised in (
        base64.b64encode(b"P4366918 4111111111111111").decode(),
        "card 4111 1111 then 1111 1111",
        "P-436-6918",
        "４１１１ １１１１ １１１１ １１１１",  # fullwidth digits
        "pe cuatro tres seis seis nueve uno ocho",
    ):
        assert not secret & set(found(disguised)), disguised


# --- walking results -----------------------------------------------------------------------------


def test_results_are_walked_as_json_values_not_keys() -> None:
    result: dict[str, Any] = {
        "passport_number": "P4366918",
        "cards": [{"number": 4111111111111111}, ("tuple-item-9",)],
        "tags": {"set-member-1"},
        "flags": [True, None, 3],
    }
    cands = output_candidates(result, "sensitive")
    assert "passport_number" not in cands
    assert {"p4366918", "4366918", "4111111111111111", "tuple-item-9", "set-member-1"} <= set(cands)


def test_bytes_objects_and_cycles() -> None:
    class Card:
        def __str__(self) -> str:
            return "card 4111 1111 1111 1111"

    loop: list[Any] = [b"passport P4366918"]
    loop.append(loop)
    cands = output_candidates([loop, Card()], "sensitive")
    assert "4366918" in cands
    assert "4111111111111111" in cands


# --- fingerprints --------------------------------------------------------------------------------


def test_fingerprints_depend_on_the_gate_key_and_the_salt() -> None:
    plain = trace_key(None, SALT)
    keyed = trace_key(b"k" * 32, SALT)
    assert len({plain, keyed, trace_key(b"k" * 32, SALT[::-1])}) == 3
    mark = fingerprint(keyed, "4366918")
    assert len(mark) == 32
    assert int(mark, 16) >= 0
    assert mark != fingerprint(plain, "4366918")
    assert key_check(keyed) != key_check(plain)


@given(st.lists(st.text(min_size=1, max_size=40), max_size=5))
def test_view_of_holds_every_value_it_was_given(values: list[str]) -> None:
    view = view_of({"untrusted": values}, salt=SALT)
    for value in values:
        if candidates(value, "untrusted"):
            assert view.from_untrusted(value)
        assert not view.carries_sensitive(value)


# --- the view and the helpers -----------------------------------------------------------------


def test_the_empty_view_answers_false_and_still_checks_types() -> None:
    assert not EMPTY.from_untrusted("evil@attacker.example")
    assert not EMPTY.carries_sensitive(4111111111111111)
    for bad in (True, None, ["x"], {"k": "v"}):
        with pytest.raises(TypeError, match="expects a string or a number"):
            EMPTY.from_untrusted(bad)


def test_a_full_origin_answers_true_for_anything_with_a_candidate() -> None:
    view = Provenance(key=trace_key(None, SALT), full=frozenset({"untrusted"}))
    assert view.from_untrusted("new@partner.example")
    assert not view.from_untrusted("abc")  # no candidate at all
    assert not view.carries_sensitive("new@partner.example")


def test_an_unavailable_view_fails_the_helpers() -> None:
    view = Provenance(unavailable="keyed by another home")
    with pytest.raises(ProvenanceUnavailable, match="another home"):
        view.from_untrusted("x@y.example")
    assert view.evidence("x@y.example") == {"untrusted": None, "sensitive": None}


def test_evidence_is_what_the_helpers_answer() -> None:
    view = view_of({"sensitive": [{"passport": "P4366918"}]}, salt=SALT)
    assert view.evidence("Passport P4366918") == {"untrusted": False, "sensitive": True}
    assert view.evidence({"not": "a string"}) == {"untrusted": None, "sensitive": None}
    assert EMPTY.evidence("anything") is None
    assert EMPTY.evidence(["a list"]) == {"untrusted": None, "sensitive": None}


def test_a_replayed_view_answers_logged_redactions_and_nothing_else() -> None:
    redacted = {"redacted": "sha256:" + "0" * 64, "salt": "AAAA", "provenance": {}}
    evidence: dict[str, bool | None] = {"untrusted": False, "sensitive": True}
    key = canonical_json(redacted).decode()
    view = Provenance(redactions={key: evidence, "other": {"untrusted": None, "sensitive": None}})
    assert view.carries_sensitive(redacted)
    assert not view.from_untrusted(redacted)
    with pytest.raises(TypeError):
        view.carries_sensitive({**redacted, "salt": "BBBB"})  # not a logged object
    with pytest.raises(TypeError):
        view.carries_sensitive({"x": float("nan")})  # not even JSON
    answers_none = Provenance(redactions={key: {"untrusted": None, "sensitive": None}})
    with pytest.raises(TypeError, match="redacted value was not"):
        answers_none.from_untrusted(redacted)


def test_unbound_helpers_fail() -> None:
    assert {"from_untrusted", "carries_sensitive"} == PROVENANCE_HELPERS
    with pytest.raises(RuntimeError, match="not bound"):
        HELPERS["from_untrusted"]("x")


# --- through the engine -------------------------------------------------------------------------


BUNDLE = """
version: 1
tools:
  fetch: {untrusted_output: true}
  profile: {sensitive_output: true}
  send: {}
rules:
  - id: send
    effect: allow
    actions: [send]
  - id: no-injected-recipients
    effect: deny
    actions: [send]
    when: from_untrusted(args.to) || args.to.from_untrusted()
  - id: no-secrets
    effect: deny
    actions: [send]
    when: carries_sensitive(args.body) || carries_sensitive(args.n)
"""


def test_the_engine_binds_the_helpers_to_the_request(tmp_path: Path) -> None:
    engine = engine_from(tmp_path, BUNDLE)
    view = view_of(
        {"untrusted": ["mail evil@attacker.example"], "sensitive": [{"n": 4111111111111111}]},
        salt=SALT,
    )

    def decide(args: dict[str, Any], provenance: Provenance = view) -> list[str]:
        from dataclasses import replace

        return engine.evaluate(replace(request("send", args), provenance=provenance)).rule_ids

    clean = {"to": "mark@travel.example", "body": "hello", "n": 1}
    assert decide(clean) == ["send"]
    assert decide({**clean, "to": "evil@attacker.example"}) == ["no-injected-recipients"]
    assert decide({**clean, "body": "4111-1111-1111-1111"}) == ["no-secrets"]
    assert decide({**clean, "n": 4111111111111111}) == ["no-secrets"]  # a CEL double
    assert decide({**clean, "to": "evil@attacker.example"}, EMPTY) == ["send"]
    failing = engine.evaluate(request("send", {**clean, "body": ["list"]}))
    assert failing.effect == "deny"
    assert "expects a string or a number, got list" in failing.reasons[0].message


def test_the_bundle_reads_sensitive_output_and_its_digest_covers_it(tmp_path: Path) -> None:
    engine = engine_from(tmp_path, BUNDLE)
    tools = engine.document()["tools"]
    assert tools["profile"]["sensitive_output"] is True
    assert "sensitive_output" not in tools["fetch"]  # false is left out: old digests hold
    spec = engine.tool("profile")
    assert spec is not None
    assert (spec.sensitive_output, spec.untrusted_output) == (True, False)
    write(tmp_path, BUNDLE.replace("profile: {sensitive_output: true}", "profile: {}"))
    assert CelPolicyEngine.from_directory(tmp_path).digest != engine.digest
    explicit = BUNDLE.replace("send: {}", "send: {sensitive_output: false}")
    write(tmp_path, explicit)
    assert CelPolicyEngine.from_directory(tmp_path).digest == engine.digest
    assert CelPolicyEngine.from_document(engine.document()).digest == engine.digest
    write(tmp_path, BUNDLE.replace("sensitive_output: true", "sensitive_output: maybe"))
    with pytest.raises(PolicyError, match=r"tools.profile.sensitive_output: must be true or false"):
        load_bundle(tmp_path)


# --- the example bundle and its policy tests -----------------------------------------------------


def test_the_example_bundle_passes_its_policy_tests() -> None:
    results = run_cases(CelPolicyEngine.from_directory(EXAMPLE), EXAMPLE_CASES)
    assert len(results) >= 15
    assert [r.diff() for r in results if not r.passed] == []
    effects = {r.case.name: r.decision.effect for r in results}
    assert effects["passport and card numbers to the named address are denied (exfiltration)"] == (
        "deny"
    )
    assert effects["the injected recipient needs approval (injection)"] == "approval_required"
