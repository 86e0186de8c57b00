"""What a caller of a guarded tool sends besides the JSON body, and how the guard reads it.

The contract (README, "Grant guard"):

* ``Authorization: Clearance <grant>`` — exactly one such header; the scheme name is
  case-insensitive (RFC 9110 §11.1), followed by one space and the compact JWT.
* ``Clearance-Purpose: <purpose>`` — only when the intent has a purpose: its UTF-8
  bytes percent-encoded (RFC 3986 §2.1; ``urllib.parse.quote(purpose, safe="")``), so
  any purpose survives the trip, including leading spaces and non-ASCII text. Absent
  means the intent's purpose is null.
* The body is the intent's ``args`` as a JSON object (any serialization: the digest is
  over RFC 8785), or empty for ``{}``. The intent's ``input`` must be null: a tool
  service has no way to learn it.

:func:`grant_headers` builds the two headers from a grant and the intent it is for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final
from urllib.parse import quote, unquote

from clearance._internal.intent import Intent
from clearance.errors import InputError

SCHEME: Final[str] = "Clearance"
PURPOSE_HEADER: Final[str] = "Clearance-Purpose"


def grant_headers(grant: str, intent: Intent) -> dict[str, str]:
    """The headers that present ``grant`` for ``intent`` to a guarded tool service.

    ``intent`` is the one the grant was issued for (``Authorization.intent``, or
    ``cleared.authorization.intent`` in a ``clearance`` body); send its ``args`` as the
    JSON body. InputError when the intent carries ``input``, which a tool service
    cannot rebuild.
    """
    if not isinstance(grant, str) or not grant or not grant.isascii() or " " in grant:
        raise InputError("grant must be the compact JWT the gateway issued")
    if not isinstance(intent, Intent):
        raise InputError(f"intent must be an Intent, not {type(intent).__name__}")
    if intent.input is not None:
        raise InputError(
            "a guarded tool rebuilds the intent with input null; authorize tool calls without input"
        )
    headers = {"Authorization": f"{SCHEME} {grant}"}
    if intent.purpose is not None:
        headers[PURPOSE_HEADER] = quote(intent.purpose, safe="")
    return headers


class HeaderProblem(Exception):
    """Internal: the request's headers cannot present a grant; the message says why."""


def header_values(headers: Iterable[tuple[str, str]], name: str) -> list[str]:
    """Every value of header ``name`` (case-insensitive) in request order."""
    wanted = name.lower()
    return [value for key, value in headers if key.lower() == wanted]


def as_pairs(
    headers: Mapping[str, str] | Iterable[tuple[str | bytes, str | bytes]],
) -> list[tuple[str, str]]:
    """Headers as ``(name, value)`` pairs, from a mapping or pairs of str or bytes."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    pairs: list[tuple[str, str]] = []
    for name, value in items:
        pairs.append(
            (
                name.decode("latin-1") if isinstance(name, bytes) else str(name),
                value.decode("latin-1") if isinstance(value, bytes) else str(value),
            )
        )
    return pairs


def presented_grant(headers: list[tuple[str, str]]) -> str:
    """The grant of ``Authorization: Clearance <grant>``; HeaderProblem otherwise."""
    values = header_values(headers, "authorization")
    if not values:
        raise HeaderProblem("no grant presented (no Authorization header)")
    if len(values) > 1:
        raise HeaderProblem("several Authorization headers")
    scheme, _, token = values[0].partition(" ")
    if scheme.lower() != SCHEME.lower():
        raise HeaderProblem(f"Authorization scheme {scheme[:20]!r} is not {SCHEME}")
    token = token.strip()
    if not token:
        raise HeaderProblem("empty grant in the Authorization header")
    return token


def presented_purpose(headers: list[tuple[str, str]]) -> str | None:
    """The purpose the ``Clearance-Purpose`` header carries, or None; HeaderProblem if bad."""
    values = header_values(headers, PURPOSE_HEADER)
    if not values:
        return None
    if len(values) > 1:
        raise HeaderProblem(f"several {PURPOSE_HEADER} headers")
    raw = values[0]
    if not raw.isascii():
        raise HeaderProblem(f"{PURPOSE_HEADER} must be percent-encoded UTF-8 (ASCII only)")
    try:
        return unquote(raw, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise HeaderProblem(f"{PURPOSE_HEADER} does not decode as UTF-8") from None
