"""Grant issue and executor-side verification: every check of docs/design.md §4 rule 6."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from jwt.api_jws import PyJWS

from clearance._internal.grants import token as grants
from clearance._internal.grants.jti_store import SQLiteReplayGuard
from clearance._internal.grants.jwk import b64url_decode, keys_from_jwks
from clearance._internal.grants.keys import GrantKeyRing, SigningKey
from clearance._internal.grants.token import (
    CLAIMS,
    DEFAULT_LIFETIME,
    MAX_ISSUE_LIFETIME,
    MAX_TOKEN_CHARS,
    GrantClaims,
    issue_grant,
    new_jti,
    peek_claims,
    verify_grant,
)
from clearance._internal.intent import Intent
from clearance.errors import InvalidGrant

T0 = 1_700_000_000
ISS = "https://gateway.example"
AUD = "tools.example"
POLICY = "sha256:" + "ab" * 32
INTENT = Intent.create(
    principal="agent:billing-bot",
    action="refund_payment",
    resource="orders/A-1001",
    args={"amount": 120.5, "currency": "USD"},
    trace_id="tr-1",
)


@pytest.fixture
def ring(tmp_path: Path) -> GrantKeyRing:
    return GrantKeyRing.create(tmp_path / "keys", T0)


@pytest.fixture
def key(ring: GrantKeyRing) -> SigningKey:
    return ring.signing_key()


@pytest.fixture
def keys(ring: GrantKeyRing) -> dict[str, Ed25519PublicKey]:
    return keys_from_jwks(ring.jwks(T0))


@pytest.fixture
def guard(tmp_path: Path) -> Iterator[SQLiteReplayGuard]:
    opened = SQLiteReplayGuard.open(tmp_path / "replay.db", "relaxed")
    yield opened
    opened.close()


def _claims(**changes: Any) -> dict[str, Any]:
    claims = GrantClaims.for_intent(
        INTENT,
        issuer=ISS,
        audience=AUD,
        policy_digest=POLICY,
        request_id="req-1",
        ledger_index=7,
        now=T0,
        jti="grant-1",
    ).to_json()
    claims.update(changes)
    return claims


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _compact(header: Mapping[str, Any], payload: bytes | Mapping[str, Any]) -> str:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return _b64(json.dumps(header).encode()) + "." + _b64(body)


def _sign(
    key: SigningKey, payload: bytes | Mapping[str, Any], header: Mapping[str, Any] | None = None
) -> str:
    """An Ed25519-signed compact JWS over any header and payload (to craft bad claim sets)."""
    signing_input = _compact(header or {"alg": "EdDSA", "typ": "JWT", "kid": key.kid}, payload)
    return signing_input + "." + _b64(key.private_key.sign(signing_input.encode()))


def _verify(
    token: Any,
    keys: Mapping[str, Ed25519PublicKey],
    guard: SQLiteReplayGuard,
    intent: Intent | Mapping[str, Any] = INTENT,
    **options: Any,
) -> GrantClaims:
    arguments: dict[str, Any] = {"audience": AUD, "now": T0 + 1, **options}
    return verify_grant(token, intent, keys=keys, replay=guard, **arguments)


def _reason(
    token: Any,
    keys: Mapping[str, Ed25519PublicKey],
    guard: SQLiteReplayGuard,
    intent: Intent | Mapping[str, Any] = INTENT,
    **options: Any,
) -> str:
    with pytest.raises(InvalidGrant) as info:
        _verify(token, keys, guard, intent, **options)
    assert str(info.value) == "grant rejected"  # no oracle for the caller
    return info.value.audit_reason


# -- issue ----------------------------------------------------------------------------


def test_issue_then_verify(key: SigningKey, keys: dict[str, Ed25519PublicKey], guard: Any) -> None:
    claims = GrantClaims(**_claims())
    token = issue_grant(key, claims)
    assert _verify(token, keys, guard) == claims


def test_pyjwt_verifies_our_grants(key: SigningKey) -> None:
    """Interoperability: a standard JWT library accepts what we issue (RFC 7519/8037)."""
    import jwt

    claims = GrantClaims(**_claims())
    token = issue_grant(key, claims)
    decoded = jwt.decode(
        token,
        key.private_key.public_key(),
        algorithms=["EdDSA"],
        audience=AUD,
        options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
    )
    assert decoded == claims.to_json()
    assert jwt.get_unverified_header(token) == {"alg": "EdDSA", "kid": key.kid, "typ": "JWT"}


def test_we_verify_grants_encoded_by_pyjwt(
    key: SigningKey, keys: dict[str, Ed25519PublicKey], guard: Any
) -> None:
    import jwt

    claims = GrantClaims(**_claims())
    token = jwt.encode(
        claims.to_json(), key.private_key, algorithm="EdDSA", headers={"kid": key.kid}
    )
    assert _verify(token, keys, guard) == claims


def test_issued_header_and_claims_are_exactly_the_contract(key: SigningKey) -> None:
    token = issue_grant(key, GrantClaims(**_claims()))
    header_segment, payload_segment, signature = token.split(".")
    assert json.loads(b64url_decode(header_segment)) == {
        "alg": "EdDSA",
        "typ": "JWT",
        "kid": key.kid,
    }
    payload = json.loads(b64url_decode(payload_segment))
    assert sorted(payload) == sorted(CLAIMS)
    assert payload["idg"] == INTENT.digest
    assert (payload["sub"], payload["act"], payload["lix"]) == (
        "agent:billing-bot",
        "refund_payment",
        7,
    )
    assert len(b64url_decode(signature)) == 64


def test_for_intent_defaults() -> None:
    claims = GrantClaims.for_intent(
        INTENT,
        issuer=ISS,
        audience=AUD,
        policy_digest=POLICY,
        request_id="r",
        ledger_index=0,
        now=T0 + 0.9,
    )
    assert (claims.iat, claims.nbf, claims.exp) == (T0, T0, T0 + DEFAULT_LIFETIME)
    assert DEFAULT_LIFETIME <= 60


def test_new_jti_is_random_and_128_bits() -> None:
    jtis = {new_jti() for _ in range(100)}
    assert len(jtis) == 100
    assert all(len(b64url_decode(j)) == 16 for j in jtis)


@pytest.mark.parametrize(
    "changes",
    [
        {"exp": T0 + MAX_ISSUE_LIFETIME + 1},
        {"exp": T0},
        {"iat": T0 - 100},
    ],
)
def test_issue_refuses_bad_lifetimes(key: SigningKey, changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="lifetime"):
        issue_grant(key, GrantClaims(**_claims(**changes)))


@pytest.mark.parametrize(
    "changes", [{"iat": float(T0)}, {"lix": "7"}, {"lix": -1}, {"aud": ""}, {"act": None}]
)
def test_claims_are_type_checked(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="claim"):
        GrantClaims(**_claims(**changes))


# -- algorithm confusion ----------------------------------------------------------------


def _header(kid: str, alg: str) -> dict[str, Any]:
    return {"alg": alg, "typ": "JWT", "kid": kid}


def _hs256(kid: str, secret: bytes) -> str:
    signing_input = _compact(_header(kid, "HS256"), _claims())
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64(mac)


def test_alg_none_is_rejected(key: SigningKey, keys: Any, guard: Any) -> None:
    token = _compact(_header(key.kid, "none"), _claims()) + "."
    assert _reason(token, keys, guard) == "alg 'none' is not EdDSA"


def test_hs256_signed_with_the_public_key_is_rejected(
    key: SigningKey, keys: Any, guard: Any
) -> None:
    public = key.public_key()
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    secrets = [public.public_bytes_raw(), pem, _b64(public.public_bytes_raw()).encode()]
    for secret in secrets:
        assert _reason(_hs256(key.kid, secret), keys, guard) == "alg 'HS256' is not EdDSA"


def test_rs256_and_es256_are_rejected(key: SigningKey, keys: Any, guard: Any) -> None:
    payload = json.dumps(_claims()).encode()
    rsa_key = rsa.generate_private_key(65537, 2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    for alg, private in (("RS256", rsa_key), ("ES256", ec_key)):
        token = PyJWS().encode(payload, private, algorithm=alg, headers={"kid": key.kid})
        assert _reason(token, keys, guard) == f"alg '{alg}' is not EdDSA"


@pytest.mark.parametrize("alg", ["eddsa", "Ed25519", "EDDSA", None, ["EdDSA"]])
def test_alg_must_be_exactly_eddsa(key: SigningKey, keys: Any, guard: Any, alg: Any) -> None:
    header = {"alg": alg, "typ": "JWT", "kid": key.kid}
    assert "is not EdDSA" in _reason(_sign(key, _claims(), header), keys, guard)


# -- header, kid, signature -------------------------------------------------------------


@pytest.mark.parametrize(
    "extra", [{"crit": ["exp"]}, {"jku": "https://evil.example/jwks"}, {"b64": False}, {"x5u": ""}]
)
def test_unexpected_header_parameters(key: SigningKey, keys: Any, guard: Any, extra: Any) -> None:
    header = {**_header(key.kid, "EdDSA"), **extra}
    reason = _reason(_sign(key, _claims(), header), keys, guard)
    assert reason.startswith("unexpected header parameters")


def test_typ_must_be_jwt_when_present(key: SigningKey, keys: Any, guard: Any) -> None:
    header = {"alg": "EdDSA", "typ": "at+jwt", "kid": key.kid}
    assert _reason(_sign(key, _claims(), header), keys, guard) == "typ 'at+jwt' is not JWT"
    no_typ = {"alg": "EdDSA", "kid": key.kid}
    assert _verify(_sign(key, _claims(), no_typ), keys, guard).jti == "grant-1"


def _sign_header_text(key: SigningKey, header_json: str, payload: Mapping[str, Any]) -> str:
    """A grant whose protected header is exactly ``header_json`` (to repeat members)."""
    signing_input = _b64(header_json.encode()) + "." + _b64(json.dumps(payload).encode())
    return signing_input + "." + _b64(key.private_key.sign(signing_input.encode()))


def _duplicate_headers(kid: str) -> list[tuple[str, str]]:
    """Headers repeating one member, each in both orders: JSON's "last wins" would pick one."""
    return [
        ("alg", f'{{"alg":"none","alg":"EdDSA","typ":"JWT","kid":"{kid}"}}'),
        ("alg", f'{{"alg":"EdDSA","alg":"none","typ":"JWT","kid":"{kid}"}}'),
        ("alg", f'{{"alg":"EdDSA","alg":"EdDSA","typ":"JWT","kid":"{kid}"}}'),
        ("kid", f'{{"alg":"EdDSA","typ":"JWT","kid":"{kid}","kid":"other"}}'),
        ("kid", f'{{"alg":"EdDSA","typ":"JWT","kid":"other","kid":"{kid}"}}'),
        ("kid", f'{{"alg":"EdDSA","typ":"JWT","kid":"{kid}","kid":"{kid}"}}'),
        ("typ", f'{{"alg":"EdDSA","typ":"JWT","typ":"JWT","kid":"{kid}"}}'),
        ("typ", f'{{"alg":"EdDSA","typ":"at+jwt","typ":"JWT","kid":"{kid}"}}'),
    ]


@pytest.mark.parametrize("case", range(8))
def test_duplicate_header_members_are_refused(
    key: SigningKey, keys: Any, guard: Any, case: int
) -> None:
    # Signed by the real key: only the duplicate itself can be the reason for refusal.
    member, header_json = _duplicate_headers(key.kid)[case]
    token = _sign_header_text(key, header_json, _claims())
    assert _reason(token, keys, guard) == f"duplicate header member '{member}'"


def test_duplicate_header_is_never_cached(key: SigningKey, keys: Any, guard: Any) -> None:
    # A grant with the canonical header verifies first, so its segment is cached; the
    # duplicate-member segments must still be parsed, refused, and never enter the cache.
    _verify(issue_grant(key, GrantClaims(**_claims())), keys, guard)
    for member, header_json in _duplicate_headers(key.kid):
        token = _sign_header_text(key, header_json, _claims(jti=new_jti()))
        for _ in range(2):
            assert _reason(token, keys, guard) == f"duplicate header member '{member}'"
        assert token.split(".")[0] not in grants._ACCEPTED_HEADERS
    assert _verify(issue_grant(key, GrantClaims(**_claims(jti="j2"))), keys, guard).jti == "j2"


def test_header_repeating_a_member_inside_a_value(key: SigningKey, keys: Any, guard: Any) -> None:
    header_json = f'{{"alg":"EdDSA","typ":"JWT","kid":{{"a":1,"a":"{key.kid}"}}}}'
    token = _sign_header_text(key, header_json, _claims())
    assert _reason(token, keys, guard).startswith("duplicate header member")


def test_header_must_be_utf8_json(key: SigningKey, keys: Any, guard: Any) -> None:
    # RFC 7515 §4: the header is the UTF-8 representation; json.loads(bytes) would
    # also have accepted UTF-16 or a byte order mark.
    header = json.dumps(_header(key.kid, "EdDSA"))
    for encoded in (header.encode("utf-16"), b"\xef\xbb\xbf" + header.encode()):
        signing_input = _b64(encoded) + "." + _b64(json.dumps(_claims()).encode())
        token = signing_input + "." + _b64(key.private_key.sign(signing_input.encode()))
        assert _reason(token, keys, guard).startswith("malformed token header")


@pytest.mark.parametrize("kid", ["unknown", None, 7])
def test_unknown_or_missing_kid(key: SigningKey, keys: Any, guard: Any, kid: Any) -> None:
    header: dict[str, Any] = {"alg": "EdDSA", "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    assert _reason(_sign(key, _claims(), header), keys, guard).startswith("unknown kid")


def test_signature_by_another_key_under_our_kid(key: SigningKey, keys: Any, guard: Any) -> None:
    impostor = SigningKey(key.kid, Ed25519PrivateKey.generate())
    assert _reason(issue_grant(impostor, GrantClaims(**_claims())), keys, guard).startswith(
        "bad signature"
    )


def test_tampered_payload(key: SigningKey, keys: Any, guard: Any) -> None:
    header, _, signature = issue_grant(key, GrantClaims(**_claims())).split(".")
    forged = _b64(json.dumps(_claims(lix=8)).encode())
    assert _reason(f"{header}.{forged}.{signature}", keys, guard).startswith("bad signature")


def test_flipped_signature_bit(key: SigningKey, keys: Any, guard: Any) -> None:
    header, payload, signature = issue_grant(key, GrantClaims(**_claims())).split(".")
    raw = bytearray(b64url_decode(signature))
    raw[10] ^= 0x04
    assert _reason(f"{header}.{payload}.{_b64(bytes(raw))}", keys, guard).startswith(
        "bad signature"
    )


def test_grant_from_a_rotated_out_key_still_verifies(
    ring: GrantKeyRing, key: SigningKey, guard: Any
) -> None:
    token = issue_grant(key, GrantClaims(**_claims()))
    ring.rotate(T0 + 1, max_grant_lifetime=60)
    assert _verify(token, ring.verification_keys(T0 + 1), guard).idg == INTENT.digest
    assert _reason(token, ring.verification_keys(T0 + 1000), guard).startswith("unknown kid")


# -- malformed tokens --------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "!!!.e30.AA",
        _b64(b"not json") + ".e30.AA",
        _b64(b"[1]") + ".e30.AA",
        _b64(b"[" * 6000) + ".e30.AA",  # nesting that would exhaust the JSON parser's stack
        "x" * (MAX_TOKEN_CHARS + 1),
        b"bytes.are.not",
        None,
    ],
)
def test_malformed_tokens(keys: Any, guard: Any, token: Any) -> None:
    assert _reason(token, keys, guard).startswith("malformed token")


@pytest.mark.parametrize("payload", [b"not json", b"[1, 2]", b'"claims"'])
def test_signed_but_non_object_payload(
    key: SigningKey, keys: Any, guard: Any, payload: bytes
) -> None:
    assert _reason(_sign(key, payload), keys, guard).startswith("malformed token")


def test_duplicate_claim_names(key: SigningKey, keys: Any, guard: Any) -> None:
    body = json.dumps(_claims())[:-1] + ', "act": "transfer_funds"}'
    assert "duplicate member" in _reason(_sign(key, body.encode()), keys, guard)


def test_duplicate_claim_names_in_compact_sorted_form(
    key: SigningKey, keys: Any, guard: Any
) -> None:
    # The form issue_grant writes, which the verifier parses on its fast path.
    compact = json.dumps(_claims(), sort_keys=True, separators=(",", ":"))
    body = compact.replace('"act":', '"act":"transfer_funds","act":', 1)
    assert "duplicate member" in _reason(_sign(key, body.encode()), keys, guard)


def test_payload_that_is_not_utf8(key: SigningKey, keys: Any, guard: Any) -> None:
    reason = _reason(_sign(key, b'{"iss":"\xff"}'), keys, guard)
    assert reason.startswith("malformed token payload")


# -- claims ---------------------------------------------------------------------------


@pytest.mark.parametrize("claim", CLAIMS)
def test_every_claim_is_required(key: SigningKey, keys: Any, guard: Any, claim: str) -> None:
    claims = _claims()
    del claims[claim]
    assert _reason(_sign(key, claims), keys, guard) == f"missing claims: {claim}"


def test_unknown_claims_are_rejected(key: SigningKey, keys: Any, guard: Any) -> None:
    reason = _reason(_sign(key, _claims(scope="admin")), keys, guard)
    assert reason == "unexpected claims: 'scope'"


@pytest.mark.parametrize(
    ("changes", "claim"),
    [
        ({"iat": str(T0)}, "iat"),
        ({"nbf": float(T0)}, "nbf"),
        ({"exp": True}, "exp"),
        ({"lix": "7"}, "lix"),
        ({"lix": 7.0}, "lix"),
        ({"aud": [AUD]}, "aud"),
        ({"act": 5}, "act"),
        ({"idg": ""}, "idg"),
        ({"jti": None}, "jti"),
    ],
)
def test_claim_types(key: SigningKey, keys: Any, guard: Any, changes: Any, claim: str) -> None:
    assert _reason(_sign(key, _claims(**changes)), keys, guard).startswith(f"claim {claim} must")


# -- time -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "leeway", "accepted"),
    [
        (T0 + 30 + 5 - 0.001, 5.0, True),
        (T0 + 30 + 5, 5.0, False),
        (T0 + 29.999, 0.0, True),
        (T0 + 30, 0.0, False),
        (T0 + 31, 2.0, True),
        (T0 + 32, 2.0, False),
    ],
)
def test_expiry_with_leeway(
    key: SigningKey, keys: Any, guard: Any, now: float, leeway: float, accepted: bool
) -> None:
    token = issue_grant(key, GrantClaims(**_claims(exp=T0 + 30)))
    if accepted:
        _verify(token, keys, guard, now=now, leeway=leeway)
    else:
        assert _reason(token, keys, guard, now=now, leeway=leeway).startswith("expired")


@pytest.mark.parametrize(("now", "accepted"), [(T0 - 5, True), (T0 - 5.001, False)])
def test_not_before_with_leeway(
    key: SigningKey, keys: Any, guard: Any, now: float, accepted: bool
) -> None:
    token = issue_grant(key, GrantClaims(**_claims(iat=T0 - 10, nbf=T0, exp=T0 + 30)))
    if accepted:
        _verify(token, keys, guard, now=now)
    else:
        assert _reason(token, keys, guard, now=now).startswith("not yet valid")


def test_issued_in_the_future(key: SigningKey, keys: Any, guard: Any) -> None:
    token = _sign(key, _claims(iat=T0 + 20, nbf=T0, exp=T0 + 30))
    assert _reason(token, keys, guard, now=T0 + 1).startswith("issued in the future")


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"exp": T0 + 61}, "lifetime too long"),
        ({"iat": T0 - 40, "exp": T0 + 30}, "lifetime too long"),
        ({"nbf": T0 + 2, "exp": T0 + 2}, "empty validity window"),
    ],
)
def test_lifetime_limits(
    key: SigningKey, keys: Any, guard: Any, changes: dict[str, Any], reason: str
) -> None:
    assert _reason(_sign(key, _claims(**changes)), keys, guard).startswith(reason)


def test_max_lifetime_is_configurable(key: SigningKey, keys: Any, guard: Any) -> None:
    token = _sign(key, _claims(exp=T0 + 90))
    assert _reason(token, keys, guard).startswith("lifetime too long")
    _verify(token, keys, guard, max_lifetime=120)
    assert _reason(_sign(key, _claims(exp=T0 + 20)), keys, guard, max_lifetime=10).startswith(
        "lifetime too long"
    )


@pytest.mark.parametrize(
    "options",
    [
        {"leeway": 5.001},
        {"leeway": 60},
        {"leeway": -1},
        {"leeway": float("nan")},
        {"max_lifetime": 0},
        {"max_lifetime": float("inf")},
        {"max_lifetime": float("nan")},
        {"now": float("nan")},
        {"audience": ""},
    ],
)
def test_programmer_misuse_is_a_value_error(
    key: SigningKey, keys: Any, guard: Any, options: dict[str, Any]
) -> None:
    token = issue_grant(key, GrantClaims(**_claims()))
    with pytest.raises(ValueError, match="must be"):
        _verify(token, keys, guard, **options)


# -- audience, issuer, binding to the intent ----------------------------------------------


def test_wrong_audience(key: SigningKey, keys: Any, guard: Any) -> None:
    token = issue_grant(key, GrantClaims(**_claims()))
    reason = _reason(token, keys, guard, audience="payments.example")
    assert reason == "wrong audience 'tools.example', expected 'payments.example'"


def test_issuer_checked_only_when_given(key: SigningKey, keys: Any, guard: Any) -> None:
    token = issue_grant(key, GrantClaims(**_claims()))
    assert _reason(token, keys, guard, issuer="https://other.example").startswith("wrong issuer")
    _verify(token, keys, guard, issuer=ISS)
    _verify(issue_grant(key, GrantClaims(**_claims(jti="j2"))), keys, guard, issuer=None)


@pytest.mark.parametrize(
    ("intent", "reason"),
    [
        (INTENT.to_json() | {"action": "transfer_funds"}, "action mismatch"),
        (INTENT.to_json() | {"principal": "agent:other"}, "principal mismatch"),
        (
            INTENT.to_json() | {"args": {"amount": 9999, "currency": "USD"}},
            "intent digest mismatch",
        ),
        (INTENT.to_json() | {"resource": "orders/B-2"}, "intent digest mismatch"),
        (INTENT.to_json() | {"trace_id": None}, "intent digest mismatch"),
        (INTENT.to_json() | {"input": {}}, "intent digest mismatch"),
        (INTENT.to_json() | {"sudo": True}, "intent to run is malformed"),
        ({"action": "refund_payment"}, "intent to run is malformed"),
        (["not", "an", "object"], "intent to run is malformed"),
    ],
)
def test_grant_is_bound_to_the_exact_intent(
    key: SigningKey, keys: Any, guard: Any, intent: Any, reason: str
) -> None:
    token = issue_grant(key, GrantClaims(**_claims()))
    assert _reason(token, keys, guard, intent).startswith(reason)
    assert _verify(token, keys, guard, INTENT.to_json()).idg == INTENT.digest  # not consumed


def test_intent_as_json_that_normalizes_equal(key: SigningKey, keys: Any, guard: Any) -> None:
    token = issue_grant(key, GrantClaims(**_claims()))
    sent = {k: v for k, v in INTENT.to_json().items() if v is not None}
    sent["args"] = {"currency": "USD", "amount": 120.5}  # member order does not matter
    assert _verify(token, keys, guard, sent).idg == INTENT.digest


# -- replay ---------------------------------------------------------------------------


def test_replayed_jti_is_rejected(key: SigningKey, keys: Any, guard: Any) -> None:
    token = issue_grant(key, GrantClaims(**_claims()))
    _verify(token, keys, guard)
    assert _reason(token, keys, guard) == "replayed jti"
    other_token_same_jti = issue_grant(key, GrantClaims(**_claims(lix=8)))
    assert _reason(other_token_same_jti, keys, guard) == "replayed jti"


def test_rejected_grant_does_not_consume_its_jti(key: SigningKey, keys: Any, guard: Any) -> None:
    token = issue_grant(key, GrantClaims(**_claims()))
    assert _reason(token, keys, guard, audience="elsewhere").startswith("wrong audience")
    assert _reason(token, keys, guard, now=T0 + 100).startswith("expired")
    _verify(token, keys, guard)


def test_closed_replay_store_fails_closed(key: SigningKey, keys: Any, guard: Any) -> None:
    guard.close()
    token = issue_grant(key, GrantClaims(**_claims()))
    assert _reason(token, keys, guard).startswith("replay store unavailable")


class _BrokenGuard:
    """A third-party ReplayGuard whose storage is gone."""

    def consume(self, jti: str, exp: float, now: float) -> None:
        raise OSError(28, "No space left on device")

    def close(self) -> None:
        return None


def test_foreign_replay_store_errors_fail_closed(key: SigningKey, keys: Any) -> None:
    token = issue_grant(key, GrantClaims(**_claims()))
    with pytest.raises(InvalidGrant) as info:
        verify_grant(token, INTENT, keys=keys, audience=AUD, now=T0, replay=_BrokenGuard())
    assert info.value.audit_reason.startswith("replay store unavailable: OSError")


# -- peek_claims ------------------------------------------------------------------------


def test_peek_claims_is_unverified(key: SigningKey) -> None:
    impostor = SigningKey(key.kid, Ed25519PrivateKey.generate())
    token = issue_grant(impostor, GrantClaims(**_claims()))
    assert peek_claims(token) == _claims()


@pytest.mark.parametrize("token", ["", "a.b", "a.!!.c", "a." + _b64(b"[1]") + ".c", None])
def test_peek_claims_of_garbage_is_none(token: Any) -> None:
    assert peek_claims(token) is None


def test_invalid_grant_is_opaque_to_whatever_prints_it() -> None:
    """No error oracle: str() and diagnostics() hide the reason; the audit accessor has it."""
    from clearance.errors import InvalidGrant

    refused = InvalidGrant("bad signature for kid 'k1'")
    assert str(refused) == refused.diagnostics() == "grant rejected"
    assert refused.audit_reason == "bad signature for kid 'k1'"
    assert "signature" not in repr(refused.args)
