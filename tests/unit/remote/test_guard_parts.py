"""The grant guard's route table, header parsing, configuration and result digests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clearance import GrantGuard, Intent, ToolRoute, grant_headers
from clearance._internal.guard.core import parse_args
from clearance._internal.guard.headers import (
    HeaderProblem,
    as_pairs,
    presented_grant,
    presented_purpose,
)
from clearance._internal.guard.middleware import result_digest, route_path
from clearance._internal.guard.routes import RouteTable, normalized
from clearance.errors import InputError

TABLE = RouteTable(
    {
        ("POST", "/pay"): "payments.send",
        ("post", "/accounts/{account}/pay"): ToolRoute("payments.send", resource="acct/{account}"),
        ("POST", "/accounts/main/pay"): "payments.main",
        ("DELETE", "/items/{item}"): ToolRoute(
            "items.delete", resource=lambda p: p["item"].upper()
        ),
        ("GET", "/"): "root.read",
    }
)


@pytest.mark.parametrize(
    ("method", "path", "action", "params"),
    [
        ("POST", "/pay", "payments.send", {}),
        ("POST", "/pay/", "payments.send", {}),
        ("POST", "/pay//", "payments.send", {}),
        ("POST", "/accounts/A-1/pay", "payments.send", {"account": "A-1"}),
        ("POST", "/accounts/main/pay", "payments.main", {}),  # a literal route wins
        ("DELETE", "/items/x", "items.delete", {"item": "x"}),
        ("HEAD", "/", "root.read", {}),
        ("get", "", "root.read", {}),
    ],
)
def test_matching(method: str, path: str, action: str, params: dict[str, str]) -> None:
    found = TABLE.match(method, path)
    assert found is not None
    assert (found[0].action, found[1]) == (action, params)


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/pay"), ("POST", "/pay/extra"), ("POST", "/accounts//pay"), ("PUT", "/items/x")],
)
def test_not_matching(method: str, path: str) -> None:
    assert TABLE.match(method, path) is None


def test_resources() -> None:
    found = TABLE.match("POST", "/accounts/A-1/pay")
    assert found is not None
    assert found[0].resource_for(found[1]) == "acct/A-1"
    deleted = TABLE.match("DELETE", "/items/x")
    assert deleted is not None
    assert deleted[0].resource_for(deleted[1]) == "X"
    assert ToolRoute("a").resource_for({}) is None


@pytest.mark.parametrize(
    "routes",
    [
        {},
        {("TRACE", "/x"): "a"},
        {("POST", "x"): "a"},
        {("POST", "/x{y}"): "a"},
        {"POST /x": "a"},
        {("POST", "/x"): "not an action!"},
        {("POST", "/x"): 5},
    ],
)
def test_bad_routes_are_refused(routes: Any) -> None:
    with pytest.raises(ValueError):
        RouteTable(routes)


def test_tool_route_checks_its_resource() -> None:
    with pytest.raises(ValueError, match="resource"):
        ToolRoute("a", resource=5)  # type: ignore[arg-type]


def test_normalized() -> None:
    assert normalized("//a///b/") == "/a/b"
    assert normalized("/") == "/"
    assert normalized("") == "/"


def test_route_path_strips_the_root_path() -> None:
    assert route_path({"path": "/api/pay", "root_path": "/api"}) == "/pay"
    assert route_path({"path": "/api", "root_path": "/api"}) == "/"
    assert route_path({"path": "/pay", "root_path": "/api"}) == "/pay"


# -- headers ---------------------------------------------------------------------------


def test_headers_from_bytes_pairs_and_mappings() -> None:
    assert as_pairs([(b"Authorization", b"Clearance a.b.c")]) == [
        ("Authorization", "Clearance a.b.c")
    ]
    assert presented_grant(as_pairs({"authorization": "CLEARANCE   a.b.c "})) == "a.b.c"


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ([], "no grant presented"),
        ([("authorization", "Bearer x")], "scheme"),
        ([("authorization", "Clearance")], "empty grant"),
        ([("authorization", "Clearance a"), ("Authorization", "Clearance b")], "several"),
    ],
)
def test_grant_header_problems(headers: list[tuple[str, str]], problem: str) -> None:
    with pytest.raises(HeaderProblem, match=problem):
        presented_grant(headers)


def test_purpose_header() -> None:
    assert presented_purpose([]) is None
    assert presented_purpose([("clearance-purpose", "pay%20INV-7%20f%C3%BCr")]) == "pay INV-7 für"
    assert presented_purpose([("Clearance-Purpose", "plain ascii")]) == "plain ascii"
    for bad, problem in (
        ([("clearance-purpose", "für")], "ASCII"),
        ([("clearance-purpose", "%FF")], "UTF-8"),
        ([("clearance-purpose", "a"), ("clearance-purpose", "b")], "several"),
    ):
        with pytest.raises(HeaderProblem, match=problem):
            presented_purpose(bad)


def test_grant_headers_round_trip() -> None:
    intent = Intent.create(principal="agent:a", action="x", purpose=" 100% für dich ")
    headers = grant_headers("a.b.c", intent)
    assert headers["Authorization"] == "Clearance a.b.c"
    assert presented_purpose(as_pairs(headers)) == intent.purpose
    assert "Clearance-Purpose" not in grant_headers(
        "a.b.c", Intent.create(principal="a", action="x")
    )
    with pytest.raises(InputError):
        grant_headers("a.b.c", {"action": "x"})  # type: ignore[arg-type]


def test_parse_args() -> None:
    assert parse_args(b"") == {}
    assert parse_args(b"  \n") == {}
    assert parse_args(b'{"a": [1, 2.5]}') == {"a": [1, 2.5]}
    for bad in (b"[]", b"{", b'{"a":1,"a":2}', b"NaN"):
        with pytest.raises(InputError):
            parse_args(bad)


def test_result_digest() -> None:
    assert result_digest(b'{"b":1,"a":2}') == result_digest(b'{"a":2, "b":1}')
    assert result_digest(b"") is None
    assert result_digest(b"<html>") is None


# -- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"issuer": ""}, "issuer"),
        ({"leeway": 6}, "leeway"),
        ({"max_body": 0}, "max_body"),
        ({"timeout": 0}, "timeout"),
        ({"api_key": "k"}, "gateway_url"),
        ({"spool_dir": "s"}, "spool_dir"),
        ({"keys": None}, "keys"),
    ],
)
def test_guard_configuration_is_checked(
    tmp_path: Path, options: dict[str, Any], message: str
) -> None:
    settings: dict[str, Any] = {
        "routes": {("POST", "/pay"): "payments.send"},
        "issuer": "i",
        "audience": "a",
        "replay": tmp_path / "replay.db",
        "keys": {},
        **options,
    }
    with pytest.raises(ValueError, match=message):
        GrantGuard(**settings)


def test_a_gateway_url_gives_the_jwks_url(tmp_path: Path) -> None:
    guard = GrantGuard(
        routes={("POST", "/pay"): "payments.send"},
        issuer="i",
        audience="a",
        replay=tmp_path / "replay.db",
        gateway_url="http://gw:8470/",
    )
    assert guard.jwks_url == "http://gw:8470/.well-known/jwks.json"
    assert guard.reporter is None  # no api key: nothing is reported
    guard.close()
