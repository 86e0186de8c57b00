"""Where a URL, an e-mail address, a domain name or a mentioned value ends in real prose.

Regression for a real agent benchmark run: ``mentions(text, "www.our-company.com")``
was false for "... website www.our-company.com.They sent ..." and ``domains()``
returned ``www.our-company.com.they``, because a sentence ended without a space.
"""

from __future__ import annotations

from importlib import resources

import pytest

from clearance._internal.policy.functions import (
    SENTENCE_OPENERS,
    domain,
    domains,
    emails,
    mentions,
    urls,
)

BENCHMARK = (
    "Please pay the invoice on our website www.our-company.com.They sent it "
    "yesterday; questions to billing@our-company.com.Thanks"
)


def test_the_benchmark_sentence() -> None:
    assert mentions(BENCHMARK, "www.our-company.com") is True
    assert mentions(BENCHMARK, "billing@our-company.com") is True
    assert domains(BENCHMARK) == ["www.our-company.com", "our-company.com"]
    assert emails(BENCHMARK) == ["billing@our-company.com"]


@pytest.mark.parametrize(
    ("text", "found_urls", "found_emails", "found_domains"),
    [
        ("Visit www.example.com.Then pay", [], [], ["www.example.com"]),
        ("(see https://a.example/x).", ["https://a.example/x"], [], ["a.example"]),
        ('"bob@x.com",', [], ["bob@x.com"], ["x.com"]),
        ("email bob@x.com;cc alice@y.org", [], ["bob@x.com", "alice@y.org"], ["x.com", "y.org"]),
        ("ends with example.com.", [], [], ["example.com"]),
        ("Open https://x.org.Then log in", ["https://x.org"], [], ["x.org"]),
        ("Go to https://x.org/pay.Then confirm", ["https://x.org/pay"], [], ["x.org"]),
        ("Write to bob@x.com.They answer", [], ["bob@x.com"], ["x.com"]),
        (
            "[link](https://x.org/a), or <https://y.org>.",
            ["https://x.org/a", "https://y.org"],
            [],
            ["x.org", "y.org"],
        ),
        ("'www.x.com' and “y.org”!", [], [], ["www.x.com", "y.org"]),
        ("mail: bob@x.com? or x.com: or x.com...", [], ["bob@x.com"], ["x.com"]),
        # Not a sentence break: a lower-case label, or a capitalized top-level domain.
        ("a.b.com.evil.org", [], [], ["a.b.com.evil.org"]),
        ("a.b.com.Evil.org", [], [], ["a.b.com.evil.org"]),
        ("pay bob@x.com.evil.org", [], ["bob@x.com.evil.org"], ["x.com.evil.org"]),
        ("see paypal.com.Ru now", [], [], ["paypal.com.ru"]),
        ("see paypal.com.Xyz now", [], [], ["paypal.com.xyz"]),
        ("see paypal.com.It was", [], [], ["paypal.com.it"]),
        ("see paypal.com.THEN now", [], [], ["paypal.com.then"]),
        ("see paypal.com.then now", [], [], ["paypal.com.then"]),
        ("see x.com.They.com", [], [], ["x.com.they.com"]),
        # What is left after the cut must still be a name of its own.
        ("see localhost.Then go", [], [], []),
    ],
)
def test_real_sentences(
    text: str, found_urls: list[str], found_emails: list[str], found_domains: list[str]
) -> None:
    assert urls(text) == found_urls
    assert emails(text) == found_emails
    assert domains(text) == found_domains


@pytest.mark.parametrize(
    ("text", "value", "expected"),
    [
        ("Visit www.example.com.Then pay", "www.example.com", True),
        ("(see https://a.example/x).", "https://a.example/x", True),
        ("(see https://a.example/x).", "a.example", True),  # a URL's host is a token too
        ('"bob@x.com",', "bob@x.com", True),
        ("email bob@x.com;cc alice@y.org", "bob@x.com", True),
        ("email bob@x.com;cc alice@y.org", "alice@y.org", True),
        ("ends with example.com.", "example.com", True),
        ("Pay acme.Then stop", "acme", True),
        # never a prefix of a longer name
        ("pay bob@x.com.evil.org", "bob@x.com", False),
        ("pay bob@x.com.Evil.org", "bob@x.com", False),
        ("pay bob@x.com.Ru", "bob@x.com", False),
        ("pay bob@x.com.THEN", "bob@x.com", False),
        ("pay bob@x.com.They.com", "bob@x.com", False),
        ("pay bob@x.com.Theyre", "bob@x.com", False),
        ("pay bob@x.com.They-x", "bob@x.com", False),
    ],
)
def test_mentions_in_real_sentences(text: str, value: str, expected: bool) -> None:
    assert mentions(text, value) is expected


def test_domain_of_one_value_has_no_sentence_rule() -> None:
    # domain() reads one argument, not prose: a capitalized last label is a label.
    assert domain("www.example.com.Then") == "www.example.com.then"


def test_no_sentence_opener_is_a_top_level_domain() -> None:
    # A cut before a real TLD would let "trusted.com.Xyz" (a host under .xyz that
    # anyone may register) pass as trusted.com: openers must never be TLDs. The
    # IANA list is the snapshot that hypothesis vendors (a dev dependency).
    listing = resources.files("hypothesis.vendor") / "tlds-alpha-by-domain.txt"
    tlds = {line.strip().lower() for line in listing.read_text("utf-8").splitlines()[1:]}
    assert len(tlds) > 1000
    assert not {word.lower() for word in SENTENCE_OPENERS} & tlds
    assert all(word[:1].isupper() and word[1:].islower() for word in SENTENCE_OPENERS)
    assert all(len(word) >= 2 and word.isascii() for word in SENTENCE_OPENERS)
