"""The API key store on real SQLite files: create, authenticate, revoke, expire, cache,
last use, validation and the file itself (private, versioned, hash-only)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clearance._internal.apikeys import ApiKeyStore
from clearance._internal.apikeys.store import CACHE_TTL, TOUCH_INTERVAL
from clearance.errors import Conflict, InputError, LedgerError, NotFound, Unauthenticated

from .conftest import T0, FixedClock

PRINCIPAL = "agent:billing-bot"


def refused(store: ApiKeyStore, presented: object) -> None:
    """``presented`` does not authenticate, with the one opaque message."""
    with pytest.raises(Unauthenticated) as caught:
        store.authenticate(presented)  # type: ignore[arg-type]
    assert str(caught.value) == "invalid API key"


# --- round trip ------------------------------------------------------------------------


def test_a_created_key_authenticates_as_itself(store: ApiKeyStore) -> None:
    token, key = store.create("billing", scopes=["agent"], principal=PRINCIPAL, expires_in=3600)
    assert key.name == "billing"
    assert key.scopes == {"agent"}
    assert key.principal == PRINCIPAL
    assert key.created_at == T0
    assert key.expires_at == T0 + 3600
    assert key.revoked_at is None
    assert token.startswith(f"clk_{key.key_id}_")
    got = store.authenticate(token)
    assert (got.name, got.key_id, got.scopes, got.principal) == (
        "billing",
        key.key_id,
        frozenset({"agent"}),
        PRINCIPAL,
    )
    assert store.get("billing").key_id == key.key_id
    assert [k.name for k in store.list()] == ["billing"]


def test_each_key_authenticates_only_as_itself(store: ApiKeyStore, clock: FixedClock) -> None:
    token_a, a = store.create("a", scopes=["agent"], principal="agent:a")
    clock.advance(1)
    token_b, b = store.create("b", scopes=["admin"], principal="user:b")
    assert store.authenticate(token_a).name == "a"
    assert store.authenticate(token_b).name == "b"
    assert [k.name for k in store.list()] == ["a", "b"]
    # A's id with B's secret, and the other way round: neither is anyone.
    refused(store, token_a[:21] + token_b[21:])
    refused(store, token_b[:21] + token_a[21:])
    assert a.key_id != b.key_id


def test_a_wrong_secret_is_refused(store: ApiKeyStore) -> None:
    token, _ = store.create("k", scopes=["agent"], principal=PRINCIPAL)
    store.authenticate(token)  # cached now: the cache must compare secrets too
    for position in (21, 40, len(token) - 2):
        flipped = "B" if token[position] != "B" else "C"
        refused(store, token[:position] + flipped + token[position + 1 :])


def test_a_tampered_key_id_is_refused(store: ApiKeyStore) -> None:
    token, key = store.create("k", scopes=["agent"], principal=PRINCIPAL)
    other = "0123456789abcdef" if key.key_id != "0123456789abcdef" else "fedcba9876543210"
    refused(store, token.replace(key.key_id, other, 1))
    refused(store, token.replace(key.key_id, "0" * 16, 1))  # the decoy id


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "clk_",
        "Bearer clk_0123456789abcdef_AAAA",
        "clk_0123456789abcdef_" + "A" * 42,
        "clk_0000000000000000_" + "A" * 43,  # the decoy: well formed, never issued
        "x" * 100_000,
        None,
        b"clk_",
        42,
    ],
)
def test_malformed_tokens_are_refused_opaquely(store: ApiKeyStore, presented: object) -> None:
    store.create("k", scopes=["agent"], principal=PRINCIPAL)
    refused(store, presented)


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ApiKeyStore, str]]:
    """One store with one key, shared by the property tests (hypothesis runs many examples)."""
    path = tmp_path_factory.mktemp("keyed") / "apikeys.db"
    with ApiKeyStore.open(path) as opened:
        token, _ = opened.create("k", scopes=["admin"], principal="user:root")
        yield opened, token


@given(presented=st.text(max_size=120))
def test_arbitrary_strings_never_authenticate(
    keyed: tuple[ApiKeyStore, str], presented: str
) -> None:
    store, token = keyed
    if presented != token:
        refused(store, presented)


@given(
    position=st.integers(min_value=0, max_value=63),
    replacement=st.characters(codec="utf-8"),
)
def test_no_single_character_change_of_a_key_authenticates(
    keyed: tuple[ApiKeyStore, str], position: int, replacement: str
) -> None:
    store, token = keyed
    changed = token[:position] + replacement + token[position + 1 :]
    if changed != token:
        refused(store, changed)
    assert store.authenticate(token).name == "k"


# --- expiry, revocation and the cache -----------------------------------------------------


def test_a_key_expires_at_its_expiry_even_when_cached(
    store: ApiKeyStore, clock: FixedClock
) -> None:
    token, _ = store.create("k", scopes=["agent"], principal=PRINCIPAL, expires_in=10)
    clock.advance(9.999)
    assert store.authenticate(token).name == "k"  # verified and cached
    clock.advance(0.001)
    refused(store, token)
    assert store.get("k").status(clock()) == "expired"
    assert store.list()[0].status(clock()) == "expired"


def test_a_revoked_key_is_refused_at_once_by_its_own_store(store: ApiKeyStore) -> None:
    token, _ = store.create("k", scopes=["agent"], principal=PRINCIPAL)
    store.authenticate(token)  # cached
    revoked = store.revoke("k")
    assert revoked.revoked_at == T0
    refused(store, token)
    assert store.get("k").revoked_at == T0


def test_a_verified_key_is_cached_for_at_most_a_second(tmp_path: Path) -> None:
    path = tmp_path / "apikeys.db"
    with ApiKeyStore.open(path) as store:
        token, _ = store.create("k", scopes=["agent"], principal=PRINCIPAL)
        fetched = time.monotonic()
        store.authenticate(token)
        # Someone removes the row behind the store's back: the cache still answers...
        with sqlite3.connect(path) as conn:
            conn.execute("DELETE FROM api_keys")
        conn.close()
        if time.monotonic() - fetched < CACHE_TTL / 2:
            assert store.authenticate(token).name == "k"
        # ...but never for longer than CACHE_TTL after it read the row.
        time.sleep(max(0.0, fetched + CACHE_TTL - time.monotonic()) + 0.01)
        refused(store, token)


_REVOKER = """
import sys
from pathlib import Path
from clearance._internal.apikeys import ApiKeyStore
with ApiKeyStore.open(Path(sys.argv[1])) as store:
    print("ready", flush=True)
    sys.stdin.readline()
    store.revoke(sys.argv[2])
    print("revoked", flush=True)
"""


def test_a_revocation_by_another_process_is_seen_within_a_second(tmp_path: Path) -> None:
    path = tmp_path / "apikeys.db"
    with ApiKeyStore.open(path) as server, ApiKeyStore.open(path, cache_ttl=0) as uncached:
        token, _ = server.create("k", scopes=["agent"], principal=PRINCIPAL)
        revoker = subprocess.Popen(
            [sys.executable, "-c", _REVOKER, str(path), "k"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert revoker.stdin is not None
        assert revoker.stdout is not None
        try:
            assert revoker.stdout.readline().strip() == "ready"
            authenticated = time.monotonic()
            server.authenticate(token)  # just before the revocation: verified, cached
            uncached.authenticate(token)
            revoker.stdin.write("go\n")
            revoker.stdin.flush()
            assert revoker.stdout.readline().strip() == "revoked"
            refused(uncached, token)  # without a cache: at once
            while True:
                try:
                    server.authenticate(token)
                except Unauthenticated:
                    break
                assert time.monotonic() - authenticated <= CACHE_TTL + 0.1
                time.sleep(0.005)
            assert time.monotonic() - authenticated <= CACHE_TTL + 0.1
        finally:
            revoker.stdin.close()
            assert revoker.wait(timeout=30) == 0
            revoker.stdout.close()


def test_cache_ttl_is_bounded_by_a_second(tmp_path: Path) -> None:
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="cache_ttl"):
            ApiKeyStore.open(tmp_path / "apikeys.db", cache_ttl=bad)


def test_concurrent_authentications_and_a_revocation(store: ApiKeyStore) -> None:
    keep, _ = store.create("keep", scopes=["agent"], principal=PRINCIPAL)
    gone, _ = store.create("gone", scopes=["agent"], principal=PRINCIPAL)
    errors: list[BaseException] = []
    start = threading.Barrier(9)

    def hammer() -> None:
        start.wait()
        try:
            for _ in range(300):
                assert store.authenticate(keep).name == "keep"
                with contextlib.suppress(Unauthenticated):
                    store.authenticate(gone)
                refused(store, gone[:-1] + ("A" if gone[-1] != "A" else "B"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    start.wait()
    store.revoke("gone")
    for thread in threads:
        thread.join()
    assert errors == []
    refused(store, gone)  # revoked through this store: no cache delay


# --- last use --------------------------------------------------------------------------


def test_last_use_is_written_at_most_once_a_minute(tmp_path: Path, clock: FixedClock) -> None:
    path = tmp_path / "apikeys.db"
    with ApiKeyStore.open(path, clock=clock) as store, ApiKeyStore.open(path) as reader:
        token, _ = store.create("k", scopes=["agent"], principal=PRINCIPAL)
        assert reader.get("k").last_used_at is None
        assert store.authenticate(token).last_used_at == T0
        assert reader.get("k").last_used_at == T0
        for step in range(1, 10):
            clock.advance(TOUCH_INTERVAL / 10)
            assert store.authenticate(token).last_used_at == T0, step
        assert reader.get("k").last_used_at == T0  # no write per request
        clock.advance(TOUCH_INTERVAL / 10)
        assert store.authenticate(token).last_used_at == T0 + TOUCH_INTERVAL
        assert reader.get("k").last_used_at == T0 + TOUCH_INTERVAL


def test_a_store_that_cannot_write_last_use_still_authenticates(
    tmp_path: Path, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "apikeys.db"
    with ApiKeyStore.open(path, clock=clock) as store:
        token, _ = store.create("k", scopes=["agent"], principal=PRINCIPAL)
        blocker = sqlite3.connect(path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
            started = time.monotonic()
            assert store.authenticate(token).name == "k"
            assert time.monotonic() - started < 1  # waits briefly, not the 5 s busy timeout
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
    assert "last use of API key 'k' not recorded" in caplog.text


# --- validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "scopes", "principal", "expires_in", "words"),
    [
        ("Bad Name", ["agent"], PRINCIPAL, None, "name"),
        ("", ["agent"], PRINCIPAL, None, "name"),
        ("k", [], PRINCIPAL, None, "at least one scope"),
        ("k", ["agent", "superuser"], PRINCIPAL, None, "unknown scope 'superuser'"),
        ("k", "agent", PRINCIPAL, None, "list of scope names"),
        ("k", ["agent"], "", None, "principal"),
        ("k", ["agent"], "agent billing", None, "principal"),
        ("k", ["agent"], None, None, "principal"),
        ("k", ["agent"], PRINCIPAL, 0, "positive"),
        ("k", ["agent"], PRINCIPAL, -5, "positive"),
        ("k", ["agent"], PRINCIPAL, float("nan"), "positive"),
    ],
)
def test_bad_input_is_refused_and_creates_nothing(
    store: ApiKeyStore,
    name: str,
    scopes: list[str],
    principal: str,
    expires_in: float | None,
    words: str,
) -> None:
    with pytest.raises(InputError, match=words):
        store.create(name, scopes=scopes, principal=principal, expires_in=expires_in)
    assert store.list() == []


def test_names_are_unique_forever(store: ApiKeyStore) -> None:
    store.create("k", scopes=["agent"], principal=PRINCIPAL)
    with pytest.raises(Conflict, match="already exists \\(active\\)"):
        store.create("k", scopes=["admin"], principal="user:x")
    store.revoke("k")
    with pytest.raises(Conflict, match="already exists \\(revoked\\)"):
        store.create("k", scopes=["agent"], principal=PRINCIPAL)
    assert len(store.list()) == 1


def test_unknown_names_and_double_revocation(store: ApiKeyStore) -> None:
    with pytest.raises(NotFound, match="no API key named 'nope'"):
        store.get("nope")
    with pytest.raises(NotFound):
        store.revoke("nope")
    store.create("k", scopes=["agent"], principal=PRINCIPAL)
    store.revoke("k")
    with pytest.raises(Conflict, match="already revoked"):
        store.revoke("k")


def test_a_closed_store_refuses_everything(tmp_path: Path) -> None:
    store = ApiKeyStore.open(tmp_path / "apikeys.db")
    token, _ = store.create("k", scopes=["agent"], principal=PRINCIPAL)
    store.close()
    store.close()  # idempotent
    for call in (
        lambda: store.authenticate(token),
        lambda: store.get("k"),
        store.list,
        lambda: store.revoke("k"),
        lambda: store.create("j", scopes=["agent"], principal=PRINCIPAL),
    ):
        with pytest.raises(LedgerError, match="closed"):
            call()


# --- the file --------------------------------------------------------------------------


def test_the_file_and_its_companions_are_private(tmp_path: Path) -> None:
    path = tmp_path / "apikeys.db"
    with ApiKeyStore.open(path) as store:
        store.create("k", scopes=["agent"], principal=PRINCIPAL)
        files = [p for p in tmp_path.iterdir() if p.name.startswith("apikeys.db")]
        assert {p.name for p in files} >= {"apikeys.db", "apikeys.db-wal"}
        for file in files:
            assert file.stat().st_mode & 0o777 == 0o600, file


def test_a_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "apikeys.db"
    ApiKeyStore.open(path).close()
    path.chmod(0o644)
    with pytest.raises(LedgerError, match=r"mode 0644.*chmod 600"):
        ApiKeyStore.open(path)


def test_a_symbolic_link_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.db"
    ApiKeyStore.open(target).close()
    link = tmp_path / "apikeys.db"
    link.symlink_to(target)
    with pytest.raises(LedgerError, match="symbolic link"):
        ApiKeyStore.open(link)


def test_a_missing_home_is_an_actionable_error(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="clearance init"):
        ApiKeyStore.open(tmp_path / "no-home" / "apikeys.db")


def test_a_newer_schema_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "apikeys.db"
    with ApiKeyStore.open(path) as store:
        token, _ = store.create("k", scopes=["agent"], principal=PRINCIPAL)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 2")
    conn.close()
    with pytest.raises(LedgerError, match=r"schema version 2.*Upgrade clearance"):
        ApiKeyStore.open(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        assert conn.execute("SELECT count(*) FROM api_keys").fetchone()[0] == 1
    conn.close()
    assert token  # the key is still there for a newer clearance


def test_another_database_is_not_taken_for_a_key_store(tmp_path: Path) -> None:
    path = tmp_path / "apikeys.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (x)")
    conn.close()
    path.chmod(0o600)
    with pytest.raises(LedgerError, match="not a clearance API key store"):
        ApiKeyStore.open(path)


def test_an_edited_row_is_an_error_not_a_key(tmp_path: Path) -> None:
    path = tmp_path / "apikeys.db"
    with ApiKeyStore.open(path) as store:
        token, _ = store.create("k", scopes=["agent"], principal=PRINCIPAL)
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE api_keys SET scopes = 'agent root'")
        conn.close()
        with pytest.raises(LedgerError, match="edited outside clearance"):
            store.list()
        with pytest.raises(LedgerError, match="edited outside clearance"):
            store.authenticate(token)


def test_two_processes_creating_one_store_agree_on_its_schema(tmp_path: Path) -> None:
    path = tmp_path / "apikeys.db"
    code = (
        "import sys; from pathlib import Path; from clearance._internal.apikeys import "
        "ApiKeyStore\nwith ApiKeyStore.open(Path(sys.argv[1])) as s: "
        "s.create(sys.argv[2], scopes=['agent'], principal='agent:x')"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), f"k{i}"]) for i in range(3)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    with ApiKeyStore.open(path) as store:
        assert sorted(k.name for k in store.list()) == ["k0", "k1", "k2"]
    assert os.stat(path).st_mode & 0o777 == 0o600
