"""The client's local checks of an allow reply, with grants signed by a real key ring."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from clearance._internal.gate.traces import RunningRequest, Trace, enter_request, exit_request
from clearance._internal.grants.jwk import keys_from_jwks
from clearance._internal.grants.keys import GrantKeyRing, SigningKey
from clearance._internal.grants.token import GrantClaims, issue_grant, verify_grant
from clearance._internal.intent import Intent
from clearance._internal.remote.binding import bind, owner_for
from clearance._internal.remote.grant_check import Pins, check_allowed
from clearance._internal.remote.jwks import JwksCache, token_kid
from clearance._internal.remote.replay import PURGE_EVERY, MemoryReplayGuard
from clearance.errors import BindingError, InputError, InvalidGrant, SigningKeyError

T0 = 1_800_000_000
ISS, AUD, POL = "clearance://gw", "tools", "sha256:" + "ab" * 32
SENT = {"action": "payments.send", "args": {"to": "acme", "amount": 5}, "purpose": "INV-7"}


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> GrantKeyRing:
    return GrantKeyRing.create(tmp_path_factory.mktemp("ring") / "keys", T0)


@pytest.fixture(scope="module")
def key(ring: GrantKeyRing) -> SigningKey:
    return ring.signing_key()


@pytest.fixture(scope="module")
def keys(ring: GrantKeyRing) -> dict[str, Any]:
    return keys_from_jwks(ring.jwks(T0))


def normalized(sent: dict[str, Any], **changes: Any) -> dict[str, Any]:
    intent = Intent.from_json(
        {
            "principal": "agent:a",
            "trace_id": "t1",
            **{k: v for k, v in sent.items() if v is not None},
        }
    ).to_json()
    intent.update(changes)
    return intent


def allow_reply(
    key: SigningKey, signed: dict[str, Any], *, jti: str = "j1", **overrides: Any
) -> dict[str, Any]:
    parsed = Intent.from_json(signed)
    claims = GrantClaims.for_intent(
        parsed,
        issuer=ISS,
        audience=AUD,
        policy_digest=POL,
        request_id="r1",
        ledger_index=7,
        now=T0,
        jti=jti,
    )
    body = {
        "request_id": "r1",
        "effect": "allow",
        "reasons": [{"rule": "small", "message": "ok"}],
        "facts": {},
        "ledger_index": 7,
        "policy_digest": POL,
        "intent": signed,
        "intent_digest": parsed.digest,
        "grant": issue_grant(key, claims),
        "expires_at": claims.exp,
    }
    body.update(overrides)
    return body


def check(body: Any, keys: dict[str, Any], sent: dict[str, Any] = SENT, **options: Any) -> Any:
    arguments: dict[str, Any] = {
        "keys": keys,
        "pins": Pins(),
        "replay": MemoryReplayGuard(),
        "now": T0 + 1,
        "leeway": 5.0,
        **options,
    }
    return check_allowed(body, sent, **arguments)


def reason(body: Any, keys: dict[str, Any], **options: Any) -> str:
    with pytest.raises(InvalidGrant) as caught:
        check(body, keys, **options)
    assert str(caught.value) == "grant rejected"
    return caught.value.audit_reason


def test_a_genuine_reply_passes_and_pins(key: SigningKey, keys: dict[str, Any]) -> None:
    pins = Pins()
    authorization, claims = check(allow_reply(key, normalized(SENT)), keys, pins=pins)
    assert authorization.intent == Intent.from_json(normalized(SENT))
    assert authorization.decision.rule_ids == ["small"]
    assert (claims.trc, claims.par, claims.rid) == ("t1", None, "r1")
    assert (pins.issuer, pins.audience, pins.principal) == (ISS, AUD, "agent:a")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"args": {"to": "acme", "amount": 6}}, "args differ"),
        ({"resource": "accounts/1"}, "resource differ"),
        ({"purpose": None}, "purpose differ"),
        ({"parent_id": "r0"}, "parent_id differ"),
        ({"input": {"x": 1}}, "input differ"),
        ({"trace_id": None}, "no trace_id"),
    ],
)
def test_a_reply_for_another_intent_is_refused(
    key: SigningKey, keys: dict[str, Any], changes: dict[str, Any], expected: str
) -> None:
    assert expected in reason(allow_reply(key, normalized(SENT, **changes)), keys)


def test_a_reply_in_another_trace_than_sent_is_refused(
    key: SigningKey, keys: dict[str, Any]
) -> None:
    sent = {**SENT, "trace_id": "t9"}
    assert "runs in trace" in reason(allow_reply(key, normalized(SENT)), keys, sent=sent)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"intent_digest": "sha256:" + "0" * 64}, "intent_digest"),
        ({"request_id": "r2"}, "rid/lix/pol"),
        ({"ledger_index": 8}, "rid/lix/pol"),
        ({"policy_digest": "sha256:" + "cd" * 32}, "rid/lix/pol"),
        ({"grant": 5}, "'grant'"),
        ({"ledger_index": "7"}, "'ledger_index'"),
        ({"intent": "x"}, "'intent'"),
        ({"intent": {"action": "x"}}, "malformed"),
        ({"reasons": "x"}, "'reasons'"),
    ],
)
def test_malformed_or_inconsistent_replies_are_refused(
    key: SigningKey, keys: dict[str, Any], overrides: dict[str, Any], expected: str
) -> None:
    assert expected in reason(allow_reply(key, normalized(SENT), **overrides), keys)


def test_not_an_object(keys: dict[str, Any]) -> None:
    assert "not a JSON object" in reason(["allow"], keys)


def test_a_forged_payload_fails_the_signature(key: SigningKey, keys: dict[str, Any]) -> None:
    body = allow_reply(key, normalized(SENT))
    header, payload, signature = body["grant"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["exp"] += 1
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert "bad signature" in reason({**body, "grant": f"{header}.{forged}.{signature}"}, keys)


def test_the_same_grant_twice_is_a_replay(key: SigningKey, keys: dict[str, Any]) -> None:
    guard = MemoryReplayGuard()
    body = allow_reply(key, normalized(SENT))
    check(body, keys, replay=guard)
    assert "replayed" in reason(body, keys, replay=guard)


def test_pins_refuse_another_issuer_audience_or_principal(
    key: SigningKey, keys: dict[str, Any]
) -> None:
    assert "wrong issuer" in reason(allow_reply(key, normalized(SENT)), keys, pins=Pins(issuer="x"))
    assert "wrong audience" in reason(
        allow_reply(key, normalized(SENT)), keys, pins=Pins(audience="x")
    )
    assert "principal" in reason(
        allow_reply(key, normalized(SENT)), keys, pins=Pins(principal="agent:b")
    )
    pins = Pins(audience=AUD)
    check(allow_reply(key, normalized(SENT)), keys, pins=pins)
    pins.issuer = "clearance://other"
    assert "wrong issuer" in reason(allow_reply(key, normalized(SENT), jti="j2"), keys, pins=pins)


def test_pins_adopt_refuses_a_change(key: SigningKey) -> None:
    claims = GrantClaims.for_intent(
        Intent.from_json(normalized(SENT)),
        issuer=ISS,
        audience=AUD,
        policy_digest=POL,
        request_id="r1",
        ledger_index=1,
        now=T0,
    )
    with pytest.raises(InvalidGrant, match="grant rejected"):
        Pins(principal="agent:z").adopt(claims)


def test_expired_and_unknown_key(key: SigningKey, keys: dict[str, Any]) -> None:
    body = allow_reply(key, normalized(SENT))
    assert "expired" in reason(body, keys, now=T0 + 3600)
    assert "unknown kid" in reason(body, {})


# -- trc / par in every grant ----------------------------------------------------------


def test_trc_and_par_are_claims_checked_against_the_intent(
    key: SigningKey, keys: dict[str, Any]
) -> None:
    intent = Intent.from_json(normalized(SENT, parent_id="r0"))
    claims = GrantClaims.for_intent(
        intent, issuer=ISS, audience=AUD, policy_digest=POL, request_id="r1", ledger_index=1, now=T0
    )
    assert (claims.trc, claims.par) == ("t1", "r0")
    wrong = GrantClaims(**{**claims.to_json(), "par": "r9"})
    with pytest.raises(InvalidGrant) as caught:
        verify_grant(
            issue_grant(key, wrong),
            intent,
            keys=keys,
            audience=AUD,
            now=T0 + 1,
            replay=MemoryReplayGuard(),
        )
    assert caught.value.audit_reason.startswith("trace/parent claims mismatch")


@pytest.mark.parametrize("value", ["", 5, []])
def test_trc_and_par_are_string_or_null(key: SigningKey, value: Any) -> None:
    claims = GrantClaims.for_intent(
        Intent.from_json(normalized(SENT)),
        issuer=ISS,
        audience=AUD,
        policy_digest=POL,
        request_id="r1",
        ledger_index=1,
        now=T0,
    ).to_json()
    for name in ("trc", "par"):
        with pytest.raises(ValueError, match=f"claim {name} must be a non-empty string or null"):
            GrantClaims(**{**claims, name: value})


# -- the JWKS cache ---------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_jwks_is_fetched_first_then_only_for_unknown_kids_at_most_once_per_interval(
    key: SigningKey, ring: GrantKeyRing
) -> None:
    clock = Clock()
    cache = JwksCache(refetch_interval=30, clock=clock)
    grant = allow_reply(key, normalized(SENT))["grant"]
    assert cache.needs_fetch(grant)
    cache.update(ring.jwks(T0))
    assert not cache.needs_fetch(grant)  # known kid: never again
    rotated = grant.replace(
        grant.split(".")[0],
        base64.urlsafe_b64encode(b'{"alg":"EdDSA","kid":"new"}').rstrip(b"=").decode(),
    )
    assert token_kid(rotated) == "new"
    assert not cache.needs_fetch(rotated)  # within the interval of the last fetch
    clock.now = 31
    assert cache.needs_fetch(rotated)
    cache.fetch_failed()
    assert not cache.needs_fetch(rotated)  # a failed fetch counts too
    assert cache.fetches == 2
    assert not cache.needs_fetch("garbage")


def test_a_bad_jwks_keeps_the_old_keys(ring: GrantKeyRing) -> None:
    cache = JwksCache(refetch_interval=0)
    cache.update(ring.jwks(T0))
    held = dict(cache.keys)
    with pytest.raises(SigningKeyError):
        cache.update({"keys": [{"kty": "RSA"}]})
    assert dict(cache.keys) == held


@pytest.mark.parametrize("token", [None, "a.b", "###.b.c", "e30.b.c", "x" * 9000])
def test_token_kid_of_garbage_is_none(token: Any) -> None:
    assert token_kid(token) is None


def test_memory_replay_guard_purges_only_expired_entries() -> None:
    guard = MemoryReplayGuard()
    guard.consume("old", exp=100, now=50)
    for i in range(PURGE_EVERY):
        guard.consume(f"j{i}", exp=10_000, now=1_000)
    assert len(guard) == PURGE_EVERY  # "old" is gone, the live ones stay
    with pytest.raises(InvalidGrant):
        guard.consume("j0", exp=10_000, now=1_000)
    guard.close()


# -- binding an intent to its trace and parent ------------------------------------------


def test_binding_follows_the_active_trace_and_running_request() -> None:
    owner = owner_for("http://gw-a")
    assert owner is owner_for("http://gw-a")
    assert owner is not owner_for("http://gw-b")
    trace = Trace("t1", {"text": "", "bounds": {}}, owner)
    with trace.active():
        assert bind(SENT, None, owner=owner, principal=None).sent["trace_id"] == "t1"
        token = enter_request(RunningRequest(owner, "t1", "r1", 3, 0))
        try:
            bound = bind(SENT, None, owner=owner, principal=None)
            assert (bound.sent["parent_id"], bound.depth) == ("r1", 1)
            assert "principal" not in bound.sent
            with pytest.raises(BindingError, match="names parent"):
                bind({**SENT, "parent_id": "r0"}, None, owner=owner, principal=None)
        finally:
            exit_request(token)
    with pytest.raises(BindingError, match="names trace"):
        bind({**SENT, "trace_id": "t2"}, None, owner=owner, principal=None)
    foreign = Trace("t3", {}, object())
    with pytest.raises(BindingError, match="another gateway"):
        bind(SENT, foreign, owner=owner, principal=None)
    # A running request of another gateway is not a parent here.
    token = enter_request(RunningRequest(object(), "t1", "r1", 3, 0))
    try:
        assert bind(SENT, None, owner=owner, principal=None).sent["parent_id"] is None
    finally:
        exit_request(token)


def test_binding_validates_before_sending() -> None:
    owner = owner_for("http://gw-a")
    with pytest.raises(InputError, match="unknown intent field"):
        bind({**SENT, "scope": "admin"}, None, owner=owner, principal=None)
    with pytest.raises(InputError, match="JSON object"):
        bind("pay", None, owner=owner, principal=None)  # type: ignore[arg-type]
    with pytest.raises(BindingError, match="bound to 'agent:a'"):
        bind({**SENT, "principal": "agent:b"}, None, owner=owner, principal="agent:a")
    bound = bind(SENT, None, owner=owner, principal="agent:a")
    assert bound.sent["principal"] == "agent:a"
    intent = Intent.create(principal="agent:a", action="x")
    assert bind(intent, None, owner=owner, principal=None).sent["principal"] == "agent:a"
