"""Value provenance: did a value come from untrusted or sensitive tool output in this trace?

A bundle marks tools ``untrusted_output`` (their results may carry injected
instructions: a web page, an inbound e-mail) or ``sensitive_output`` (their
results carry the user's secrets: a profile, a password vault). When such a
tool's result is recorded, the gate extracts *candidate values* from it, keeps
their keyed fingerprints per trace (:mod:`clearance._internal.gate.provenance`),
and two helpers ask about them in ``when``:

* ``from_untrusted(value)``: did this value (a string or a number), or a
  candidate value found inside it, come from an untrusted output of this trace?
* ``carries_sensitive(text)``: does this text (or number) carry a value from a
  sensitive output of this trace?

This module is the pure part: extraction, normalization, fingerprints and the
per-decision view (:class:`Provenance`) the engine binds the helpers to.

Candidate values (exactly)
--------------------------

A result is walked as JSON: the values of objects (never their keys), the items
of arrays, and each leaf. ``bytes`` are read as UTF-8 (bad bytes replaced);
any other object by its ``str()``, which is what a prompt would show of it; a
container already being walked is skipped (no cycles). A number leaf counts
when it is an integer (or an integral float) of at least 6 digits: its digits.
From every string (a string leaf, or the helper's argument) come:

1. the whole string, if it has at least 4 characters;
2. e-mail addresses (:func:`~clearance._internal.policy.functions.emails`);
3. http(s) URLs (:func:`~clearance._internal.policy.functions.urls`);
4. for **untrusted** provenance only, domains
   (:func:`~clearance._internal.policy.functions.domains`: URL hosts, e-mail
   domains, bare names). A domain is where an injected instruction points
   (``anyone at attacker.example``); it is never a secret, and counting the
   domain of the user's own address as sensitive would flag every text that
   names ``gmail.com``;
5. IBANs: two letters, two digits and 11 to 30 letters or digits, spaces
   allowed, whose ISO 13616 check (mod 97) holds; where a longer run was
   matched, every prefix of 15 characters or more that passes the check;
6. card-like numbers: in a run of ASCII digit groups joined by single spaces
   or dashes (``4111 1111 1111 1111``, ``4111-1111-1111-1111``), every
   sequence of adjacent groups holding 13 to 19 digits in all, as digits only;
7. digit runs: every group of at least 6 ASCII digits, as digits only (also
   inside a word: ``K12345678`` gives ``12345678``);
8. quoted strings of at least 8 characters between ``"…"``, ``'…'`` (not an
   apostrophe inside a word), ``“…”``, ``«…»`` or backticks;
9. tokens: white-space-separated words with surrounding brackets, quotes and
   sentence punctuation removed, of at least 8 characters, that are not made of
   letters only (``X1234567``, ``acme-payout-7``, ``bob@x.io``). A plain word
   never counts: every text shares long words with every web page.

Normalization: text is compared with runs of white space as one space,
trimmed, and **only the ASCII letters A-Z case-folded** (the look-alike rule of
:mod:`~clearance._internal.policy.functions`: a Cyrillic ``а`` or a KELVIN SIGN
is never its ASCII twin); numbers (6-7) are digits only; an IBAN drops its
spaces. A helper's argument is a string, an int or a double (CEL reads every
JSON number as a double; an integral one counts like an int), never a bool, a
list or a map: anything else fails the rule, and a failing rule denies.

Fingerprints: ``HMAC-SHA256(trace_key, candidate)``, first 16 bytes, hex. The
trace key is ``HMAC-SHA256(gate_key, "clearance/v1 provenance" ‖ 0x00 ‖
salt)``, with a random 16-byte salt per trace and the gate's provenance key
(derived from the home's log key, so a reader of the ledger who lacks that key
cannot test guesses such as a 9-digit passport number). A gate wired without a
provenance key uses the empty key: the fingerprints are then only salted, and
anyone holding the ledger can test guesses.

Bounds: each trace keeps at most ``limits.provenance_values`` fingerprints per
origin (default 512), the first ones admitted. Beyond that the origin is
*full*, and for a full origin a helper answers true for every argument that
has a candidate: a value the gate could not record may have come from there,
so a full trace fails closed.

Limits, plainly: only values that reappear as a candidate are recognized.
Paraphrase, translation, re-encoding (base64, hex, URL-encoding, ROT13), split
or reordered digits (``4111 1111`` then ``1111 1111`` in two messages, or
``X-123-4567``), arithmetic on numbers, names and free text that are neither
tokens nor quoted (``221B Baker Street``), and look-alike characters all pass
unnoticed. Provenance is evidence for a policy, not a data-loss-prevention
system.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, NoReturn

from clearance._internal.canonical import canonical_json
from clearance._internal.policy.functions import domains, emails, urls

__all__ = [
    "EMPTY",
    "ORIGINS",
    "Origin",
    "Provenance",
    "ProvenanceUnavailable",
    "candidates",
    "check_value",
    "fingerprint",
    "key_check",
    "output_candidates",
    "trace_key",
    "view_of",
]

Origin = Literal["untrusted", "sensitive"]
ORIGINS: Final[tuple[Origin, ...]] = ("untrusted", "sensitive")
"""The two kinds of tool output a trace keeps fingerprints of, in ledger order."""

FINGERPRINT_BYTES: Final = 16
_KEY_LABEL: Final = b"clearance/v1 provenance\x00"
_CHECK_LABEL: Final = b"clearance/v1 provenance check"
_MIN_WHOLE: Final = 4
_MIN_TOKEN: Final = 8
_MIN_DIGITS: Final = 6
_CARD_DIGITS: Final = (13, 19)
_IBAN_LENGTHS: Final = (15, 34)

_ASCII_LOWER: Final = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_SPACES: Final = re.compile(r"\s+")
_DIGIT_RUN: Final = re.compile(r"[0-9]+(?:[ -][0-9]+)*")
_DIGIT_GROUP: Final = re.compile(r"[0-9]+")
_IBAN: Final = re.compile(
    r"(?<![A-Za-z0-9])[A-Za-z]{2}[0-9]{2}(?: ?[A-Za-z0-9]){11,30}(?![A-Za-z0-9])"
)
_QUOTED: Final = re.compile(
    r"\"([^\"\n]{8,})\"|“([^”\n]{8,})”|«([^»\n]{8,})»|`([^`\n]{8,})`|(?<!\w)'([^'\n]{8,})'(?!\w)"
)
_TRIM: Final = "\"'`()[]{}<>.,;:!?«»“”‘’"


class ProvenanceUnavailable(Exception):
    """The trace's fingerprints cannot be read here (a replay without the home's key).

    Raised by the helpers, so the rule that called them fails (and denies); never
    a silent "no".
    """


def _text(value: str) -> str:
    """White space collapsed and trimmed, only A-Z case-folded (the look-alike rule)."""
    return _SPACES.sub(" ", value).strip().translate(_ASCII_LOWER)


def _iban_ok(compact: str) -> bool:
    """The ISO 13616 mod-97 check of an IBAN without spaces (letters A-Z count 10-35)."""
    rearranged = compact[4:] + compact[:4]
    try:
        return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1
    except ValueError:  # pragma: no cover - the pattern admits ASCII letters and digits only
        return False


def _ibans(source: str) -> Iterator[str]:
    for match in _IBAN.finditer(source):
        compact = match.group(0).replace(" ", "").upper()
        low, high = _IBAN_LENGTHS
        for end in range(min(len(compact), high), low - 1, -1):
            if _iban_ok(compact[:end]):
                yield compact[:end].translate(_ASCII_LOWER)


def _digits(source: str) -> Iterator[str]:
    """Card-like sequences of digit groups (13-19 digits), then digit runs of 6 or more."""
    low, high = _CARD_DIGITS
    for run in _DIGIT_RUN.finditer(source):
        groups = _DIGIT_GROUP.findall(run.group(0))
        for start in range(len(groups)):
            total = 0
            for end in range(start, len(groups)):
                total += len(groups[end])
                if total > high:
                    break
                if total >= low:
                    yield "".join(groups[start : end + 1])
        for group in groups:
            if len(group) >= _MIN_DIGITS:
                yield group


def _quoted(source: str) -> Iterator[str]:
    for match in _QUOTED.finditer(source):
        inner = next(group for group in match.groups() if group is not None)
        text = _text(inner)
        if len(text) >= _MIN_TOKEN:
            yield text


def _tokens(source: str) -> Iterator[str]:
    for word in source.split():
        token = word.strip(_TRIM)
        if len(token) >= _MIN_TOKEN and not token.isalpha():
            yield token.translate(_ASCII_LOWER)


def _string_candidates(source: str, origin: Origin) -> Iterator[str]:
    whole = _text(source)
    if len(whole) >= _MIN_WHOLE:
        yield whole
    for found in emails(source):
        yield found.translate(_ASCII_LOWER)
    for found in urls(source):
        yield found.translate(_ASCII_LOWER)
    if origin == "untrusted":
        yield from domains(source)
    yield from _ibans(source)
    yield from _digits(source)
    yield from _quoted(source)
    yield from _tokens(source)


def _number_candidate(value: int | float) -> str | None:
    if isinstance(value, float) and not value.is_integer():
        return None  # also NaN and the infinities
    digits = str(abs(int(value)))
    return digits if len(digits) >= _MIN_DIGITS else None


def check_value(name: str, value: object) -> str | int | float:
    """``value`` when a helper may ask about it (a string, an int or a double), else TypeError."""
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        _refuse(name, value)
    return value


def _refuse(name: str, value: object) -> NoReturn:
    kind = type(value)
    what = {bool: "bool", list: "list", dict: "map", type(None): "null"}.get(kind, kind.__name__)
    raise TypeError(f"{name}() expects a string or a number, got {what}")


def candidates(value: str | int | float, origin: Origin) -> list[str]:
    """The normalized candidate values of one helper argument, first occurrence first."""
    if isinstance(value, str):
        return list(dict.fromkeys(_string_candidates(value, origin)))
    found = _number_candidate(value)
    return [] if found is None else [found]


def output_candidates(result: Any, origin: Origin) -> list[str]:
    """The normalized candidate values of a tool's result, in walk order, without duplicates."""
    found: dict[str, None] = {}
    walking: set[int] = set()
    stack: list[Any] = [result]
    while stack:
        item = stack.pop()
        if isinstance(item, bool) or item is None:
            continue
        if isinstance(item, str):
            found.update(dict.fromkeys(_string_candidates(item, origin)))
        elif isinstance(item, int | float):
            number = _number_candidate(item)
            if number is not None:
                found[number] = None
        elif isinstance(item, bytes | bytearray | memoryview):
            found.update(
                dict.fromkeys(_string_candidates(bytes(item).decode("utf-8", "replace"), origin))
            )
        elif isinstance(item, Mapping | list | tuple | set | frozenset):
            if id(item) in walking:
                continue
            walking.add(id(item))
            children = list(item.values() if isinstance(item, Mapping) else item)
            stack.extend(reversed(children))
        else:
            found.update(dict.fromkeys(_string_candidates(str(item), origin)))
    return list(found)


def trace_key(gate_key: bytes | None, salt: bytes) -> bytes:
    """The key a trace's fingerprints are made with (see the module docstring)."""
    return hmac.new(gate_key or b"", _KEY_LABEL + salt, hashlib.sha256).digest()


def key_check(key: bytes) -> str:
    """A short value that tells whether a trace key is the one its entries were made with."""
    return hmac.new(key, _CHECK_LABEL, hashlib.sha256).hexdigest()[:16]


def fingerprint(key: bytes, candidate: str) -> str:
    """The fingerprint of one normalized candidate under a trace key."""
    digest = hmac.new(key, candidate.encode("utf-8"), hashlib.sha256).digest()
    return digest[:FINGERPRINT_BYTES].hex()


@dataclass(frozen=True)
class Provenance:
    """The fingerprints one decision sees: the trace's sets as of its ``provenance_index``.

    Invariant: a helper's answer is a pure function of this view and its argument,
    so a live decision and its replay from the ledger (which rebuilds the view
    from the same entry) answer alike. ``redactions`` is for replay only: a
    sensitive argument the ledger holds as a salted digest cannot be read again,
    so the gate logged, next to the digest, what the two helpers answered for the
    real value; replay answers the same for exactly those logged objects (keyed by
    their canonical JSON), and fails the rule for any other map, as live does.
    """

    key: bytes | None = field(default=None, repr=False)  # a secret: never in a repr or a log
    """The trace key; None while the trace has no fingerprints (or they are unavailable)."""
    untrusted: frozenset[str] = field(default=frozenset(), repr=False)
    sensitive: frozenset[str] = field(default=frozenset(), repr=False)
    full: frozenset[Origin] = frozenset()
    """Origins that reached the bound: every argument with a candidate counts as theirs."""
    unavailable: str | None = None
    """Why the fingerprints cannot be read (the helpers then fail the rule), or None."""
    redactions: Mapping[str, Mapping[str, bool | None]] = field(default_factory=dict, repr=False)

    @property
    def empty(self) -> bool:
        """No fingerprints and nothing full: every helper answers false without hashing."""
        return (
            self.unavailable is None and not self.untrusted and not self.sensitive and not self.full
        )

    def fingerprints(self, origin: Origin) -> frozenset[str]:
        """The fingerprints kept for ``origin``."""
        return self.untrusted if origin == "untrusted" else self.sensitive

    def holds(self, origin: Origin, value: object, name: str = "provenance") -> bool:
        """Whether ``value`` or a candidate inside it came from ``origin`` output (see module)."""
        if isinstance(value, Mapping) and self.redactions:
            return self._redacted(origin, value, name)
        checked = check_value(name, value)
        if self.unavailable is not None:
            raise ProvenanceUnavailable(self.unavailable)
        kept = self.fingerprints(origin)
        if origin not in self.full and not kept:
            return False
        found = candidates(checked, origin)
        if not found:
            return False
        if origin in self.full:
            return True
        key = self.key
        if key is None:  # pragma: no cover - a view with fingerprints always has its key
            raise ProvenanceUnavailable("the trace's fingerprints have no key")
        return any(fingerprint(key, candidate) in kept for candidate in found)

    def _redacted(self, origin: Origin, value: Mapping[str, Any], name: str) -> bool:
        try:
            evidence = self.redactions.get(canonical_json(dict(value)).decode("utf-8"))
        except Exception:  # not JSON: not one of the logged objects
            evidence = None
        if evidence is None:
            _refuse(name, value)  # any other map is not a helper argument, live or replayed
        answer = evidence.get(origin)
        if answer is None:
            raise TypeError(f"{name}() expects a string or a number (the redacted value was not)")
        return answer

    def from_untrusted(self, value: object) -> bool:
        """The ``from_untrusted(value)`` helper bound to this view."""
        return self.holds("untrusted", value, "from_untrusted")

    def carries_sensitive(self, value: object) -> bool:
        """The ``carries_sensitive(text)`` helper bound to this view."""
        return self.holds("sensitive", value, "carries_sensitive")

    def helpers(self) -> dict[str, Callable[[object], bool]]:
        """The helpers, by the names conditions call them with, bound to this view."""
        return {"from_untrusted": self.from_untrusted, "carries_sensitive": self.carries_sensitive}

    def evidence(self, value: Any) -> dict[str, bool | None] | None:
        """What the helpers answer for ``value``, logged beside its redacted digest.

        None when nothing needs logging: the view is empty and ``value`` is a string
        or a number, so both helpers answer false, as replay with the same empty view
        does. ``None`` for an origin means the helper fails for this value (it is not
        a string or a number, or the fingerprints are unavailable).
        """
        plain = type(value) in (str, int, float)
        if plain and self.empty:
            return None
        answers: dict[str, bool | None] = {}
        for origin in ORIGINS:
            try:
                answers[origin] = self.holds(origin, value)
            except (TypeError, ProvenanceUnavailable):
                answers[origin] = None
        return answers


EMPTY: Final = Provenance()
"""The view of a trace with no fingerprints: both helpers answer false."""


def view_of(outputs: Mapping[Origin, Iterable[Any]], *, salt: bytes) -> Provenance:
    """The view of a trace whose marked tools returned ``outputs`` (unbounded, salted only).

    For policy tests (``clearance policy test``): the same extraction and fingerprints
    as the gate, without a ledger.
    """
    key = trace_key(None, salt)
    sets = {
        origin: frozenset(
            fingerprint(key, candidate)
            for output in outputs.get(origin, ())
            for candidate in output_candidates(output, origin)
        )
        for origin in ORIGINS
    }
    return Provenance(key=key, untrusted=sets["untrusted"], sensitive=sets["sensitive"])
