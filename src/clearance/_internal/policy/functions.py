"""Helper functions available in every policy condition (``when``).

The CEL binding ships the CEL core only (no ``lowerAscii``, no URL parsing), so
policies about tool arguments get this small set of pure helpers (DESIGN §3).
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
                           duplicates; trailing sentence punctuation and
                           unbalanced closing brackets are not part of a URL.
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
========================== ================================================

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
side. So ``ob@x.com`` is not mentioned in ``bob@x.com``, ``bob@x.com`` is not
mentioned in ``bob@x.com.evil.org``, ``acme`` is not mentioned in
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
    "domain",
    "domains",
    "emails",
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


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def urls(text: object) -> list[str]:
    """Return the http(s) URLs in ``text``, in order of first appearance, without duplicates."""
    found = (_trim_url(m.group(0)) for m in _URL.finditer(_require_str("urls", "argument", text)))
    return _unique([url for url in found if "://" in url and not url.endswith("://")])


def emails(text: object) -> list[str]:
    """Return the e-mail addresses in ``text``, in order of first appearance, without duplicates."""
    source = _require_str("emails", "argument", text)
    return _unique([m.group(0) for m in _EMAIL.finditer(source)])


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
        host = _url_host(_trim_url(match.group(0)))
        if host:
            found.append((match.start(), host))
    for match in _EMAIL.finditer(source):
        found.append((match.start(1), _ascii_lower(match.group(1))))
    for match in _BARE_DOMAIN.finditer(source):
        found.append((match.start(1), _ascii_lower(match.group(1))))
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
    return _SPACES.sub(" ", _ascii_lower(text)).strip()


def _is_word(char: str) -> bool:
    if char.isalnum() or char == "_":
        return True
    # A combining mark or an invisible format character glued to a match changes
    # the word the reader sees ("acme" + U+0301 is "acmé"), so it continues it.
    category = unicodedata.category(char)
    return category[0] == "M" or category == "Cf"


def _bounded(text: str, start: int, end: int) -> bool:
    """True when ``text[start:end]`` neither continues nor is continued by a word."""
    if start > 0:
        before = text[start - 1]
        if _is_word(before) or (before in _CONNECTORS and start > 1 and _is_word(text[start - 2])):
            return False
    if end < len(text):
        after = text[end]
        if _is_word(after) or (
            after in _CONNECTORS and end + 1 < len(text) and _is_word(text[end + 1])
        ):
            return False
    return True


def _mentions_text(text: str, value: str) -> bool:
    needle = _normalize(value)
    if not needle:
        return False
    haystack = _normalize(text)
    start = haystack.find(needle)
    while start != -1:
        if _bounded(haystack, start, start + len(needle)):
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


HELPERS: Final[Mapping[str, Callable[..., Any]]] = {
    "lower": lower,
    "upper": upper,
    "urls": urls,
    "emails": emails,
    "domains": domains,
    "domain": domain,
    "mentions": mentions,
    "is_subdomain": is_subdomain,
}
"""Every helper by the name conditions call it with."""
