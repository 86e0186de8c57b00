"""Limits: one typed, frozen object; read from clearance.yaml with messages naming the key."""

from __future__ import annotations

import math
from dataclasses import FrozenInstanceError, replace
from typing import Any

import pytest

from clearance._internal.grants import jti_store, keys, token
from clearance._internal.home import parse_settings
from clearance._internal.limits import (
    DEFAULT_LIMITS,
    LIMIT_KEYS,
    MAX_GRANT_LIFETIME,
    MAX_LEEWAY,
    Limits,
    parse_limits,
)
from clearance.errors import InputError

WHERE = "/srv/home/clearance.yaml"
BASE = {"origin": "o.example/log", "issuer": "clearance://h", "audience": "local"}


def test_defaults_are_the_documented_values() -> None:
    assert Limits() == DEFAULT_LIMITS
    assert (
        DEFAULT_LIMITS.grant_lifetime,
        DEFAULT_LIMITS.leeway,
        DEFAULT_LIMITS.approval_ttl,
        DEFAULT_LIMITS.key_refresh,
        DEFAULT_LIMITS.policy_reload,
        DEFAULT_LIMITS.checkpoint_interval,
        DEFAULT_LIMITS.mandate_text,
        DEFAULT_LIMITS.provenance_values,
    ) == (30, 5.0, 900.0, 1.0, 1.0, 0.2, 16384, 512)
    assert set(LIMIT_KEYS) == {
        "leeway",
        "approval_ttl",
        "key_refresh",
        "policy_reload",
        "checkpoint_interval",
        "mandate_text",
        "provenance_values",
    }


def test_the_old_module_names_are_the_one_definition() -> None:
    assert token.MAX_LEEWAY == keys.ROTATION_LEEWAY == jti_store.REPLAY_LEEWAY == MAX_LEEWAY
    assert token.MAX_ISSUE_LIFETIME == MAX_GRANT_LIFETIME == 60
    assert DEFAULT_LIMITS.grant_lifetime == token.DEFAULT_LIFETIME


def test_limits_are_frozen() -> None:
    with pytest.raises(FrozenInstanceError):
        DEFAULT_LIMITS.approval_ttl = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("grant_lifetime", 0),
        ("grant_lifetime", MAX_GRANT_LIFETIME + 1),
        ("grant_lifetime", 30.0),
        ("leeway", MAX_LEEWAY + 0.1),
        ("leeway", -1),
        ("approval_ttl", 0),
        ("key_refresh", math.nan),
        ("checkpoint_interval", 0),
        ("mandate_text", -1),
        ("mandate_text", True),
        ("provenance_values", 0),
        ("provenance_values", 512.0),
    ],
)
def test_a_bad_limit_is_a_value_error(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"^{field} must be "):
        replace(DEFAULT_LIMITS, **{field: value})


def test_good_values_are_read() -> None:
    limits = parse_limits(
        {
            "leeway": 2,
            "approval_ttl": 900,
            "key_refresh": 0,
            "policy_reload": 2.5,
            "checkpoint_interval": 0.5,
            "mandate_text": 1024,
            "provenance_values": 64,
        },
        WHERE,
        grant_lifetime=20,
    )
    assert limits == Limits(
        grant_lifetime=20,
        leeway=2,
        approval_ttl=900,
        key_refresh=0,
        policy_reload=2.5,
        checkpoint_interval=0.5,
        mandate_text=1024,
        provenance_values=64,
    )


@pytest.mark.parametrize("raw", [None, {}])
def test_no_limits_means_the_defaults(raw: object) -> None:
    assert parse_limits(raw, WHERE) == DEFAULT_LIMITS


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("leeway", 6, "a number of seconds from 0 to 5"),
        ("leeway", "5", "a number of seconds from 0 to 5"),
        ("approval_ttl", 0, "a number of seconds above 0, at most 2592000 (30 days)"),
        ("approval_ttl", 31 * 86_400, "a number of seconds above 0, at most 2592000 (30 days)"),
        ("approval_ttl", math.inf, "a number of seconds above 0, at most 2592000 (30 days)"),
        ("key_refresh", -0.5, "a number of seconds from 0 to 3600"),
        ("key_refresh", True, "a number of seconds from 0 to 3600"),
        ("policy_reload", 3601, "a number of seconds from 0 to 3600"),
        ("checkpoint_interval", 0, "a number of seconds above 0, at most 60"),
        ("checkpoint_interval", 61, "a number of seconds above 0, at most 60"),
        ("mandate_text", 65537, "a whole number of characters from 0 to 65536"),
        ("mandate_text", 100.0, "a whole number of characters from 0 to 65536"),
        ("provenance_values", 4097, "a whole number of fingerprints from 1 to 4096"),
    ],
)
def test_each_bad_value_names_the_file_and_the_key(key: str, value: Any, words: str) -> None:
    with pytest.raises(InputError) as refused:
        parse_limits({key: value}, WHERE)
    assert str(refused.value) == f"{WHERE}: 'limits.{key}' must be {words}, got {value!r}"


@pytest.mark.parametrize("lifetime", [0, 61, 30.5, "30", False])
def test_the_grant_lifetime_ceiling_cannot_be_raised(lifetime: object) -> None:
    with pytest.raises(InputError) as refused:
        parse_limits({}, WHERE, grant_lifetime=lifetime)
    assert str(refused.value) == f"{WHERE}: 'grant_lifetime' must be whole seconds from 1 to 60"


def test_unknown_keys_are_refused_with_the_allowed_ones() -> None:
    with pytest.raises(InputError) as refused:
        parse_limits({"approval_ttl": 60, "aproval_ttl": 60, "max_rps": 1}, WHERE)
    assert str(refused.value) == (
        f"{WHERE}: unknown limits ['aproval_ttl', 'max_rps']; allowed: "
        "['approval_ttl', 'checkpoint_interval', 'key_refresh', 'leeway', 'mandate_text', "
        "'policy_reload', 'provenance_values']"
    )


def test_grant_lifetime_has_one_place_in_the_file() -> None:
    with pytest.raises(InputError, match="set grant_lifetime at the top level of the file"):
        parse_limits({"grant_lifetime": 10}, WHERE)


@pytest.mark.parametrize("raw", [[], "approval_ttl: 5", 5])
def test_limits_must_be_a_mapping(raw: object) -> None:
    with pytest.raises(InputError) as refused:
        parse_limits(raw, WHERE)
    assert str(refused.value) == f"{WHERE}: 'limits' must be a mapping of limit names to values"


# --- in clearance.yaml ---------------------------------------------------------------------


def test_settings_carry_their_limits() -> None:
    settings = parse_settings(
        {**BASE, "grant_lifetime": 15, "limits": {"approval_ttl": 900, "mandate_text": 64}}, WHERE
    )
    assert settings.limits == Limits(grant_lifetime=15, approval_ttl=900, mandate_text=64)
    assert settings.grant_lifetime == 15


def test_settings_without_limits_keep_the_file_format() -> None:
    settings = parse_settings(dict(BASE), WHERE)
    assert settings.limits == DEFAULT_LIMITS
    assert "limits" not in settings.to_json()
    assert settings.to_json()["grant_lifetime"] == 30


def test_settings_round_trip_only_the_limits_that_differ() -> None:
    raw = {**BASE, "grant_lifetime": 45, "limits": {"approval_ttl": 1800.0, "leeway": 5.0}}
    settings = parse_settings(raw, WHERE)
    document = settings.to_json()
    assert document["grant_lifetime"] == 45
    assert document["limits"] == {"approval_ttl": 1800.0}
    assert parse_settings(document, WHERE) == settings


def test_a_bad_limit_in_settings_names_the_file_and_key() -> None:
    with pytest.raises(InputError) as refused:
        parse_settings({**BASE, "limits": {"leeway": 30}}, WHERE)
    assert str(refused.value) == (
        f"{WHERE}: 'limits.leeway' must be a number of seconds from 0 to 5, got 30"
    )


def test_the_checkpoint_interval_must_be_shorter_than_the_grace() -> None:
    with pytest.raises(InputError) as refused:
        parse_settings(
            {**BASE, "checkpoint_grace": 10, "limits": {"checkpoint_interval": 30}}, WHERE
        )
    assert str(refused.value) == (
        f"{WHERE}: 'limits.checkpoint_interval' (30 s) must be shorter than "
        "'checkpoint_grace' (10 s)"
    )


def test_the_default_mandate_obeys_the_mandate_text_limit() -> None:
    raw = {**BASE, "limits": {"mandate_text": 8}, "default_mandate": {"text": "x" * 9}}
    with pytest.raises(InputError) as refused:
        parse_settings(raw, WHERE)
    assert str(refused.value) == (
        f"{WHERE}: default_mandate: 'text' must be a string of at most 8 characters"
    )
    raw["default_mandate"] = {"text": "x" * 8}
    assert parse_settings(raw, WHERE).default_mandate["text"] == "x" * 8
