"""API key model: scopes and what they allow, validation of names, scopes, principals and
lifetimes, and the JSON form (which never carries a secret)."""

from __future__ import annotations

from dataclasses import fields

import pytest

from clearance._internal.apikeys import SCOPES, ApiKey
from clearance._internal.apikeys.model import (
    check_expires_in,
    check_name,
    check_principal,
    check_scopes,
)
from clearance.errors import InputError


def key(*scopes: str, revoked_at: float | None = None, expires_at: float | None = None) -> ApiKey:
    return ApiKey(
        name="k",
        key_id="0123456789abcdef",
        scopes=frozenset(scopes),
        principal="agent:billing-bot",
        created_at=100.0,
        expires_at=expires_at,
        revoked_at=revoked_at,
        last_used_at=None,
    )


def test_the_scopes_are_the_five_of_the_design() -> None:
    assert frozenset({"agent", "orchestrator", "approver", "auditor", "admin"}) == SCOPES


@pytest.mark.parametrize("scope", sorted(SCOPES))
def test_admin_allows_every_scope_and_each_scope_allows_itself(scope: str) -> None:
    assert key("admin").allows(scope)
    assert key(scope).allows(scope)


@pytest.mark.parametrize(
    ("held", "allowed"),
    [
        ("agent", {"agent"}),
        ("orchestrator", {"orchestrator", "agent"}),  # docs/http-api.md: everything agent may
        ("approver", {"approver"}),
        ("auditor", {"auditor"}),
    ],
)
def test_no_other_scope_implies_anything(held: str, allowed: set[str]) -> None:
    assert {s for s in SCOPES if key(held).allows(s)} == allowed
    assert not key(held).allows("no-such-scope")


def test_several_scopes_allow_their_union() -> None:
    assert {s for s in SCOPES if key("agent", "approver").allows(s)} == {"agent", "approver"}


def test_status_revocation_wins_over_expiry() -> None:
    assert key("agent").status(1e12) == "active"
    assert key("agent", expires_at=200.0).status(199.999) == "active"
    assert key("agent", expires_at=200.0).status(200.0) == "expired"
    assert key("agent", expires_at=200.0, revoked_at=150.0).status(300.0) == "revoked"


def test_to_json_holds_every_field_and_no_secret() -> None:
    document = key("auditor", "agent").to_json()
    assert set(document) == {f.name for f in fields(ApiKey)}
    assert document["scopes"] == ["agent", "auditor"]
    assert not any(word in str(document) for word in ("clk_", "digest", "hash", "secret"))


@pytest.mark.parametrize("name", ["a", "billing-bot", "ci.deploy_2", "0", "a" * 64])
def test_good_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "A", "-a", ".a", "_a", "a b", "a/b", "a" * 65, "é", "a\n", None, 3]
)
def test_bad_names_are_refused_with_the_rule(name: object) -> None:
    with pytest.raises(InputError, match="name"):
        check_name(name)


def test_scopes_must_be_a_non_empty_collection_of_known_scopes() -> None:
    assert check_scopes(["agent", "agent", "admin"]) == {"agent", "admin"}
    assert check_scopes(("auditor",)) == {"auditor"}
    with pytest.raises(InputError, match="at least one scope"):
        check_scopes([])
    with pytest.raises(InputError, match="unknown scope 'root'"):
        check_scopes(["agent", "root"])
    with pytest.raises(InputError, match="unknown scope"):
        check_scopes(["Agent"])
    with pytest.raises(InputError, match="list of scope names"):
        check_scopes("agent")  # a string is a collection of letters: refused
    with pytest.raises(InputError, match="list of scope names"):
        check_scopes(None)


@pytest.mark.parametrize("principal", ["agent:billing-bot", "user:alice@example.com", "svc/a+b"])
def test_principals_use_the_intent_syntax(principal: str) -> None:
    assert check_principal(principal) == principal


@pytest.mark.parametrize("principal", ["", " agent", "agent bot", ":x", "a" * 257, None, 1])
def test_bad_principals_are_refused(principal: object) -> None:
    with pytest.raises(InputError, match="principal"):
        check_principal(principal)


def test_lifetimes_must_be_positive_finite_numbers() -> None:
    assert check_expires_in(None) is None
    assert check_expires_in(1) == 1.0
    assert check_expires_in(0.5) == 0.5
    for bad in (0, -1, float("nan"), float("inf"), True, "60", 1e12):
        with pytest.raises(InputError, match="expires_in"):
            check_expires_in(bad)
