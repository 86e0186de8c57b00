"""``clearance.yaml`` settings and mandates (clearance._internal.home): every key, good and bad."""

from __future__ import annotations

import math
from typing import Any

import pytest

from clearance._internal.home import DEFAULT_CHECKPOINT_GRACE, parse_mandate, parse_settings
from clearance.errors import InputError

WHERE = "clearance.yaml"
MINIMAL = {"origin": "example.com/log", "issuer": "gate", "audience": "local"}
MAX_TEXT = 16 * 1024  # the documented longest mandate text, in code points


def settings(**overrides: Any) -> dict[str, Any]:
    return {**MINIMAL, **overrides}


def refused(raw: object, *needles: str) -> None:
    """``raw`` is refused with an InputError naming the file and each needle."""
    with pytest.raises(InputError) as caught:
        parse_settings(raw, WHERE)
    message = str(caught.value)
    assert message.startswith(WHERE + ":"), message
    for needle in needles:
        assert needle in message, message


# --- the whole mapping --------------------------------------------------------------


def test_minimal_settings_take_the_defaults() -> None:
    parsed = parse_settings(dict(MINIMAL), WHERE)
    assert parsed.origin == "example.com/log"
    assert parsed.issuer == "gate"
    assert parsed.audience == "local"
    assert parsed.durability == "durable"
    assert parsed.grant_lifetime == 30
    assert parsed.default_mandate == {"text": "", "bounds": {}}
    assert parsed.require_trace is False
    assert parsed.witness_dirs == ()
    assert parsed.checkpoint_grace == DEFAULT_CHECKPOINT_GRACE == 300


def test_every_setting_at_once_round_trips_through_to_json() -> None:
    raw = settings(
        durability="relaxed",
        grant_lifetime=45,
        default_mandate={"text": "read only", "bounds": {"spend_cap": 0}},
        require_trace=True,
        witness_dirs=["/mnt/w1", "/mnt/w2"],
        checkpoint_grace=600,
    )
    parsed = parse_settings(raw, WHERE)
    assert parsed.durability == "relaxed"
    assert parsed.grant_lifetime == 45
    assert parsed.default_mandate == {"text": "read only", "bounds": {"spend_cap": 0}}
    assert parsed.require_trace is True
    assert parsed.witness_dirs == ("/mnt/w1", "/mnt/w2")
    assert parsed.checkpoint_grace == 600
    assert parse_settings(parsed.to_json(), WHERE) == parsed
    assert parse_settings(parse_settings(dict(MINIMAL), WHERE).to_json(), WHERE) == parse_settings(
        dict(MINIMAL), WHERE
    )


@pytest.mark.parametrize("raw", [None, [], "origin: x", 3, [("origin", "x")]])
def test_settings_must_be_a_mapping(raw: object) -> None:
    refused(raw, "expected a mapping")


def test_unknown_settings_are_refused_not_ignored() -> None:
    # A typo ("grant_lifetme") must not silently fall back to a default.
    refused(settings(grant_lifetme=10), "unknown settings", "grant_lifetme")


# --- origin, issuer, audience -------------------------------------------------------


@pytest.mark.parametrize("key", ["origin", "issuer", "audience"])
@pytest.mark.parametrize("value", [None, "", 7, ["x"], True])
def test_identity_strings_are_required_and_non_empty(key: str, value: object) -> None:
    refused(settings(**{key: value}), f"'{key}'")


@pytest.mark.parametrize("key", ["origin", "issuer", "audience"])
def test_identity_strings_may_not_be_missing(key: str) -> None:
    raw = dict(MINIMAL)
    del raw[key]
    refused(raw, f"'{key}'")


@pytest.mark.parametrize("origin", ["example.com log", "example.com/log\n", "a\tb", "a+b"])
def test_origin_has_no_spaces_or_plus(origin: str) -> None:
    # The origin is the first line of a checkpoint and the key name of a C2SP note
    # signature, where a space or '+' would change how the line is read.
    refused(settings(origin=origin), "'origin'")


def test_issuer_and_audience_may_hold_spaces() -> None:
    parsed = parse_settings(settings(issuer="the gate", audience="tool service"), WHERE)
    assert (parsed.issuer, parsed.audience) == ("the gate", "tool service")


# --- durability ---------------------------------------------------------------------


@pytest.mark.parametrize("value", ["durable", "relaxed"])
def test_durability_good(value: str) -> None:
    assert parse_settings(settings(durability=value), WHERE).durability == value


@pytest.mark.parametrize("value", ["fast", "DURABLE", "", None, 1, True, ["durable"]])
def test_durability_bad(value: object) -> None:
    refused(settings(durability=value), "'durability'")


# --- grant_lifetime -----------------------------------------------------------------


@pytest.mark.parametrize("value", [1, 30, 60])
def test_grant_lifetime_good(value: int) -> None:
    assert parse_settings(settings(grant_lifetime=value), WHERE).grant_lifetime == value


@pytest.mark.parametrize("value", [0, -1, 61, 3600, 30.0, 1.5, "30", True, False, None])
def test_grant_lifetime_bad(value: object) -> None:
    refused(settings(grant_lifetime=value), "'grant_lifetime'")


# --- default_mandate ----------------------------------------------------------------


def test_default_mandate_good() -> None:
    mandate = {"text": "no payments", "bounds": {"expires_at": "2026-12-31T00:00:00Z"}}
    assert parse_settings(settings(default_mandate=mandate), WHERE).default_mandate == mandate


def test_default_mandate_null_is_the_narrowest() -> None:
    parsed = parse_settings(settings(default_mandate=None), WHERE)
    assert parsed.default_mandate == {"text": "", "bounds": {}}


@pytest.mark.parametrize(
    "value",
    [
        "pay invoices",
        ["text"],
        {"txt": "typo"},
        {"text": 5},
        {"bounds": [1, 2]},
        {"bounds": {"expires_at": "soon"}},
    ],
)
def test_default_mandate_bad(value: object) -> None:
    refused(settings(default_mandate=value), "default_mandate")


# --- require_trace ------------------------------------------------------------------


@pytest.mark.parametrize("value", [True, False])
def test_require_trace_good(value: bool) -> None:
    assert parse_settings(settings(require_trace=value), WHERE).require_trace is value


@pytest.mark.parametrize("value", ["true", "yes", 1, 0, None])
def test_require_trace_bad(value: object) -> None:
    # Only a YAML boolean: "yes" or 1 meaning true would be a guess.
    refused(settings(require_trace=value), "'require_trace'")


# --- witness_dirs -------------------------------------------------------------------


@pytest.mark.parametrize("value", [[], ["/w"], ["/w1", "relative/w2"]])
def test_witness_dirs_good(value: list[str]) -> None:
    assert parse_settings(settings(witness_dirs=value), WHERE).witness_dirs == tuple(value)


@pytest.mark.parametrize("value", ["/w", [""], [1], ["/w", None], {"/w": True}, None])
def test_witness_dirs_bad(value: object) -> None:
    refused(settings(witness_dirs=value), "'witness_dirs'")


# --- checkpoint_grace ---------------------------------------------------------------


@pytest.mark.parametrize("value", [1, 300, 86_400])
def test_checkpoint_grace_good(value: int) -> None:
    assert parse_settings(settings(checkpoint_grace=value), WHERE).checkpoint_grace == value


@pytest.mark.parametrize("value", [0, -5, 86_401, 300.0, "300", True, None])
def test_checkpoint_grace_bad(value: object) -> None:
    refused(settings(checkpoint_grace=value), "'checkpoint_grace'")


# --- parse_mandate ------------------------------------------------------------------

MANDATE_WHERE = "trace t-1: mandate"


def mandate_refused(raw: object, needle: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_mandate(raw, MANDATE_WHERE)
    assert str(caught.value).startswith(MANDATE_WHERE + ":")
    assert needle in str(caught.value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, {"text": "", "bounds": {}}),
        ({}, {"text": "", "bounds": {}}),
        ({"text": "pay March invoices"}, {"text": "pay March invoices", "bounds": {}}),
        ({"bounds": None}, {"text": "", "bounds": {}}),
        (
            {"text": "t", "bounds": {"spend_cap": 600, "vendors": ["acme"], "x": {"y": None}}},
            {"text": "t", "bounds": {"spend_cap": 600, "vendors": ["acme"], "x": {"y": None}}},
        ),
        (
            {"bounds": {"expires_at": "2026-11-28T10:00:00.000000Z"}},
            {"text": "", "bounds": {"expires_at": "2026-11-28T10:00:00.000000Z"}},
        ),
    ],
)
def test_mandate_good(raw: object, expected: dict[str, Any]) -> None:
    assert parse_mandate(raw, MANDATE_WHERE) == expected


def test_mandate_text_limit_is_in_code_points() -> None:
    at_limit = "é" * MAX_TEXT  # two UTF-8 bytes each; the limit counts characters
    assert parse_mandate({"text": at_limit}, MANDATE_WHERE)["text"] == at_limit
    mandate_refused({"text": "é" * (MAX_TEXT + 1)}, "'text'")


def test_mandate_bounds_are_copied() -> None:
    bounds = {"spend_cap": 1}
    parsed = parse_mandate({"bounds": bounds}, MANDATE_WHERE)
    bounds["spend_cap"] = 2
    assert parsed["bounds"] == {"spend_cap": 1}


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ("pay invoices", "expected a mapping"),
        (["text"], "expected a mapping"),
        ({"text": "t", "bound": {}}, "unknown keys"),
        ({"text": None}, "'text'"),
        ({"text": ["a"]}, "'text'"),
        ({"bounds": "600"}, "'bounds' must be a mapping"),
        ({"bounds": [600]}, "'bounds' must be a mapping"),
        ({"bounds": {"cap": math.nan}}, "'bounds' must be JSON"),
        ({"bounds": {"cap": b"bytes"}}, "'bounds' must be JSON"),
        ({"bounds": {"cap": 2**60}}, "'bounds' must be JSON"),
        ({"bounds": {"expires_at": "tomorrow"}}, "'bounds.expires_at'"),
        ({"bounds": {"expires_at": "2026-11-28T10:00:00"}}, "'bounds.expires_at'"),
    ],
)
def test_mandate_bad(raw: object, needle: str) -> None:
    mandate_refused(raw, needle)
