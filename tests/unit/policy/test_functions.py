"""The helper functions: examples, properties, both CEL call styles, type errors."""

from __future__ import annotations

import cel
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clearance._internal.policy.functions import (
    HELPERS,
    domain,
    domains,
    emails,
    is_subdomain,
    lower,
    mentions,
    upper,
    urls,
)


def run(expression: str, **variables: object) -> object:
    context = cel.Context(variables=dict(variables), functions=dict(HELPERS))
    return cel.compile(expression).execute(context)


def test_lower_and_upper() -> None:
    assert lower("Straße ÉTÉ") == "straße été"
    assert upper("straße") == "STRASSE"


def test_lower_works_as_function_and_as_method_in_cel() -> None:
    assert run("lower(s)", s="AbC") == "abc"
    assert run("s.lower()", s="AbC") == "abc"
    assert run('s.upper() == "ABC"', s="aBc") is True


@given(st.text())
def test_lower_is_idempotent_and_matches_python(text: str) -> None:
    assert lower(text) == text.lower()
    assert lower(lower(text)) == lower(text)


def test_urls_finds_http_and_https_in_order_without_duplicates() -> None:
    text = (
        "see https://a.example.com/x?y=1). Then http://b.org/(x) and "
        "https://a.example.com/x?y=1, ftp://nope.org, https://"
    )
    assert urls(text) == ["https://a.example.com/x?y=1", "http://b.org/(x)"]


def test_emails_finds_addresses_as_written() -> None:
    text = "Mail Bob@X.com, alice.smith+tag@sub.example.org. Not: a@b, @x.com"
    assert emails(text) == ["Bob@X.com", "alice.smith+tag@sub.example.org"]


def test_domains_collects_url_hosts_email_domains_and_bare_names_lower_cased() -> None:
    text = (
        "Visit https://Docs.Example.com:8443/p, write bob@Mail.Example.org, "
        "or try evil.com. Not a domain: 10.0.0.1 or localhost"
    )
    assert domains(text) == ["docs.example.com", "mail.example.org", "evil.com"]


def test_domain_of_url_email_and_bare_name() -> None:
    assert domain("https://user@Example.COM:80/x") == "example.com"
    assert domain("Bob@X.Com") == "x.com"
    assert domain("example.com/path") == "example.com"
    assert domain("not a domain") == ""
    assert domain("") == ""
    assert domain("bob@") == ""


@pytest.mark.parametrize(
    ("text", "value", "expected"),
    [
        ("pay bob@x.com now", "bob@x.com", True),
        ("pay bob@x.com now", "ob@x.com", False),
        ("pay bob@x.com.evil.org", "bob@x.com", False),
        ("PAY  Bob\n Smith", "bob smith", True),
        ("bob's invoice", "bob", True),
        ("ask Bob.", "bob", True),
        ("bobby", "bob", False),
        ("refund 2000", "200", False),
        ("refund 2000", 200, False),
        ("refund $200.00", 200, True),
        ("refund 200.", 200, True),
        ("refund 200.5", 200, False),
        ("refund 200.5 now", 200.5, True),
        ("refund 2,000", 200, False),
        ("refund 1,000", 1000, True),
        ("refund 200,50", 200, False),
        ("owed -200", -200, True),
        ("owed 200", -200, False),
        ("anything", "", False),
        ("anything", "   ", False),
    ],
)
def test_mentions(text: str, value: object, expected: bool) -> None:
    assert mentions(text, value) is expected


@given(st.text(), st.text())
def test_mentions_never_finds_what_is_not_a_substring(text: str, value: str) -> None:
    if value.strip() and " ".join(value.casefold().split()) not in " ".join(
        text.casefold().split()
    ):
        assert mentions(text, value) is False


@given(st.integers(min_value=0, max_value=10**9), st.integers(min_value=1, max_value=9))
def test_mentions_of_a_number_is_not_fooled_by_a_longer_number(number: int, digit: int) -> None:
    assert mentions(f"pay {number}", number) is True
    assert mentions(f"pay {number}{digit}", number) is False
    assert mentions(f"pay {digit}{number}", number) is False


@given(st.text(alphabet="abcxyz@. -", max_size=30), st.text(alphabet="abcxyz@.", max_size=8))
def test_mentions_is_deterministic_and_case_insensitive(text: str, value: str) -> None:
    assert mentions(text, value) == mentions(text.upper(), value.lower())


def test_is_subdomain() -> None:
    assert is_subdomain("a.Example.com.", "example.com") is True
    assert is_subdomain("example.com", "example.com") is True
    assert is_subdomain("badexample.com", "example.com") is False
    assert is_subdomain("example.com", "") is False


def test_helpers_in_cel_conditions() -> None:
    text = "Refund order 1234 to alice@example.com via https://pay.example.com"
    assert run('mentions(t, "alice@example.com")', t=text) is True
    assert run('domains(t) == ["example.com", "pay.example.com"]', t=text) is True
    assert run('urls(t).size() == 1 && emails(t)[0] == "alice@example.com"', t=text) is True
    assert run('is_subdomain(domain(urls(t)[0]), "example.com")', t=text) is True


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: lower(1), "lower() expects a string argument, got int"),
        (lambda: upper(None), "upper() expects a string argument, got null"),
        (lambda: urls(["x"]), "urls() expects a string argument, got list"),
        (lambda: emails({}), "emails() expects a string argument, got map"),
        (lambda: domains(1.5), "domains() expects a string argument, got double"),
        (lambda: domain(True), "domain() expects a string argument, got bool"),
        (lambda: mentions(1, "x"), "mentions() expects a string as first argument, got int"),
        (lambda: mentions("x", True), "mentions() expects a string, int or double"),
        (lambda: is_subdomain("x", 1), "is_subdomain() expects a string as second argument"),
    ],
)
def test_wrong_types_raise_clear_type_errors(call: object, message: str) -> None:
    with pytest.raises(TypeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()  # type: ignore[operator]


def test_wrong_type_inside_cel_is_an_error_not_a_result() -> None:
    with pytest.raises(RuntimeError, match="lower\\(\\) expects a string"):
        run("lower(n) == 'x'", n=5)


# Look-alikes (adversarial review item 14): only ASCII A-Z fold; every other code
# point must match exactly, so a twin of a payee or domain is a different value.
LOOKALIKES = [
    pytest.param("\u212araken-ltd", "kraken-ltd", id="kelvin-sign"),
    pytest.param("\u017fmith-co", "smith-co", id="long-s"),
    pytest.param("\ufb01bernet", "fibernet", id="fi-ligature"),
    pytest.param("stra\u00dfe", "strasse", id="sharp-s"),
    pytest.param("\u0430cme-supplies", "acme-supplies", id="cyrillic-a"),
    pytest.param("p\u0430ypal", "paypal", id="cyrillic-a-inside"),
    pytest.param("\u03bfracle", "oracle", id="greek-omicron"),
    pytest.param("\uff41\uff43\uff4d\uff45", "acme", id="fullwidth"),
    pytest.param("\uff21\uff23\uff2d\uff25", "acme", id="fullwidth-upper"),
]


@pytest.mark.parametrize(("twin", "ascii"), LOOKALIKES)
def test_mentions_treats_lookalikes_as_different_values(twin: str, ascii: str) -> None:
    assert mentions(f"Pay {twin} today", ascii) is False
    assert mentions(f"Pay {ascii} today", twin) is False
    assert mentions(f"Pay {twin} today", ascii.upper()) is False
    assert mentions(f"Pay {twin} today", twin) is True


@pytest.mark.parametrize(("twin", "ascii"), LOOKALIKES)
def test_domain_helpers_treat_lookalikes_as_different_values(twin: str, ascii: str) -> None:
    host, real = f"{twin}.com", f"{ascii}.com"
    assert is_subdomain(host, real) is False
    assert is_subdomain(f"pay.{host}", real) is False
    assert is_subdomain(real, host) is False
    assert is_subdomain(host, host) is True
    for value in (f"bob@{host}", f"https://{host}/invoice", f"https://u@{host}:443/x", host):
        assert domain(value) == host, value
        assert domain(value) != real
    assert domains(f"mail bob@{host} or visit https://{host}/x or {host}") == [host]


def test_domain_helpers_fold_only_ascii_letters() -> None:
    assert domain("bob@\u212aRAKEN.COM") == "\u212araken.com"
    assert domain("https://P\u0430YPAL.com/login") == "p\u0430ypal.com"
    assert domains("https://\u212aRAKEN.com/x") == ["\u212araken.com"]
    assert is_subdomain("Pay.Kraken.COM.", "kraken.com") is True
    assert is_subdomain("\u212a\u212a.com", "kk.com") is False
    assert domain("https://[::1]:80/x") == "::1"


def test_mentions_still_ignores_ascii_case_and_whitespace() -> None:
    assert mentions("Pay ACME-Supplies now", "acme-supplies") is True
    assert mentions("pay acme-supplies", "ACME-SUPPLIES") is True
    assert mentions("pay ACME\u00a0 \t Supplies", "acme supplies") is True
    assert mentions("\u00c9COLE", "\u00e9cole") is False  # non-ASCII case is exact


def test_mentions_does_not_stop_at_combining_marks_or_invisible_characters() -> None:
    assert mentions("pay acme\u0301 now", "acme") is False
    assert mentions("pay acme\u200dx now", "acme") is False
    assert mentions("pay \u200bacme now", "acme") is False
    assert mentions("pay acme\u0301 now", "acme\u0301") is True


def test_lower_is_a_unicode_mapping_not_a_lookalike_check() -> None:
    # Documented: lower() collapses look-alikes, which is why mentions() does not use it.
    assert lower("\u212a") == "k"
    assert lower("\u212araken") == lower("KRAKEN")


@given(st.text())
def test_every_string_with_a_non_space_character_mentions_itself(value: str) -> None:
    assert mentions(value, value) is bool(value.strip())
    # Spaces around it keep it a whole token, whatever its first and last characters.
    assert mentions(f"pay {value} now", value) is bool(value.strip())


@given(st.text(), st.text())
def test_mentions_never_finds_what_is_not_an_ascii_folded_substring(text: str, value: str) -> None:
    table = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
    needle = " ".join(value.translate(table).split())
    if needle and needle not in " ".join(text.translate(table).split()):
        assert mentions(text, value) is False
