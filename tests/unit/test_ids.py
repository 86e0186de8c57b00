"""Identifiers the gate mints: the intent id pattern, time-ordered, random in their tail."""

from __future__ import annotations

import pytest

from clearance._internal.ids import new_id
from clearance._internal.intent import ID_PATTERN

NOW = 1_795_869_531.25


@pytest.mark.parametrize("prefix", ["r", "t", "a"])
def test_ids_match_the_intent_id_pattern(prefix: str) -> None:
    minted = new_id(prefix, NOW)
    assert ID_PATTERN.fullmatch(minted)
    assert minted.startswith(prefix)


def test_the_first_twelve_hex_digits_are_the_milliseconds_of_now() -> None:
    assert int(new_id("r", NOW)[1:13], 16) == 1_795_869_531_250


def test_ids_sort_by_time_across_milliseconds() -> None:
    earlier, later = new_id("r", NOW), new_id("r", NOW + 0.001)
    assert earlier < later


def test_ids_minted_in_the_same_millisecond_differ() -> None:
    minted = {new_id("r", NOW) for _ in range(2000)}
    assert len(minted) == 2000


@pytest.mark.parametrize(("now", "millis"), [(-5.0, 0), (1e20, 16**12 - 1)])
def test_clocks_outside_the_range_clamp_instead_of_breaking_the_pattern(
    now: float, millis: int
) -> None:
    minted = new_id("t", now)
    assert ID_PATTERN.fullmatch(minted)
    assert int(minted[1:13], 16) == millis
