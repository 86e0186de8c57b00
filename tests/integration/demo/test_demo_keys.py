"""The demo's API keys: created with the real store once, reused after, repaired when broken.

No server runs here: the keys are made and checked with the real key store and ledger.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from clearance._demo.keys import ROLES, demo_keys, keys_dir
from clearance._internal.apikeys import ApiKeyStore, api_keys_path
from clearance._internal.home import Home, init_home
from clearance._internal.wiring import open_ledger


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return init_home(tmp_path / "home", now=time.time())


def _apikey_entries(home: Home) -> list[tuple[str, str]]:
    with open_ledger(home) as ledger:
        return [
            (str(e.entry["event"]), str(e.entry["name"]))
            for e in ledger.scan()
            if e.entry.get("type") == "apikey"
        ]


def test_keys_are_created_once_then_reused(home: Home) -> None:
    made = demo_keys(home)
    assert [k.role for k in made.values()] == [r.role for r in ROLES]
    assert not any(k.reused for k in made.values())
    with ApiKeyStore.open(api_keys_path(home.path)) as store:
        for role in ROLES:
            stored = store.authenticate(made[role.role].token)
            assert (stored.principal, stored.scopes) == (role.principal, role.scopes)
    assert keys_dir(home).stat().st_mode & 0o777 == 0o700
    for key in made.values():
        assert key.path.stat().st_mode & 0o777 == 0o600
        assert key.path.read_text("ascii").strip() == key.token
        assert key.token not in repr(key)
        assert key.token not in str(key.to_json())
        assert key.hint == f"clk_{key.key_id}_…"
    again = demo_keys(home)
    assert all(k.reused for k in again.values())
    assert {k.key_id for k in again.values()} == {k.key_id for k in made.values()}
    # Created once: one `apikey` entry per key, none for the reuse.
    assert _apikey_entries(home) == [("created", r.name) for r in ROLES]


def test_a_revoked_key_is_replaced_under_a_new_name(home: Home) -> None:
    made = demo_keys(home)
    with (
        open_ledger(home) as ledger,
        ApiKeyStore.open(api_keys_path(home.path), ledger=ledger) as store,
    ):
        store.revoke(made["agent"].name)
    again = demo_keys(home)
    assert again["agent"].name == "demo-agent-2"
    assert not again["agent"].reused
    assert again["agent"].key_id != made["agent"].key_id
    assert again["agent"].path.read_text("ascii").strip() == again["agent"].token
    assert all(again[r].reused for r in ("orchestrator", "approver", "tool"))
    assert _apikey_entries(home)[-2:] == [("revoked", "demo-agent"), ("created", "demo-agent-2")]


def test_a_wrong_or_damaged_secret_file_gets_a_new_key(home: Home) -> None:
    made = demo_keys(home)
    # The agent's (valid) secret in the approver's file: it authenticates, but as the
    # wrong principal with the wrong scope, so it must not be used as the approver.
    made["approver"].path.write_text(made["agent"].token + "\n", encoding="ascii")
    made["tool"].path.write_text("not a key\n", encoding="ascii")
    made["orchestrator"].path.unlink()
    again = demo_keys(home)
    assert again["approver"].principal == "user:demo-approver"
    assert again["approver"].name == "demo-approver-2"
    assert again["tool"].name == "demo-payments-service-2"
    assert again["orchestrator"].name == "demo-orchestrator-2"
    assert again["agent"].reused
    with ApiKeyStore.open(api_keys_path(home.path)) as store:
        assert store.authenticate(again["approver"].token).scopes == frozenset({"approver"})
