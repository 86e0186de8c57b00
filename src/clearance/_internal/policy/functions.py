"""Helper functions available in every policy condition (``when``).

The CEL binding ships the CEL core only (no ``lowerAscii``, no URL parsing), so
policies about tool arguments get this small set of pure helpers (docs/design.md §3).
Every helper is deterministic: its result depends on its arguments only, never
on a clock, the locale or the network. Every helper checks its argument types
and raises ``TypeError`` with a clear message otherwise; inside a condition
that error fails the rule, and a failed rule denies (fail-closed rule 3).

CEL treats ``x.f(a)`` as ``f(x, a)``, so each helper can be called as a
function or as a method: ``lower(args.to)`` and ``args.to.lower()`` are the
same call.

========================== ================================================
``lower(s) -> string``     ``s`` lower-cased with the full Unicode case
                           mapping, so look-alikes collapse:
                           ``lower("\\u212a") == "k"`` (KELVIN SIGN). Do not
                           compare ``lower()`` results to decide whether two
                           values are the same; use ``mentions`` or
                           ``is_subdomain``, which fold ASCII only.
``upper(s) -> string``     ``s`` upper-cased (full Unicode case mapping:
                           ``upper("straße") == "STRASSE"``).
``urls(text) -> list``     The ``http://`` and ``https://`` URLs in
                           ``text``, in order of first appearance, without
                           duplicates; where one ends: see "Token
                           boundaries" below.
``emails(text) -> list``   The e-mail addresses in ``text`` (as written), in
                           order of first appearance, without duplicates.
``domains(text) -> list``  Domain names found in ``text``, ASCII letters
                           lower-cased (see below): hosts of URLs, domains
                           of e-mail addresses and bare names such as
                           ``example.com`` (a dotted name whose last label
                           has at least two letters). Extraction is
                           deliberately generous (``notes.txt`` counts):
                           use it to require that every domain is allowed.
``domain(s) -> string``    The domain of one URL, e-mail address or bare
                           domain name, ASCII letters lower-cased; ``""``
                           when ``s`` is none of these.
``mentions(text, value)``  Whether ``value`` (string, int or float) is
                           mentioned in ``text``; see below.
``is_subdomain(d, p)``     Whether domain ``d`` equals ``p`` or lies below it
                           (``a.example.com`` is below ``example.com``;
                           ``badexample.com`` is not). ASCII case and a
                           trailing dot are ignored; an empty ``p`` matches
                           nothing.
``get(m, key, default)``   The value of ``key`` in the map ``m``, or
                           ``default`` when ``m`` has no such key or holds
                           ``null`` there: the idiom for optional values,
                           ``args.get("memo", "")`` instead of ``!has(args.memo)
                           || args.memo == null || ...``. ``m`` must be a map
                           and ``key`` a string, else the rule fails; so
                           ``get(get(args, "card", {}), "number", "")`` reads
                           an optional field of an optional object. With a
                           plain string literal key the engine binds only that
                           entry of ``m`` (see ``cel_source``).
``from_untrusted(v)``      Whether ``v`` (a string or a number), or a
                           candidate value inside it, came from the output
                           of a tool marked ``untrusted_output`` in this
                           trace. See
                           :mod:`~clearance._internal.policy.provenance`.
``carries_sensitive(t)``   Whether ``t`` carries a value from the output of
                           a tool marked ``sensitive_output`` in this trace.
========================== ================================================

The two provenance helpers read the trace's fingerprints, which differ per
decision: the engine binds them to the decision's view
(:class:`~clearance._internal.policy.provenance.Provenance`). The entries of
:data:`HELPERS` for them only fail, so an evaluation that did not bind them
denies rather than answering "no".

CEL's own optional syntax (``args.?memo.orValue("")``) would say the same, but
the binding (common-expression-language 0.10) does not parse it ("unsupported
syntax '.?'"); a test notices when it does.

Token boundaries
----------------

``urls``, ``emails``, ``domains`` and ``mentions`` read prose, where a name is
followed by punctuation, brackets, quotes or the next sentence. Exactly:

* A URL is ``http://`` or ``https://`` (letter case ignored) and every
  character after it up to white space or one of ``< > " ' ` { } | \\ ^``.
  Then, from the end, each of ``. , ; : ! ? ' "`` is dropped, and so is a ``)``
  or ``]`` while the URL holds more of it than of its opening bracket
  (``(see https://a.example/x).`` gives ``https://a.example/x``;
  ``http://b.org/(x)`` keeps its balanced bracket).
* A domain name is two or more labels joined by ``.``: a label is letters and
  digits (any script), ``_`` and ``-``, starting and ending with a letter or
  digit, and the last label is 2 to 63 letters. A bare name may not be
  preceded by a letter, digit, ``_``, ``.``, ``@`` or ``-``, and must end
  where neither a letter, digit, ``_`` or ``-`` nor a ``.`` followed by a
  letter or digit comes next: ``example.com.``, ``example.com,``,
  ``'www.x.com'`` and ``“y.org”!`` give the plain name, and
  ``a.b.com.evil.org`` is one name.
* An e-mail address is a local part (letters, digits, ``_ . % + -``, not
  preceded by a letter, digit, ``_``, ``.``, ``+`` or ``-``) then ``@`` then a
  domain name that ends as above:
  ``"bob@x.com",`` and ``bob@x.com;cc alice@y.org`` give ``bob@x.com`` (and
  ``alice@y.org``).
* Sentence break. A ``.`` followed, with no space, by a word of
  :data:`SENTENCE_OPENERS` (``They``, ``Then``, ``Thanks``...: exactly one capital
  letter then lower-case letters) that ends the run of name characters, ends
  the URL, e-mail address or domain name before that ``.``:
  ``www.our-company.com.They sent`` gives ``www.our-company.com``, and
  ``Visit www.example.com.Then pay`` gives ``www.example.com``, and
  ``https://x.org/pay.Then`` gives ``https://x.org/pay``. What is left of a
  domain name or an e-mail domain must still be a domain name
  (``localhost.Then`` gives nothing). Every opener is a
  common English sentence start that is *not* a top-level domain (a test
  checks them against the IANA root zone list), so a real host never loses a
  label: ``paypal.com.Ru``, ``x.com.Xyz``, ``x.com.It`` and ``a.b.com.Evil.org``
  stay whole. That is deliberate: anyone can register a name under ``com.ru``,
  so reading ``paypal.com.Ru`` as ``paypal.com`` would let a stranger's host
  pass an allowlist.
* Limits of the sentence break, stated plainly: only those words, only that
  capitalization (``THEN`` and ``then`` are labels), only after a name (never
  before one), and one word. A sentence that starts with any other word
  (``It``, ``You``, ``Now`` are TLDs; other languages) stays glued to the
  name, which then reads longer than meant: an allowlist check denies it, it
  never allows more. ``domain(s)`` reads one value, not prose, and has no
  sentence break (``domain("x.com.Then")`` is ``x.com.then``).

Look-alikes are different values. Wherever a helper compares or lower-cases
for comparison (``mentions``, ``is_subdomain``, ``domain``, ``domains``), only
the ASCII letters ``A``-``Z`` are case-folded (to ``a``-``z``); every other code
point must match exactly. There is no Unicode case folding, no ``str.lower()``
and no NFC/NFKC normalization (NFC alone maps KELVIN SIGN U+212A to ``K``). So
``\\u212araken-ltd`` (KELVIN SIGN), ``\\u017fmith-co`` (LONG S), ``\\ufb01bernet``
(fi LIGATURE), ``straße`` (not ``strasse``), ``\\u0430cme`` (CYRILLIC SMALL A),
``\\u03bfracle`` (GREEK SMALL OMICRON) and fullwidth ``\\uff41\\uff43\\uff4d\\uff45``
never match their ASCII twins, and ``is_subdomain("\\u212araken.com",
"kraken.com")`` is false. The price: non-ASCII letters compare case-sensitively
(``É`` is not ``é``), which can only refuse a match, never invent one.

``mentions(text, value)`` answers "did the human's text name this value?", the
question grounding rules ask (``mentions(trace.mandate.text, args.to)``). Both
sides are normalized the same way: ASCII letters are lower-cased (nothing else,
see above), runs of white space (``str.isspace``) compare as one space, and
leading and trailing white space is dropped. It matches whole tokens only: the
match may not continue a word on either side, where a word continues through
letters, digits, ``_``, combining marks (Unicode category M) and invisible
format characters (category Cf, such as ZERO WIDTH JOINER), and through ``.``,
``-``, ``@`` and ``+`` when one of those word characters follows on the far
side, except that a sentence break (see "Token boundaries") ends a match too;
the text's case matters for that rule only. So ``ob@x.com`` is not mentioned
in ``bob@x.com``, ``bob@x.com`` is not mentioned in ``bob@x.com.evil.org``,
``bob@x.com.Evil.org``, ``bob@x.com.Ru`` or ``bob@x.com.THEN`` (but is in
``bob@x.com.They said`` and in ``"bob@x.com",``), ``acme`` is not mentioned in
``acme\\u0301`` (``acmé`` with a combining accent) nor in ``acme\\u200dx``, and
``bob`` is mentioned in ``bob's`` and in ``Bob.``. A number matches a number
written in the text with the same value: ``200`` is mentioned in ``$200``,
``200.00`` and ``200.`` but not in ``2000``, ``200.5``, ``2,000`` or ``200,50``;
``1000`` is mentioned in ``1,000``. Only ASCII digits make numbers (fullwidth
``２００`` is not ``200``). A negative number must be written with its ``-``.
An empty value is mentioned nowhere, so an empty argument can never be
"grounded". A string value with any non-white-space character is always
mentioned in itself.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final
from urllib.parse import urlsplit

__all__ = [
    "HELPERS",
    "PROVENANCE_HELPERS",
    "SENTENCE_OPENERS",
    "domain",
    "domains",
    "emails",
    "get",
    "is_subdomain",
    "lower",
    "mentions",
    "upper",
    "urls",
]

_URL: Final = re.compile(r"\bhttps?://[^\s<>\"'`{}|\\^]+", re.IGNORECASE)
_EMAIL: Final = re.compile(
    r"(?<![\w.+-])[\w.%+-]+@((?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_]{2,63})(?![\w-]|\.\w)"
)
_LABEL: Final = r"[^\W_](?:[\w-]{0,61}[^\W_])?"
_BARE_DOMAIN: Final = re.compile(rf"(?<![\w.@-])((?:{_LABEL}\.)+[^\W\d_]{{2,63}})(?![\w-]|\.\w)")
_WHOLE_DOMAIN: Final = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}")
_SCHEME: Final = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SPACES: Final = re.compile(r"\s+")
_NUMBER: Final = re.compile(
    r"(?<![\w.,])([0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(\.[0-9]+)?(?![\w]|[.,][0-9])"
)
_TRAILING: Final = ".,;:!?'\""
_BRACKETS: Final = {")": "(", "]": "["}
_CONNECTORS: Final = frozenset(".-@+")
_ASCII_LOWER: Final = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_DOMAIN_NAME: Final = re.compile(rf"(?:{_LABEL}\.)+[^\W\d_]{{2,63}}")
_CAPITALIZED: Final = re.compile(r"[A-Z][a-z]+")

SENTENCE_OPENERS: Final[frozenset[str]] = frozenset(
    {
        # Capitalized words that start a sentence and are not top-level domains:
        # a test checks every one against the IANA root zone list. Never add a TLD
        # ("It", "In", "Is", "My", "No", "Now", "Pay", "You", "Best", "Here"...).
        *("The", "They", "Then", "There", "These", "This", "That", "Those", "Their"),
        *("Thanks", "Thank", "Please", "Regards", "Sincerely", "Cheers", "Dear", "Hello"),
        *("We", "He", "She", "Our", "Your", "Its", "His", "Her", "Also", "And", "But", "Or"),
        *("If", "When", "What", "Where", "Which", "Who", "Why", "Once", "After", "Before"),
        *("Note", "Sent", "Send", "See", "Visit", "Reply", "Let", "Just", "Sorry", "Yes"),
        *("For", "From", "With", "Again", "Otherwise", "However", "Meanwhile", "Attached"),
    }
)
"""The words that end a URL, e-mail address or domain name when glued to it by a ``.``.

``www.our-company.com.They sent`` is a missing space, not the host
``www.our-company.com.they``; see the module docstring for the exact rule.
"""


def _ascii_lower(text: str) -> str:
    """``text`` with A-Z mapped to a-z and every other code point unchanged (same length)."""
    return text.translate(_ASCII_LOWER)


def _require_str(name: str, position: str, value: object) -> str:
    if type(value) is not str:
        raise TypeError(f"{name}() expects a string {position}, got {_type_name(value)}")
    return value


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, dict):
        return "map"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    return type(value).__name__


def lower(s: object) -> str:
    """Return ``s`` lower-cased (Unicode full case mapping, locale-independent)."""
    return _require_str("lower", "argument", s).lower()


def upper(s: object) -> str:
    """Return ``s`` upper-cased (Unicode full case mapping, locale-independent)."""
    return _require_str("upper", "argument", s).upper()


def _trim_url(url: str) -> str:
    """Drop trailing punctuation and closing brackets that do not belong to the URL."""
    while url:
        last = url[-1]
        unbalanced = last in _BRACKETS and url.count(last) > url.count(_BRACKETS[last])
        if last in _TRAILING or unbalanced:
            url = url[:-1]
        else:
            break
    return url


def _cut_sentence(token: str) -> str:
    """``token`` without a final ``.`` + sentence opener (see :data:`SENTENCE_OPENERS`).

    The caller passes a token that ends where its run of name characters ends,
    so the opener is a whole word, not the start of a longer label.
    """
    head, dot, last = token.rpartition(".")
    return head if dot and last in SENTENCE_OPENERS else token


def _opens_sentence(text: str, start: int) -> bool:
    """Whether a sentence opener starts at ``start`` and ends the run of name characters."""
    match = _CAPITALIZED.match(text, start)
    if match is None or match.group(0) not in SENTENCE_OPENERS:
        return False
    return not _continues(text, match.end())


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def urls(text: object) -> list[str]:
    """Return the http(s) URLs in ``text``, in order of first appearance, without duplicates."""
    source = _require_str("urls", "argument", text)
    found = (_cut_sentence(_trim_url(m.group(0))) for m in _URL.finditer(source))
    return _unique([url for url in found if "://" in url and not url.endswith("://")])


def emails(text: object) -> list[str]:
    """Return the e-mail addresses in ``text``, in order of first appearance, without duplicates."""
    source = _require_str("emails", "argument", text)
    found = []
    for match in _EMAIL.finditer(source):
        name = _email_domain(match.group(1))
        if name:
            found.append(match.group(0)[: match.start(1) - match.start(0)] + name)
    return _unique(found)


def _email_domain(name: str) -> str:
    """The domain of an e-mail match after the sentence cut, or ``""`` if none is left."""
    cut = _cut_sentence(name)
    return cut if cut == name or _DOMAIN_NAME.fullmatch(cut) else ""


def _url_host(url: str) -> str:
    """The host of ``url``, ASCII-lower-cased, without a trailing dot; ``""`` if none.

    ``SplitResult.hostname`` is not used: it applies ``str.lower()``, which maps
    KELVIN SIGN to ``k`` and would let ``\\u212araken.com`` pass as ``kraken.com``.
    The split below mirrors its parsing (userinfo, IPv6 brackets, port, zone).
    """
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return ""
    hostinfo = netloc.rpartition("@")[2]
    _, bracket, bracketed = hostinfo.partition("[")
    host = bracketed.partition("]")[0] if bracket else hostinfo.partition(":")[0]
    return _ascii_lower(host.partition("%")[0]).rstrip(".")


def domains(text: object) -> list[str]:
    """Return the domains in ``text`` (URL hosts, e-mail domains, bare names), ASCII-lowered."""
    source = _require_str("domains", "argument", text)
    found: list[tuple[int, str]] = []
    for match in _URL.finditer(source):
        host = _url_host(_cut_sentence(_trim_url(match.group(0))))
        if host:
            found.append((match.start(), host))
    for match in _EMAIL.finditer(source):
        name = _email_domain(match.group(1))
        if name:
            found.append((match.start(1), _ascii_lower(name)))
    for match in _BARE_DOMAIN.finditer(source):
        name = _cut_sentence(match.group(1))
        if _DOMAIN_NAME.fullmatch(name):
            found.append((match.start(1), _ascii_lower(name)))
    found.sort(key=lambda item: item[0])
    return _unique([name for _, name in found])


def domain(s: object) -> str:
    """Return the domain of one URL, e-mail address or domain name (ASCII-lowered), else ``""``."""
    value = _require_str("domain", "argument", s).strip()
    if _SCHEME.match(value):
        return _url_host(value)
    if "@" in value:
        value = value.rsplit("@", 1)[1]
        return _ascii_lower(value.rstrip(".")) if _WHOLE_DOMAIN.fullmatch(value.rstrip(".")) else ""
    host = re.split(r"[/:?#]", value, maxsplit=1)[0].rstrip(".")
    if "." in host and _WHOLE_DOMAIN.fullmatch(host):
        return _ascii_lower(host)
    return ""


def is_subdomain(domain: object, parent: object) -> bool:
    """True when ``domain`` equals ``parent`` or lies below it (ASCII case-insensitive)."""
    child = _require_str("is_subdomain", "as first argument", domain).strip().rstrip(".")
    root = _require_str("is_subdomain", "as second argument", parent).strip().rstrip(".")
    child, root = _ascii_lower(child), _ascii_lower(root)
    if not root or not child:
        return False
    return child == root or child.endswith("." + root)


def _normalize(text: str) -> str:
    # ASCII-only folding: casefold(), lower() and NFKC all equate look-alikes
    # ("\u212a" -> "k", "\ufb01" -> "fi"), which let a tainted trace pay a twin payee.
    return _ascii_lower(_collapse(text))


def _collapse(text: str) -> str:
    """``text`` with runs of white space as one space, stripped (case kept)."""
    return _SPACES.sub(" ", text).strip()


def _is_word(char: str) -> bool:
    if char.isalnum() or char == "_":
        return True
    # A combining mark or an invisible format character glued to a match changes
    # the word the reader sees ("acme" + U+0301 is "acmé"), so it continues it.
    category = unicodedata.category(char)
    return category[0] == "M" or category == "Cf"


def _continues(text: str, end: int) -> bool:
    """Whether the run of name characters goes on at ``end`` (a word, or a connector + word)."""
    if end >= len(text):
        return False
    after = text[end]
    return _is_word(after) or (
        after in _CONNECTORS and end + 1 < len(text) and _is_word(text[end + 1])
    )


def _bounded(text: str, cased: str, start: int, end: int) -> bool:
    """True when ``text[start:end]`` neither continues nor is continued by a word.

    ``cased`` is ``text`` before ASCII folding (same length): a ``.`` followed by a
    sentence opener is a sentence break, and openers are recognized by their case.
    """
    if start > 0:
        before = text[start - 1]
        if _is_word(before) or (before in _CONNECTORS and start > 1 and _is_word(text[start - 2])):
            return False
    if _continues(text, end):
        return text[end] == "." and _opens_sentence(cased, end + 1)
    return True


def _mentions_text(text: str, value: str) -> bool:
    needle = _normalize(value)
    if not needle:
        return False
    cased = _collapse(text)
    haystack = _ascii_lower(cased)
    start = haystack.find(needle)
    while start != -1:
        if _bounded(haystack, cased, start, start + len(needle)):
            return True
        start = haystack.find(needle, start + 1)
    return False


def _mentions_number(text: str, value: int | float) -> bool:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return False
    wanted = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    negative = wanted < 0
    for match in _NUMBER.finditer(text):
        signed = match.start() > 0 and text[match.start() - 1] == "-"
        if negative and not signed:
            continue
        try:
            written = Decimal(match.group(1).replace(",", "") + (match.group(2) or ""))
        except InvalidOperation:  # pragma: no cover - the pattern only admits valid numbers
            continue
        if written == abs(wanted):
            return True
    return False


def mentions(text: object, value: object) -> bool:
    """Whether ``value`` is mentioned in ``text`` (see the module docstring for the exact rule)."""
    haystack = _require_str("mentions", "as first argument", text)
    if type(value) is str:
        return _mentions_text(haystack, value)
    if type(value) is int or type(value) is float:
        return _mentions_number(haystack, value)
    raise TypeError(
        f"mentions() expects a string, int or double as second argument, got {_type_name(value)}"
    )


def get(mapping: object, key: object, default: object) -> object:
    """``mapping[key]`` when present and not null, else ``default`` (see the module docstring)."""
    if not isinstance(mapping, Mapping):
        raise TypeError(f"get() expects a map as first argument, got {_type_name(mapping)}")
    if type(key) is not str:
        raise TypeError(f"get() expects a string key as second argument, got {_type_name(key)}")
    value = mapping.get(key)
    return default if value is None else value


def _unbound(name: str) -> Callable[[object], bool]:
    def unbound(value: object) -> bool:
        raise RuntimeError(f"{name}() needs the trace's provenance, which was not bound")

    unbound.__name__ = name
    return unbound


PROVENANCE_HELPERS: Final[frozenset[str]] = frozenset({"from_untrusted", "carries_sensitive"})
"""Helpers the engine binds per decision to the trace's fingerprints."""

HELPERS: Final[Mapping[str, Callable[..., Any]]] = {
    "lower": lower,
    "upper": upper,
    "urls": urls,
    "emails": emails,
    "domains": domains,
    "domain": domain,
    "mentions": mentions,
    "is_subdomain": is_subdomain,
    "get": get,
    **{name: _unbound(name) for name in sorted(PROVENANCE_HELPERS)},
}
"""Every helper by the name conditions call it with."""
