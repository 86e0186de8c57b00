"""Console sessions end when idle, when too old, at logout, and never come back."""

from __future__ import annotations

import pytest

from clearance._internal.console import sessions
from clearance._internal.console.sessions import SessionBook
from clearance._internal.console.web import safe_next
from clearance._internal.server.settings import parse_server_settings
from clearance.errors import InputError


def test_a_session_ends_after_its_idle_time_and_is_forgotten() -> None:
    book = SessionBook(idle=60, longest=3600)
    opened = book.open("clk_token", now=1000.0)
    assert book.find(opened.session_id, 1059.0) is opened
    assert book.find(opened.session_id, 1118.0) is opened  # each request renews it
    assert book.find(opened.session_id, 1178.5) is None
    assert book.find(opened.session_id, 1179.0) is None  # gone for good
    assert len(book) == 0


def test_an_active_session_still_ends_at_its_longest_life() -> None:
    book = SessionBook(idle=60, longest=300)
    opened = book.open("clk_token", now=0.0)
    for now in range(50, 300, 50):
        assert book.find(opened.session_id, float(now)) is opened
    assert book.find(opened.session_id, 300.5) is None


def test_logout_ends_only_that_session() -> None:
    book = SessionBook(idle=60, longest=300)
    first, second = book.open("a", 0.0), book.open("a", 0.0)
    assert first.session_id != second.session_id
    assert first.csrf != second.csrf
    book.close(first.session_id)
    book.close("never-existed")
    assert book.find(first.session_id, 1.0) is None
    assert book.find(second.session_id, 1.0) is second


def test_csrf_tokens_compare_exactly() -> None:
    opened = SessionBook(idle=60, longest=300).open("a", 0.0)
    assert opened.csrf_matches(opened.csrf)
    assert not opened.csrf_matches(None)
    assert not opened.csrf_matches("")
    assert not opened.csrf_matches(opened.csrf[:-1])
    assert not opened.csrf_matches(opened.csrf + "\udcff")


def test_the_book_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sessions, "MAX_SESSIONS", 3)
    book = SessionBook(idle=60, longest=300)
    made = [book.open(str(i), float(i)) for i in range(5)]
    assert len(book) == 3
    assert book.find(made[0].session_id, 5.0) is None
    assert book.find(made[4].session_id, 5.0) is made[4]


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/console/approvals?status=pending", "/console/approvals?status=pending"),
        ("//evil.example/console", "/console"),
        ("https://evil.example/console", "/console"),
        ("/consolex", "/consolex"),
        ("/elsewhere", "/console"),
        ("/console\\@evil", "/console"),
        ("/console/\r\nSet-Cookie: x", "/console"),
        (None, "/console"),
    ],
)
def test_login_only_returns_to_console_paths(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


def test_console_settings_are_checked() -> None:
    parsed = parse_server_settings(
        {"console": {"session_idle": 600, "session_max": 7200, "public_health": False}}, "x.yaml"
    )
    assert (parsed.console_session_idle, parsed.console_session_max) == (600, 7200)
    assert parsed.console_public_health is False
    assert parsed.overrides()["console"] == {
        "session_idle": 600,
        "session_max": 7200,
        "public_health": False,
    }
    with pytest.raises(InputError, match=r"console.session_idle"):
        parse_server_settings({"console": {"session_idle": 5}}, "x.yaml")
    with pytest.raises(InputError, match=r"console.session_max"):
        parse_server_settings({"console": {"session_idle": 600, "session_max": 300}}, "x.yaml")
    with pytest.raises(InputError, match=r"public_health"):
        parse_server_settings({"console": {"public_health": "yes"}}, "x.yaml")
    with pytest.raises(InputError, match=r"unknown keys \['colour'\]"):
        parse_server_settings({"console": {"colour": "blue"}}, "x.yaml")
