"""Grant signing keys: file permissions, JWKS, RFC 7638 kids, rotation, fail-closed loading."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st
from jwt.api_jws import PyJWS

from clearance._internal import sealing
from clearance._internal.grants.jwk import (
    b64url_decode,
    b64url_encode,
    jwk_thumbprint,
    keys_from_jwks,
    public_jwk,
)
from clearance._internal.grants.keys import (
    JWKS_FILE,
    ROTATION_LEEWAY,
    SEAL_MEMBER,
    GrantKeyRing,
)
from clearance.errors import SigningKeyError

T0 = 1_700_000_000.0

# RFC 8037 Appendix A.1-A.4: the Ed25519 example key, its thumbprint and a signed JWS.
RFC8037_D = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
RFC8037_X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
RFC8037_KID = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
RFC8037_JWS = (
    "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc"
    ".hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
)


@pytest.fixture
def ring_dir(tmp_path: Path) -> Path:
    return tmp_path / "keys" / "grant"


@pytest.fixture
def ring(ring_dir: Path) -> GrantKeyRing:
    return GrantKeyRing.create(ring_dir, T0)


def _pem(ring: GrantKeyRing) -> Path:
    return ring.directory / f"{ring.active_kid}.pem"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    old = os.umask(0)
    yield
    os.umask(old)


# -- RFC vectors -----------------------------------------------------------------------


def test_rfc8037_thumbprint_vector() -> None:
    private = Ed25519PrivateKey.from_private_bytes(b64url_decode(RFC8037_D))
    assert b64url_encode(private.public_key().public_bytes_raw()) == RFC8037_X
    assert jwk_thumbprint(private.public_key()) == RFC8037_KID
    assert public_jwk(private.public_key())["kid"] == RFC8037_KID


def test_rfc8037_eddsa_signature_vector() -> None:
    # Pins PyJWT + cryptography to RFC 8037 §3.1 EdDSA (Ed25519 signatures are deterministic).
    private = Ed25519PrivateKey.from_private_bytes(b64url_decode(RFC8037_D))
    token = PyJWS().encode(
        b"Example of Ed25519 signing", private, algorithm="EdDSA", headers={"typ": None}
    )
    assert token == RFC8037_JWS


@pytest.mark.parametrize("text", ["a=", "a+b/", "ab cd", "a", "AB"])
def test_b64url_decode_is_strict(text: str) -> None:
    with pytest.raises(ValueError, match="base64url"):
        b64url_decode(text)


# -- create and load -------------------------------------------------------------------


def test_create_writes_private_key_0600_and_a_public_jwks(ring: GrantKeyRing) -> None:
    pem = _pem(ring)
    assert _mode(pem) == 0o600
    assert _mode(ring.directory) == 0o700
    assert pem.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    document = json.loads((ring.directory / JWKS_FILE).read_text())
    assert [k["kid"] for k in document["keys"]] == [ring.active_kid]
    assert "d" not in document["keys"][0]
    assert not [p for p in ring.directory.iterdir() if p.name.endswith(".tmp")]


def test_private_key_is_0600_even_with_umask_zero(ring_dir: Path, permissive_umask: None) -> None:
    ring = GrantKeyRing.create(ring_dir, T0)
    assert _mode(_pem(ring)) == 0o600


def test_kid_is_the_rfc7638_thumbprint(ring: GrantKeyRing) -> None:
    key = ring.signing_key()
    assert key.kid == ring.active_kid == jwk_thumbprint(key.public_key())


def test_jwks_has_exactly_the_standard_members(ring: GrantKeyRing) -> None:
    (jwk,) = ring.jwks(T0)["keys"]
    assert jwk == {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": b64url_encode(ring.signing_key().public_key().public_bytes_raw()),
        "kid": ring.active_kid,
        "alg": "EdDSA",
        "use": "sig",
    }


def test_load_round_trips(ring: GrantKeyRing) -> None:
    loaded = GrantKeyRing.load(ring.directory)
    assert loaded.active_kid == ring.active_kid
    assert loaded.jwks(T0) == ring.jwks(T0)
    message = b"grant"
    signature = loaded.signing_key().private_key.sign(message)
    ring.verification_keys(T0)[ring.active_kid].verify(signature, message)


def test_create_refuses_an_existing_ring(ring: GrantKeyRing) -> None:
    with pytest.raises(SigningKeyError, match="already exists"):
        GrantKeyRing.create(ring.directory, T0)


def test_load_without_a_ring_fails(tmp_path: Path) -> None:
    with pytest.raises(SigningKeyError, match="no grant key ring"):
        GrantKeyRing.load(tmp_path)


# -- fail-closed rule 5: the private key ------------------------------------------------


def test_missing_private_key(ring: GrantKeyRing) -> None:
    _pem(ring).unlink()
    with pytest.raises(SigningKeyError, match="unreadable"):
        GrantKeyRing.load(ring.directory).signing_key()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o602])
def test_too_open_private_key(ring: GrantKeyRing, mode: int) -> None:
    _pem(ring).chmod(mode)
    with pytest.raises(SigningKeyError, match=f"permissions {mode:04o}"):
        GrantKeyRing.load(ring.directory).signing_key()


def test_corrupted_private_key(ring: GrantKeyRing) -> None:
    pem = _pem(ring)
    data = bytearray(pem.read_bytes())
    data[40] ^= 0x01
    pem.write_bytes(bytes(data))
    with pytest.raises(SigningKeyError, match=r"malformed|does not match"):
        GrantKeyRing.load(ring.directory).signing_key()


def test_garbage_private_key(ring: GrantKeyRing) -> None:
    _pem(ring).write_bytes(b"not a key")
    with pytest.raises(SigningKeyError, match="malformed"):
        GrantKeyRing.load(ring.directory).signing_key()


def test_private_key_of_another_kid(ring: GrantKeyRing) -> None:
    other = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _pem(ring).write_bytes(other)
    with pytest.raises(SigningKeyError, match="does not match kid"):
        GrantKeyRing.load(ring.directory).signing_key()


def test_non_ed25519_private_key(ring: GrantKeyRing) -> None:
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _pem(ring).write_bytes(other)
    with pytest.raises(SigningKeyError, match="not an Ed25519 key"):
        GrantKeyRing.load(ring.directory).signing_key()


def test_symlinked_private_key_is_refused(ring: GrantKeyRing, tmp_path: Path) -> None:
    pem = _pem(ring)
    elsewhere = tmp_path / "moved.pem"
    pem.rename(elsewhere)
    pem.symlink_to(elsewhere)
    with pytest.raises(SigningKeyError, match="unreadable"):
        GrantKeyRing.load(ring.directory).signing_key()


def test_private_key_that_is_a_directory(ring: GrantKeyRing) -> None:
    pem = _pem(ring)
    pem.unlink()
    pem.mkdir(mode=0o700)
    with pytest.raises(SigningKeyError, match="not a regular file"):
        GrantKeyRing.load(ring.directory).signing_key()


# -- the JWKS file ---------------------------------------------------------------------


def _rewrite_jwks(ring: GrantKeyRing, change: Any) -> None:
    path = ring.directory / JWKS_FILE
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["keys"][0].update(kid="other"), "not the key's RFC 7638 thumbprint"),
        (lambda d: d["keys"][0].update(x="AAAA"), "malformed Ed25519 public key"),
        (lambda d: d["keys"][0].pop("clearance"), "missing 'clearance' metadata"),
        (lambda d: d["keys"][0]["clearance"].update(created="x"), "malformed 'clearance'"),
        (lambda d: d["keys"][0]["clearance"].update(retired=1.0), "malformed 'clearance'"),
        (lambda d: d["keys"][0].update(kty="RSA"), "only Ed25519 keys"),
        (lambda d: d.pop("keys"), "not a JWK Set"),
        (lambda d: d["keys"].append(dict(d["keys"][0])), "2 active keys"),
        (
            lambda d: d["keys"][0]["clearance"].update(retired=T0 + 1, expires=T0 + 2),
            "0 active keys",
        ),
        # A retired key that was never active (retired at or before its creation).
        (
            lambda d: d["keys"][0]["clearance"].update(retired=T0, expires=T0 + 60),
            "never active",
        ),
        (
            lambda d: d["keys"][0]["clearance"].update(retired=T0 - 10, expires=T0 + 60),
            "never active",
        ),
        (lambda d: d.update(keys=[]), "0 active keys"),
    ],
)
def test_malformed_jwks_file(ring: GrantKeyRing, change: Any, message: str) -> None:
    _rewrite_jwks(ring, change)
    with pytest.raises(SigningKeyError, match=message):
        GrantKeyRing.load(ring.directory)


def test_unparseable_jwks_file(ring: GrantKeyRing) -> None:
    (ring.directory / JWKS_FILE).write_text("{")
    with pytest.raises(SigningKeyError, match="cannot read"):
        GrantKeyRing.load(ring.directory)


# -- rotation --------------------------------------------------------------------------


def test_rotation_retires_the_old_key_until_grants_it_signed_expire(ring: GrantKeyRing) -> None:
    old = ring.signing_key()
    new = ring.rotate(T0 + 100, max_grant_lifetime=60)
    assert new.kid != old.kid
    assert ring.active_kid == new.kid
    assert _mode(ring.directory / f"{new.kid}.pem") == 0o600
    assert not (ring.directory / f"{old.kid}.pem").exists()

    expires = T0 + 100 + 60 + ROTATION_LEEWAY
    for view in (ring, GrantKeyRing.load(ring.directory)):
        assert set(view.verification_keys(expires - 0.001)) == {old.kid, new.kid}
        assert [k["kid"] for k in view.jwks(expires - 0.001)["keys"]] == [new.kid, old.kid]
        assert set(view.verification_keys(expires)) == {new.kid}
        assert [k["kid"] for k in view.jwks(expires)["keys"]] == [new.kid]
    assert GrantKeyRing.load(ring.directory).signing_key().kid == new.kid


def test_signature_by_retired_key_verifies_with_published_keys(ring: GrantKeyRing) -> None:
    old = ring.signing_key()
    signature = old.private_key.sign(b"payload")
    ring.rotate(T0 + 1, max_grant_lifetime=30)
    published = keys_from_jwks(GrantKeyRing.load(ring.directory).jwks(T0 + 30))
    published[old.kid].verify(signature, b"payload")


def test_second_rotation_prunes_expired_keys_from_the_file(ring: GrantKeyRing) -> None:
    first = ring.active_kid
    second = ring.rotate(T0 + 10, max_grant_lifetime=30).kid
    third = ring.rotate(T0 + 1000, max_grant_lifetime=30).kid
    stored = json.loads((ring.directory / JWKS_FILE).read_text())
    assert [k["kid"] for k in stored["keys"]] == [third, second]
    assert first not in ring.verification_keys(T0 + 1000)
    assert sorted(p.name for p in ring.directory.glob("*.pem")) == [f"{third}.pem"]


def test_rotation_by_a_stale_ring_keeps_the_other_rotation(ring: GrantKeyRing) -> None:
    first = ring.active_kid
    stale = GrantKeyRing.load(ring.directory)
    middle = ring.rotate(T0 + 1, max_grant_lifetime=30).kid
    newest = stale.rotate(T0 + 2, max_grant_lifetime=30).kid
    reloaded = GrantKeyRing.load(ring.directory)
    assert reloaded.active_kid == newest
    assert set(reloaded.verification_keys(T0 + 2)) == {first, middle, newest}


@pytest.mark.parametrize(
    ("now", "lifetime"), [(float("nan"), 30.0), (T0, 0.0), (T0, -1.0), (T0, float("inf"))]
)
def test_rotation_rejects_bad_arguments(ring: GrantKeyRing, now: float, lifetime: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        ring.rotate(now, max_grant_lifetime=lifetime)


# -- keys_from_jwks --------------------------------------------------------------------


def test_keys_from_jwks_round_trips(ring: GrantKeyRing) -> None:
    keys = keys_from_jwks(json.loads(json.dumps(ring.jwks(T0))))
    assert list(keys) == [ring.active_kid]
    assert keys[ring.active_kid].public_bytes_raw() == (
        ring.signing_key().public_key().public_bytes_raw()
    )


def _rsa_jwk() -> dict[str, Any]:
    numbers = rsa.generate_private_key(65537, 2048).public_key().public_numbers()
    n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
    return {"kty": "RSA", "n": b64url_encode(n), "e": "AQAB", "kid": "r", "alg": "RS256"}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda k: _rsa_jwk(), "only Ed25519 keys"),
        (lambda k: {**k, "kty": "EC", "crv": "P-256"}, "only Ed25519 keys"),
        (lambda k: {"kty": "oct", "k": "c2VjcmV0", "kid": "h"}, "only Ed25519 keys"),
        (lambda k: {**k, "crv": "X25519"}, "only Ed25519 keys"),
        (lambda k: {**k, "alg": "RS256"}, "alg must be EdDSA"),
        (lambda k: {**k, "use": "enc"}, "use must be sig"),
        (lambda k: {**k, "d": RFC8037_D}, "must not contain a private key"),
        (lambda k: {**k, "x": k["x"][:-2]}, "malformed Ed25519 public key"),
        (lambda k: {**k, "x": k["x"] + "="}, "malformed Ed25519 public key"),
        (lambda k: {**k, "kid": ""}, "kid must be a non-empty string"),
        (lambda k: "not a jwk", "must be a JSON object"),
    ],
)
def test_keys_from_jwks_rejects_non_ed25519_or_malformed(
    ring: GrantKeyRing, mutate: Any, message: str
) -> None:
    (jwk,) = ring.jwks(T0)["keys"]
    with pytest.raises(SigningKeyError, match=message):
        keys_from_jwks({"keys": [mutate(jwk)]})


@pytest.mark.parametrize("document", [{}, {"keys": []}, {"keys": "x"}, []])
def test_keys_from_jwks_rejects_empty_sets(document: Any) -> None:
    with pytest.raises(SigningKeyError, match="non-empty 'keys' list"):
        keys_from_jwks(document)


def test_keys_from_jwks_rejects_duplicate_kids(ring: GrantKeyRing) -> None:
    (jwk,) = ring.jwks(T0)["keys"]
    with pytest.raises(SigningKeyError, match="twice"):
        keys_from_jwks({"keys": [jwk, jwk]})


def test_keys_from_jwks_accepts_the_rfc8037_key_without_optional_members() -> None:
    keys = keys_from_jwks({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X, "kid": "k"}]})
    assert jwk_thumbprint(keys["k"]) == RFC8037_KID


@given(
    st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/", max_size=12
    )
)
def test_b64url_decode_accepts_exactly_the_canonical_encodings(text: str) -> None:
    canonical = (
        len(text) % 4 != 1
        and all(c not in "=+/" for c in text)
        and b64url_encode(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))) == text
    )
    if canonical:
        assert b64url_encode(b64url_decode(text)) == text
    else:
        with pytest.raises(ValueError, match="base64url"):
            b64url_decode(text)


# -- the sealed ring (review finding 9: key injection) ------------------------------------

SKEY = "PRIVATE+KEY+clearance.test/home+01020304+AaNeCii32igQJHeWP0BHl10aR4uTO2ArR+8D+/ThKI8W"
SEAL_KEY = sealing.derive_key(SKEY, sealing.JWKS_PURPOSE)


@pytest.fixture
def sealed(ring_dir: Path) -> GrantKeyRing:
    return GrantKeyRing.create(ring_dir, T0, seal_key=SEAL_KEY)


def _document(ring: GrantKeyRing) -> dict[str, Any]:
    return dict(json.loads((ring.directory / JWKS_FILE).read_text()))


def _write_document(ring: GrantKeyRing, document: dict[str, Any]) -> None:
    (ring.directory / JWKS_FILE).write_text(json.dumps(document, indent=2))


def _inject_retired_key(ring: GrantKeyRing) -> tuple[Ed25519PrivateKey, str]:
    """The reported attack: add one's own Ed25519 key to jwks.json as a retired key."""
    attacker = Ed25519PrivateKey.generate()
    jwk = {
        **public_jwk(attacker.public_key()),
        "clearance": {"created": T0 - 100, "retired": T0 - 50, "expires": T0 + 10**9},
    }
    document = _document(ring)
    document["keys"].append(jwk)
    _write_document(ring, document)  # the seal member is kept as it was
    return attacker, str(jwk["kid"])


def test_a_sealed_ring_carries_a_seal_over_its_canonical_json(sealed: GrantKeyRing) -> None:
    import rfc8785

    document = _document(sealed)
    tag = document.pop(SEAL_MEMBER)
    # Recomputed independently of clearance._internal.canonical: RFC 8785 bytes, HMAC-SHA256, hex.
    expected = hmac.new(SEAL_KEY, rfc8785.dumps(document), hashlib.sha256).hexdigest()
    assert tag == expected
    assert sealed.sealed


def test_the_seal_is_never_published(sealed: GrantKeyRing) -> None:
    assert set(sealed.jwks(T0)) == {"keys"}
    assert set(GrantKeyRing.load(sealed.directory, seal_key=SEAL_KEY).jwks(T0)) == {"keys"}


def test_jwks_consumers_ignore_the_seal_member(sealed: GrantKeyRing) -> None:
    # RFC 7517 §5: unknown top-level members are ignored; the file itself is a valid JWKS.
    keys = keys_from_jwks(_document(sealed))
    assert list(keys) == [sealed.active_kid]


def test_a_sealed_ring_loads_with_and_without_its_seal_key(sealed: GrantKeyRing) -> None:
    assert GrantKeyRing.load(sealed.directory, seal_key=SEAL_KEY).active_kid == sealed.active_kid
    assert GrantKeyRing.load(sealed.directory).active_kid == sealed.active_kid  # read-only view


def test_an_injected_retired_key_is_refused_at_load(sealed: GrantKeyRing) -> None:
    _, kid = _inject_retired_key(sealed)
    with pytest.raises(SigningKeyError, match="seal does not verify") as caught:
        GrantKeyRing.load(sealed.directory, seal_key=SEAL_KEY)
    message = caught.value.diagnostics()
    assert "modified outside clearance" in message
    assert "clearance keys seal" in message
    # Without the seal this is exactly what the gate used to trust:
    assert kid in GrantKeyRing.load(sealed.directory).verification_keys(T0)


def test_a_removed_seal_is_refused(sealed: GrantKeyRing) -> None:
    document = _document(sealed)
    del document[SEAL_MEMBER]
    _write_document(sealed, document)
    with pytest.raises(SigningKeyError, match=r"not sealed .*older version.*clearance keys seal"):
        GrantKeyRing.load(sealed.directory, seal_key=SEAL_KEY)


@pytest.mark.parametrize(
    "change",
    [
        # Change the last hex digit (to "1" when it already is "0": always a change).
        lambda d: d.update(
            {SEAL_MEMBER: d[SEAL_MEMBER][:-1] + ("1" if d[SEAL_MEMBER][-1] == "0" else "0")}
        ),
        lambda d: d.update({SEAL_MEMBER: d[SEAL_MEMBER].upper()}),
        lambda d: d.update({SEAL_MEMBER: 17}),
        lambda d: d.update(
            {SEAL_MEMBER: sealing.seal(sealing.derive_key(SKEY, sealing.SPOOL_PURPOSE), b"x")}
        ),
        lambda d: d["keys"][0]["clearance"].update(created=T0 - 1),
        lambda d: d.update(extra="a member added after sealing"),
    ],
)
def test_an_edited_ring_or_seal_is_refused(sealed: GrantKeyRing, change: Any) -> None:
    document = _document(sealed)
    change(document)
    _write_document(sealed, document)
    with pytest.raises(SigningKeyError, match="seal does not verify"):
        GrantKeyRing.load(sealed.directory, seal_key=SEAL_KEY)


def test_a_ring_sealed_by_another_home_is_refused(sealed: GrantKeyRing) -> None:
    other = sealing.derive_key(SKEY.replace("01020304", "05060708"), sealing.JWKS_PURPOSE)
    with pytest.raises(SigningKeyError, match="seal does not verify"):
        GrantKeyRing.load(sealed.directory, seal_key=other)


def test_duplicate_members_are_refused(sealed: GrantKeyRing) -> None:
    text = (sealed.directory / JWKS_FILE).read_text()
    (sealed.directory / JWKS_FILE).write_text(text.replace("{", '{"keys": [], ', 1))
    with pytest.raises(SigningKeyError, match="duplicate member"):
        GrantKeyRing.load(sealed.directory, seal_key=SEAL_KEY)


def test_a_rotated_sealed_ring_loads_and_verifies_both_keys(sealed: GrantKeyRing) -> None:
    old = sealed.signing_key()
    signature = old.private_key.sign(b"grant")
    new = sealed.rotate(T0 + 10, max_grant_lifetime=30)
    assert SEAL_MEMBER in _document(sealed)
    loaded = GrantKeyRing.load(sealed.directory, seal_key=SEAL_KEY)
    assert loaded.active_kid == new.kid
    keys = loaded.verification_keys(T0 + 20)
    assert set(keys) == {old.kid, new.kid}
    keys[old.kid].verify(signature, b"grant")
    assert [k.active for k in loaded.keys] == [True, False]
    assert loaded.signing_key().kid == new.kid


def test_rotation_refuses_a_tampered_ring(sealed: GrantKeyRing) -> None:
    _inject_retired_key(sealed)
    with pytest.raises(SigningKeyError, match="seal does not verify"):
        sealed.rotate(T0 + 10, max_grant_lifetime=30)
    assert len(list(sealed.directory.glob("*.pem"))) == 1  # nothing was written


def test_a_read_only_view_cannot_unseal_the_ring_by_rotating(sealed: GrantKeyRing) -> None:
    view = GrantKeyRing.load(sealed.directory)
    with pytest.raises(SigningKeyError, match="is sealed"):
        view.rotate(T0 + 10, max_grant_lifetime=30)
    GrantKeyRing.load(sealed.directory, seal_key=SEAL_KEY)  # still sealed and intact


def test_rotation_at_or_before_the_active_keys_creation_is_refused(sealed: GrantKeyRing) -> None:
    for now in (T0, T0 - 1):
        with pytest.raises(SigningKeyError, match="clock behind"):
            sealed.rotate(now, max_grant_lifetime=30)
    assert GrantKeyRing.load(sealed.directory, seal_key=SEAL_KEY).active_kid == sealed.active_kid


def test_refresh_after_an_attacker_edit_fails_closed(sealed: GrantKeyRing) -> None:
    old = sealed.signing_key()
    _inject_retired_key(sealed)
    with pytest.raises(SigningKeyError, match="seal does not verify"):
        sealed.refresh()
    # The ring stops signing until it reads a good file again; the keys it had verified
    # (and only those) still verify grants already issued.
    with pytest.raises(SigningKeyError, match="seal does not verify"):
        sealed.signing_key()
    assert set(sealed.verification_keys(T0)) == {old.kid}
    with pytest.raises(SigningKeyError):
        sealed.refresh()  # every later refresh reads the file again
    GrantKeyRing.reseal(sealed.directory, seal_key=SEAL_KEY)  # the operator's decision
    assert sealed.refresh()
    assert sealed.signing_key().kid == old.kid


def test_a_ring_file_restored_unchanged_after_a_failure_is_read_again(
    sealed: GrantKeyRing,
) -> None:
    jwks = sealed.directory / "jwks.json"
    saved = jwks.read_bytes()
    stat_before = jwks.stat()
    jwks.write_bytes(b"{not json")
    with pytest.raises(SigningKeyError):
        sealed.refresh()
    # Restored byte for byte, with the old times: the stamp matches the one the ring
    # last loaded, but the ring failed since, so it must read the file again.
    jwks.write_bytes(saved)
    os.utime(jwks, ns=(stat_before.st_atime_ns, stat_before.st_mtime_ns))
    assert sealed.refresh()
    assert sealed.signing_key().kid == sealed.active_kid


def test_refresh_picks_up_a_sealed_rotation(sealed: GrantKeyRing) -> None:
    other_process = GrantKeyRing.load(sealed.directory, seal_key=SEAL_KEY)
    new = other_process.rotate(T0 + 1, max_grant_lifetime=30)
    assert sealed.refresh()
    assert sealed.signing_key().kid == new.kid


def test_an_unsealed_ring_from_an_older_version_is_refused_until_sealed(
    ring: GrantKeyRing,
) -> None:
    with pytest.raises(SigningKeyError, match="not sealed"):
        GrantKeyRing.load(ring.directory, seal_key=SEAL_KEY)
    resealed = GrantKeyRing.reseal(ring.directory, seal_key=SEAL_KEY)
    assert resealed.sealed
    assert [k.kid for k in resealed.keys] == [ring.active_kid]
    loaded = GrantKeyRing.load(ring.directory, seal_key=SEAL_KEY)
    assert loaded.active_kid == ring.active_kid
    assert loaded.signing_key().kid == ring.active_kid


def test_reseal_ignores_a_bad_seal_but_validates_everything_else(sealed: GrantKeyRing) -> None:
    _inject_retired_key(sealed)
    resealed = GrantKeyRing.reseal(sealed.directory, seal_key=SEAL_KEY)
    assert len(resealed.keys) == 2  # the operator vouched for both
    document = _document(sealed)
    document["keys"].append(dict(document["keys"][0]))
    _write_document(sealed, document)
    with pytest.raises(SigningKeyError, match="2 active keys"):
        GrantKeyRing.reseal(sealed.directory, seal_key=SEAL_KEY)


def test_reseal_writes_only_what_it_validated(ring: GrantKeyRing) -> None:
    document = _document(ring)
    document["unknown"] = {"smuggled": True}
    _write_document(ring, document)
    GrantKeyRing.reseal(ring.directory, seal_key=SEAL_KEY)
    assert set(_document(ring)) == {"keys", SEAL_MEMBER}


def test_retired_keys_can_be_filtered_but_the_active_key_never_is(
    sealed: GrantKeyRing,
) -> None:
    old = sealed.active_kid
    new = sealed.rotate(T0 + 10, max_grant_lifetime=30).kid
    assert [k["kid"] for k in sealed.jwks(T0 + 11, keep_retired=lambda kid: False)["keys"]] == [new]
    assert set(sealed.verification_keys(T0 + 11, keep_retired=lambda kid: kid == old)) == {
        old,
        new,
    }
    assert set(sealed.verification_keys(T0 + 11, keep_retired=lambda kid: False)) == {new}


@pytest.mark.parametrize("key", [b"", b"too short", "text"])
def test_a_seal_key_must_be_a_real_key(ring_dir: Path, key: Any) -> None:
    with pytest.raises(ValueError, match="seal_key"):
        GrantKeyRing.create(ring_dir, T0, seal_key=key)
