"""``clearance api-keys create|list|revoke`` as a real process: output, the key shown once,
ledger entries, and clean errors."""

from __future__ import annotations

import json
import re

import pytest

from clearance._internal.apikeys import ApiKeyStore, api_keys_path
from clearance._internal.home import Home
from clearance.errors import Unauthenticated

from .support import Run, assert_clean_error

TOKEN = re.compile(r"clk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}")


def test_create_prints_the_key_once_and_list_never_shows_it(cli: Run, home: Home) -> None:
    made = cli(
        "api-keys", "create", "billing", "--scope", "agent", "--scope", "auditor",
        "--principal", "agent:billing-bot", "--expires", "30d", "--home", str(home.path),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    tokens = TOKEN.findall(made.stdout)
    assert len(tokens) == 1
    token = tokens[0]
    assert f"\n{token}\n" in made.stdout  # on a line of its own, never folded
    assert "shown only once" in made.stdout
    assert "agent, auditor" in made.stdout
    assert "agent:billing-bot" in made.stdout
    with ApiKeyStore.open(api_keys_path(home.path)) as store:
        key = store.authenticate(token)
        assert key.name == "billing"
        assert key.scopes == {"agent", "auditor"}
        assert key.expires_at is not None
        assert key.expires_at - key.created_at == 30 * 86400

    listed = cli("api-keys", "list", "--home", str(home.path))
    assert listed.returncode == 0, listed.stderr
    assert "billing" in listed.stdout
    assert "agent:billing-bot" in listed.stdout
    assert "active" in listed.stdout
    assert token[21:] not in listed.stdout
    assert "clk_" not in listed.stdout

    as_json = cli("api-keys", "list", "--json", "--home", str(home.path))
    (row,) = json.loads(as_json.stdout)
    assert row["name"] == "billing"
    assert row["status"] == "active"
    assert row["last_used_at"] is not None  # authenticated above
    assert "key" not in row
    assert "clk_" not in as_json.stdout


def test_json_creation_generated_names_and_the_name_option(cli: Run, home: Home) -> None:
    generated = cli(
        "api-keys", "create", "--scope", "admin", "--principal", "user:alice",
        "--json", "--home", str(home.path),
    )  # fmt: skip
    assert generated.returncode == 0, generated.stderr
    document = json.loads(generated.stdout)
    assert re.fullmatch(r"key-[0-9a-f]{8}", document["name"])
    assert TOKEN.fullmatch(document["key"])
    assert document["scopes"] == ["admin"]
    assert document["expires_at"] is None
    assert isinstance(document["ledger_index"], int)
    assert "shown only once" in document["warning"]

    named = cli(
        "api-keys", "create", "--name", "approver-1", "--scope", "approver",
        "--principal", "user:bob", "--expires", "12h", "--json", "--home", str(home.path),
    )  # fmt: skip
    assert named.returncode == 0, named.stderr
    assert json.loads(named.stdout)["name"] == "approver-1"

    revoked = cli("api-keys", "revoke", "approver-1", "--json", "--home", str(home.path))
    assert revoked.returncode == 0, revoked.stderr
    assert json.loads(revoked.stdout)["status"] == "revoked"
    listed = json.loads(cli("api-keys", "list", "--json", "--home", str(home.path)).stdout)
    assert {r["name"]: r["status"] for r in listed} == {
        document["name"]: "active",
        "approver-1": "revoked",
    }
    with ApiKeyStore.open(api_keys_path(home.path)) as store, pytest.raises(Unauthenticated):
        store.authenticate(json.loads(named.stdout)["key"])

    shown = cli("log", "show", "--json", "--home", str(home.path))
    entries = [e for e in json.loads(shown.stdout) if e["entry"]["type"] == "apikey"]
    assert [(e["entry"]["name"], e["entry"]["event"]) for e in entries] == [
        (document["name"], "created"),
        ("approver-1", "created"),
        ("approver-1", "revoked"),
    ]
    assert "clk_" not in shown.stdout
    verified = cli("log", "verify", "--home", str(home.path))
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_revoke_prints_when_and_the_ledger_entry(cli: Run, home: Home) -> None:
    cli("api-keys", "create", "k", "--scope", "agent", "--principal", "agent:x",
        "--home", str(home.path))  # fmt: skip
    revoked = cli("api-keys", "revoke", "k", "--home", str(home.path))
    assert revoked.returncode == 0, revoked.stderr
    assert "Revoked API key 'k'" in revoked.stdout
    assert "within a second" in revoked.stdout
    assert "ledger     entry 1" in revoked.stdout
    again = assert_clean_error(cli("api-keys", "revoke", "k", "--home", str(home.path)))
    assert "already revoked" in again
    listed = cli("api-keys", "list", "--home", str(home.path))
    assert "revoked" in listed.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--principal", "agent:x"], "at least one --scope"),
        (["--scope", "agnt", "--principal", "agent:x"], "unknown scope 'agnt'"),
        (["--scope", "agent"], "give --principal"),
        (["--scope", "agent", "--principal", "agent x"], "principal 'agent x' is invalid"),
        (["--scope", "agent", "--principal", "a", "--expires", "0d"], "positive"),
        (["--scope", "agent", "--principal", "a", "--expires", "1y"], "not a duration"),
        (["--scope", "agent", "--principal", "a", "--expires", "-5s"], "not a duration"),
        (["Bad_Name", "--scope", "agent", "--principal", "a"], "name 'Bad_Name' is invalid"),
        (["a", "--name", "b", "--scope", "agent", "--principal", "a"], "two names"),
    ],
)
def test_create_errors_are_clean_and_create_nothing(
    cli: Run, home: Home, args: list[str], words: str
) -> None:
    stderr = assert_clean_error(cli("api-keys", "create", *args, "--home", str(home.path)))
    assert words in stderr
    assert not api_keys_path(home.path).exists()  # refused before anything was opened


def test_duplicate_and_unknown_names_and_a_missing_home(cli: Run, home: Home) -> None:
    base = ["--scope", "agent", "--principal", "agent:x", "--home", str(home.path)]
    assert cli("api-keys", "create", "dup", *base).returncode == 0
    stderr = assert_clean_error(cli("api-keys", "create", "dup", *base))
    assert "already exists" in stderr
    stderr = assert_clean_error(cli("api-keys", "revoke", "nope", "--home", str(home.path)))
    assert "no API key named 'nope'" in stderr
    stderr = assert_clean_error(cli("api-keys", "list", "--home", str(home.path / "missing")))
    assert "clearance init" in stderr


def test_an_empty_list_says_how_to_create_a_key(cli: Run, home: Home) -> None:
    listed = cli("api-keys", "list", "--home", str(home.path))
    assert listed.returncode == 0, listed.stderr
    assert "no API keys" in listed.stdout
    assert json.loads(cli("api-keys", "list", "--json", "--home", str(home.path)).stdout) == []
