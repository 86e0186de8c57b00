"""``clearance policy validate|test`` and ``clearance keys jwks|rotate|seal``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clearance._internal import entries, sealing
from clearance._internal.grants.jwk import public_jwk
from clearance._internal.grants.keys import JWKS_FILE, SEAL_MEMBER, GrantKeyRing
from clearance._internal.home import Home
from clearance._internal.wiring import open_ledger

from .support import Run, assert_clean_error, write_json


def test_validate_a_good_bundle_prints_its_digest(cli: Run, home: Home) -> None:
    from clearance._internal.policy.cel_engine import CelPolicyEngine

    result = cli("policy", "validate", str(home.policy_dir))
    assert result.returncode == 0, result.stderr
    engine = CelPolicyEngine.from_directory(home.policy_dir)
    assert engine.digest in result.stdout
    assert f"rules   {len(engine.document()['rules'])}" in result.stdout


def test_validate_a_bad_bundle_exits_1_naming_the_problem(cli: Run, tmp_path: Path) -> None:
    bundle = tmp_path / "bad"
    bundle.mkdir()
    (bundle / "p.yaml").write_text(
        "version: 1\nrules:\n  - id: broken\n    effect: allow\n    when: 'args.('\n",
        encoding="utf-8",
    )
    err = assert_clean_error(cli("policy", "validate", str(bundle)), code=1)
    assert "INVALID" in err
    assert "p.yaml" in err
    assert "broken" in err
    missing = cli("policy", "validate", str(tmp_path / "absent"))
    assert "no such directory" in assert_clean_error(missing)


CASES_PASSING = """\
cases:
  - name: reads are allowed
    intent: {principal: "agent:ops-bot", action: read_file, args: {path: notes/a.md}}
    expect: allow
    rules: [files-in-sandbox]
  - name: deletes are denied
    intent: {principal: "agent:ops-bot", action: delete_file, args: {path: notes/a.md}}
    expect: deny
    rules: [no-deletes]
"""

CASES_FAILING = """\
cases:
  - name: deletes are wrongly expected to pass
    intent: {principal: "agent:ops-bot", action: delete_file, args: {path: notes/a.md}}
    expect: allow
"""


def test_policy_test_passes_and_fails(cli: Run, home: Home, tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(CASES_PASSING, encoding="utf-8")
    result = cli("policy", "test", str(home.policy_dir), str(good))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed, 0 failed" in result.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(CASES_FAILING, encoding="utf-8")
    failed = cli("policy", "test", str(home.policy_dir), str(bad))
    assert "1 of 1 policy test cases failed" in assert_clean_error(failed, code=1)
    assert "FAIL" in failed.stdout
    assert "deletes are wrongly expected" in failed.stdout
    assert "expected allow, got deny" in failed.stdout  # the diff
    malformed = tmp_path / "malformed.yaml"
    malformed.write_text("cases:\n  - name: x\n    expect: maybe\n", encoding="utf-8")
    err = assert_clean_error(cli("policy", "test", str(home.policy_dir), str(malformed)))
    assert "malformed.yaml" in err


def test_keys_jwks_and_rotate(cli: Run, home: Home) -> None:
    first = cli("keys", "jwks", "--home", str(home.path))
    assert first.returncode == 0, first.stderr
    jwks = json.loads(first.stdout)
    assert set(jwks) == {"keys"}  # the ring's seal is never published
    (key,) = jwks["keys"]
    assert key["kty"] == "OKP"
    assert key["crv"] == "Ed25519"
    assert "d" not in key
    assert key["kid"] == GrantKeyRing.load(home.grant_key_dir).active_kid
    _log_key(home, key)  # what the gate does when a key first signs a grant
    rotated = cli("keys", "rotate", "--home", str(home.path))
    assert rotated.returncode == 0, rotated.stderr
    new_kid = GrantKeyRing.load(home.grant_key_dir, seal_key=_seal_key(home)).active_kid
    assert new_kid != key["kid"]
    assert new_kid in rotated.stdout
    after = json.loads(cli("keys", "jwks", "--home", str(home.path)).stdout)
    # The retired key stays published until every grant it signed has expired.
    assert {k["kid"] for k in after["keys"]} == {key["kid"], new_kid}


# -- the sealed ring (review finding 9) ----------------------------------------------------


def _seal_key(home: Home) -> bytes:
    return sealing.derive_key(home.read_log_skey(), sealing.JWKS_PURPOSE)


def _log_key(home: Home, jwk: dict[str, Any]) -> None:
    """Append the `key` entry the gate appends before a key signs its first grant."""
    with open_ledger(home) as ledger:
        ledger.append(entries.key_entry(time.time(), jwk["kid"], jwk))


def _jwks_file(home: Home) -> Path:
    return home.grant_key_dir / JWKS_FILE


def _inject_retired_key(home: Home) -> str:
    """The reported attack: add one's own key to keys/grant/jwks.json as a retired key."""
    attacker = Ed25519PrivateKey.generate()
    jwk = {
        **public_jwk(attacker.public_key()),
        "clearance": {"created": 1.0, "retired": 2.0, "expires": 4e9},
    }
    document = json.loads(_jwks_file(home).read_text())
    document["keys"].append(jwk)
    write_json(_jwks_file(home), document)
    return str(jwk["kid"])


def test_init_creates_a_ring_sealed_with_the_log_key(home: Home) -> None:
    document = json.loads(_jwks_file(home).read_text())
    assert SEAL_MEMBER in document
    ring = GrantKeyRing.load(home.grant_key_dir, seal_key=_seal_key(home))
    assert ring.sealed


def test_keys_jwks_leaves_out_a_retired_key_that_never_signed(cli: Run, home: Home) -> None:
    old = GrantKeyRing.load(home.grant_key_dir).active_kid
    assert cli("keys", "rotate", "--home", str(home.path)).returncode == 0
    new = GrantKeyRing.load(home.grant_key_dir).active_kid
    published = json.loads(cli("keys", "jwks", "--home", str(home.path)).stdout)
    assert [k["kid"] for k in published["keys"]] == [new]
    assert old in GrantKeyRing.load(home.grant_key_dir).verification_keys(time.time())


def test_keys_jwks_and_rotate_refuse_a_tampered_ring(cli: Run, home: Home) -> None:
    _inject_retired_key(home)
    before = _jwks_file(home).read_bytes()
    for command in ("jwks", "rotate"):
        result = cli("keys", command, "--home", str(home.path))
        err = assert_clean_error(result)
        assert "seal does not verify" in err
        assert "clearance keys seal" in err
        assert result.stdout == ""  # nothing published, nothing rotated
    assert _jwks_file(home).read_bytes() == before


def test_keys_seal_after_inspection(cli: Run, home: Home) -> None:
    active = GrantKeyRing.load(home.grant_key_dir).active_kid
    injected = _inject_retired_key(home)
    sealed = cli("keys", "seal", "--home", str(home.path))
    assert sealed.returncode == 0, sealed.stderr
    assert active in sealed.stdout
    assert injected in sealed.stdout
    assert "never signed a grant here" in sealed.stdout
    assert "warning" in sealed.stdout
    ring = GrantKeyRing.load(home.grant_key_dir, seal_key=_seal_key(home))
    assert {k.kid for k in ring.keys} == {active, injected}
    # Even once sealed, a retired key the ledger never logged is not published.
    published = json.loads(cli("keys", "jwks", "--home", str(home.path)).stdout)
    assert [k["kid"] for k in published["keys"]] == [active]


def test_keys_seal_upgrades_a_ring_from_an_older_version(cli: Run, home: Home) -> None:
    document = json.loads(_jwks_file(home).read_text())
    del document[SEAL_MEMBER]
    write_json(_jwks_file(home), document)
    assert "not sealed" in assert_clean_error(cli("keys", "jwks", "--home", str(home.path)))
    sealed = cli("keys", "seal", "--home", str(home.path))
    assert sealed.returncode == 0, sealed.stderr
    assert "warning" not in sealed.stdout
    assert cli("keys", "jwks", "--home", str(home.path)).returncode == 0


def test_keys_seal_refuses_a_malformed_ring(cli: Run, home: Home) -> None:
    document = json.loads(_jwks_file(home).read_text())
    document["keys"].append(dict(document["keys"][0]))  # two active keys
    write_json(_jwks_file(home), document)
    assert "2 active keys" in assert_clean_error(cli("keys", "seal", "--home", str(home.path)))


def test_keys_without_a_home_fail_cleanly(cli: Run, tmp_path: Path) -> None:
    err = assert_clean_error(cli("keys", "jwks", "--home", str(tmp_path / "none")))
    assert "no clearance home" in err
