"""``clearance policy validate|test`` and ``clearance keys jwks|rotate``."""

from __future__ import annotations

import json
from pathlib import Path

from clearance.home import Home
from clearance.keys import GrantKeyRing

from .support import Run, assert_clean_error


def test_validate_a_good_bundle_prints_its_digest(cli: Run, home: Home) -> None:
    from clearance.policy.cel_engine import CelPolicyEngine

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
    (key,) = jwks["keys"]
    assert key["kty"] == "OKP"
    assert key["crv"] == "Ed25519"
    assert "d" not in key
    assert key["kid"] == GrantKeyRing.load(home.grant_key_dir).active_kid
    rotated = cli("keys", "rotate", "--home", str(home.path))
    assert rotated.returncode == 0, rotated.stderr
    new_kid = GrantKeyRing.load(home.grant_key_dir).active_kid
    assert new_kid != key["kid"]
    assert new_kid in rotated.stdout
    after = json.loads(cli("keys", "jwks", "--home", str(home.path)).stdout)
    # The retired key stays published until every grant it signed has expired.
    assert {k["kid"] for k in after["keys"]} == {key["kid"], new_kid}


def test_keys_without_a_home_fail_cleanly(cli: Run, tmp_path: Path) -> None:
    err = assert_clean_error(cli("keys", "jwks", "--home", str(tmp_path / "none")))
    assert "no clearance home" in err
