"""canonical_json must equal rfc8785.dumps byte for byte (RFC 8785), fast path or not."""

from __future__ import annotations

import json
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from clearance._internal.canonical import canonical_json, json_digest, sha256_digest
from clearance.errors import InputError

SAFE = 2**53 - 1
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-SAFE, max_value=SAFE)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=25,
)
ascii_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-SAFE, max_value=SAFE)
    | st.text(alphabet=st.characters(max_codepoint=0x10FFFF, exclude_categories=["Cs"])),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(alphabet=st.characters(max_codepoint=127), max_size=8), children)
    ),
    max_leaves=25,
)


@settings(max_examples=300)
@given(json_values)
def test_equals_rfc8785_for_any_json(value: Any) -> None:
    try:
        expected = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError:
        with pytest.raises(InputError):
            canonical_json(value)
        return
    assert canonical_json(value) == expected


@settings(max_examples=300)
@given(ascii_values)
def test_fast_path_equals_rfc8785(value: Any) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


@settings(max_examples=200)
@given(json_values)
def test_reading_back_canonical_json_gives_the_same_bytes(value: Any) -> None:
    try:
        first = canonical_json(value)
    except InputError:
        return
    assert canonical_json(json.loads(first)) == first


@pytest.mark.parametrize(
    "value",
    [
        {"control": "\x00\x1f\x7f\u2028", "quote": '"\\'},
        {"é": 1, "e": 2, "\U0001f600": 3, "\uffff": 4},  # UTF-16 key order
        [1.0, 1e21, 1e-7, 0.1, -0.0, 2.0**60],
    ],
)
def test_known_tricky_values(value: Any) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), 2**53 + 1, {1: "x"}, "\ud800", object()]
)
def test_values_json_cannot_carry_are_input_errors(value: Any) -> None:
    with pytest.raises(InputError):
        canonical_json(value)


def test_large_integers_that_are_jcs_doubles_round_trip() -> None:
    text = canonical_json({"a": 1e16})
    assert text == b'{"a":10000000000000000}'
    assert canonical_json(json.loads(text)) == text


def test_digests() -> None:
    assert sha256_digest(b"") == (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert json_digest({}) == sha256_digest(b"{}")


def test_every_code_point_is_escaped_as_rfc8785_escapes_it() -> None:
    # The fast path's encoder (orjson) must escape strings exactly as JCS does
    # (RFC 8785 §3.2.2.2): all of the BMP outside the surrogates, and the astral
    # planes' first and last code points, as keys' values and inside arrays.
    bmp = [chr(c) for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF]
    astral = [chr(c) for c in (0x10000, 0x1F600, 0xE0001, 0x10FFFF)]
    text = "".join(bmp + astral)
    value = {"s": text, "chunks": [text[i : i + 64] for i in range(0, len(text), 4096)]}
    assert canonical_json(value) == rfc8785.dumps(value)
