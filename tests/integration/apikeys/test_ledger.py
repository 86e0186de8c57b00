"""API keys and the ledger: ``apikey`` entries for creation and revocation (never a secret),
failure ordering, a log that still verifies, and a CLI appending while a gate holds the
same ledger open in another process."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from typing import Any, cast

import pytest

from clearance._internal.apikeys import ApiKeyStore, api_keys_path
from clearance._internal.apikeys import tokens as apikey_tokens
from clearance._internal.gate.core import Gate
from clearance._internal.home import Home
from clearance._internal.intent import Intent
from clearance._internal.ledger.store import LedgerStore
from clearance._internal.wiring import open_gate, open_ledger
from clearance.errors import Conflict, LedgerError, Unauthenticated

PRINCIPAL = "agent:ops-bot"  # the example bundle's principal


def clearance(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clearance", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def log_verifies(home: Home) -> None:
    result = clearance("log", "verify", "--home", str(home.path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


class FailingLedger:
    """The home's real ledger, except that appends fail while ``failing`` is set."""

    def __init__(self, inner: LedgerStore) -> None:
        self.inner = inner
        self.failing = True

    def append(self, entry: Any, **kwargs: Any) -> int:
        if self.failing:
            raise LedgerError("ledger unavailable (test)")
        return self.inner.append(entry, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def apikey_entries(ledger: LedgerStore, name: str) -> list[dict[str, Any]]:
    return [dict(ledger.prove(e).entry) for e in ledger.find("apikey", name)]


def test_creation_and_revocation_are_ledger_entries_without_secrets(home: Home) -> None:
    with (
        open_ledger(home) as ledger,
        ApiKeyStore.open(api_keys_path(home.path), ledger=ledger) as store,
    ):
        token, key = store.create(
            "billing", scopes=["auditor", "agent"], principal="agent:billing-bot", expires_in=60
        )
        store.revoke("billing")
        created, revoked = apikey_entries(ledger, "billing")
        assert ledger.find("apikey", "nobody") == []
    common = {
        "type": "apikey",
        "v": 1,
        "name": "billing",
        "key_id": key.key_id,
        "scopes": ["agent", "auditor"],
        "principal": "agent:billing-bot",
    }
    assert {k: created[k] for k in common} == common
    assert {k: revoked[k] for k in common} == common
    assert (created["event"], revoked["event"]) == ("created", "revoked")
    assert set(created) == {*common, "at", "event", "expires_at"}
    assert created["expires_at"].endswith("Z")
    assert token not in json.dumps([created, revoked])
    log_verifies(home)


def test_no_secret_or_hash_is_stored_anywhere_in_the_home(home: Home) -> None:
    with (
        open_ledger(home) as ledger,
        ApiKeyStore.open(api_keys_path(home.path), ledger=ledger) as store,
    ):
        made = [store.create(f"k{i}", scopes=["agent"], principal=PRINCIPAL) for i in range(3)]
        for token, _ in made:
            store.authenticate(token)  # writes last_used_at too
        store.revoke("k1")
        with ApiKeyStore.open(api_keys_path(home.path)) as other:
            other.revoke("k2")  # no ledger: a revocation its entry is still owed for
    files = {p: p.read_bytes() for p in home.path.rglob("*") if p.is_file()}
    key_files = b"".join(v for p, v in files.items() if p.name.startswith("apikeys.db"))
    for token, _ in made:
        secret = token[21:]
        raw = base64.urlsafe_b64decode(secret + "=")
        for path, data in files.items():
            for needle in (token.encode(), secret.encode(), raw):
                assert needle not in data, (path, needle)
            if not path.name.startswith("apikeys.db"):
                assert apikey_tokens.digest(token) not in data, path
        assert apikey_tokens.digest(token) in key_files  # what the store does keep


def test_a_failed_creation_entry_leaves_no_key(home: Home) -> None:
    with open_ledger(home) as ledger:
        failing = FailingLedger(ledger)
        path = api_keys_path(home.path)
        with ApiKeyStore.open(path, ledger=cast(LedgerStore, failing)) as store:
            with pytest.raises(LedgerError, match="unavailable"):
                store.create("k", scopes=["agent"], principal=PRINCIPAL)
            assert store.list() == []
            failing.failing = False
            token, _ = store.create("k", scopes=["agent"], principal=PRINCIPAL)
            assert store.authenticate(token).name == "k"
        assert [e["event"] for e in apikey_entries(ledger, "k")] == ["created"]


def test_a_failed_revocation_entry_still_revokes_and_is_written_on_retry(home: Home) -> None:
    with open_ledger(home) as ledger:
        failing = FailingLedger(ledger)
        failing.failing = False
        path = api_keys_path(home.path)
        with ApiKeyStore.open(path, ledger=cast(LedgerStore, failing)) as store:
            token, _ = store.create("k", scopes=["agent"], principal=PRINCIPAL)
            store.authenticate(token)
            failing.failing = True
            with pytest.raises(LedgerError, match=r"IS revoked.*run the revocation again"):
                store.revoke("k")
            with pytest.raises(Unauthenticated):
                store.authenticate(token)  # fail closed: revoked without its entry
            revoked_at = store.get("k").revoked_at
            assert revoked_at is not None
            failing.failing = False
            assert store.revoke("k").revoked_at == revoked_at  # writes the owed entry
            with pytest.raises(Conflict, match="already revoked"):
                store.revoke("k")
        events = apikey_entries(ledger, "k")
    assert [e["event"] for e in events] == ["created", "revoked"]
    log_verifies(home)


# --- a CLI appending while a gate in another process holds the ledger -----------------


def governed(gate: Gate, n: int) -> bool:
    """One governed call the example bundle allows; False when the gate refused it (then
    the body did not run)."""
    ran: list[bool] = []
    intent = Intent.from_json(
        {"principal": PRINCIPAL, "action": "read_file", "args": {"path": f"notes/{n}.txt"}}
    )
    try:
        with gate.trace("api key test", bounds={"spend_cap": 10}), gate.clearance(intent) as c:
            ran.append(True)
            c.record_result({"ok": True})
    except LedgerError:
        assert ran == [], "a call the ledger refused ran its body"
        return False
    return True


def _cli_writes_while_gate_is_open(home: Home) -> list[bool]:
    """Governed calls around a CLI create and revoke; returns each call's success."""
    results: list[bool] = []
    gate = open_gate(home.path, principal=PRINCIPAL, durability="relaxed")
    try:
        results += [governed(gate, n) for n in range(2)]
        made = clearance(
            "api-keys", "create", "cli-key", "--scope", "agent", "--principal", PRINCIPAL,
            "--home", str(home.path), "--json",
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        created = json.loads(made.stdout)
        assert isinstance(created["ledger_index"], int)
        results += [governed(gate, n) for n in range(2, 5)]
        revoked = clearance("api-keys", "revoke", "cli-key", "--home", str(home.path))
        assert revoked.returncode == 0, revoked.stderr
        results += [governed(gate, n) for n in range(5, 8)]
        events = [e.entry["event"] for e in gate.ledger.find("apikey", "cli-key")]
        assert events == ["created", "revoked"]  # the gate's store adopted the CLI's rows
        store = ApiKeyStore.open(api_keys_path(home.path))
        with store, pytest.raises(Unauthenticated):
            store.authenticate(created["key"])
    finally:
        gate.close()
    return results


def test_the_cli_appends_safely_while_a_gate_holds_the_ledger(home: Home) -> None:
    results = _cli_writes_while_gate_is_open(home)
    # Both processes keep appending: the gate loses at most the one append that met each
    # foreign write (refused, fail closed: the body did not run), never more.
    assert results[:2] == [True, True]
    assert results[3:5] == [True, True]
    assert results[6:] == [True, True]
    log_verifies(home)


def test_a_gate_loses_no_call_to_a_cli_append(home: Home) -> None:
    results = _cli_writes_while_gate_is_open(home)
    assert all(results), results
