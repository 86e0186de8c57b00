"""The API key store on the machine's real PostgreSQL server.

The decisions are the SQLite store's code (:class:`ApiKeyStore`); these tests pin that
they hold over PostgreSQL: the round trip, names unique forever, hash-only storage,
one constant-time comparison per attempt, a revocation by another process refused
within a second, one writer at a time across processes, a bounded last-use write, and
failures that are LedgerErrors naming the server.
"""

from __future__ import annotations

import hmac
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from clearance._internal.apikeys import ApiKeyStore, tokens
from clearance._internal.apikeys.store import CACHE_TTL, TOUCH_INTERVAL
from clearance._internal.home import init_home
from clearance._internal.wiring import open_ledger
from clearance.errors import Conflict, LedgerError, NotFound, Unauthenticated

PRINCIPAL = "agent:billing-bot"
T0 = 1_795_000_000.0


class FixedClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def store(pg_url: str, clock: FixedClock) -> Iterator[ApiKeyStore]:
    with ApiKeyStore.open(pg_url, clock=clock) as opened:
        yield opened


def refused(store: ApiKeyStore, presented: object) -> None:
    with pytest.raises(Unauthenticated) as caught:
        store.authenticate(presented)  # type: ignore[arg-type]
    assert str(caught.value) == "invalid API key"


def test_create_list_authenticate_revoke(
    pg_url: str, store: ApiKeyStore, clock: FixedClock
) -> None:
    assert store.path is None
    assert store.location == pg_url  # no password in this URL to redact
    token, key = store.create("billing", scopes=["agent"], principal=PRINCIPAL, expires_in=3600)
    clock.advance(1)
    other_token, _ = store.create("auditor", scopes=["auditor"], principal="user:ann")
    assert (key.created_at, key.expires_at, key.revoked_at) == (T0, T0 + 3600, None)
    got = store.authenticate(token)
    assert (got.name, got.key_id, got.scopes, got.principal) == (
        "billing",
        key.key_id,
        frozenset({"agent"}),
        PRINCIPAL,
    )
    assert store.authenticate(other_token).name == "auditor"
    assert [k.name for k in store.list()] == ["billing", "auditor"]  # oldest first
    assert store.get("billing").last_used_at == T0 + 1  # recorded on first use
    revoked = store.revoke("billing")
    assert revoked.revoked_at == T0 + 1
    refused(store, token)  # revoked through this store: at once, cache or not
    assert store.get("billing").status(clock()) == "revoked"
    with pytest.raises(Conflict, match="already revoked"):
        store.revoke("billing")
    with pytest.raises(Conflict, match=r"already exists \(revoked\)"):
        store.create("billing", scopes=["agent"], principal=PRINCIPAL)
    with pytest.raises(Conflict, match=r"already exists \(active\)"):
        store.create("auditor", scopes=["agent"], principal=PRINCIPAL)
    with pytest.raises(NotFound):
        store.revoke("nobody")
    with ApiKeyStore.open(pg_url, clock=clock) as reopened:  # another store, same rows
        assert [k.to_json() for k in reopened.list()] == [k.to_json() for k in store.list()]
        assert reopened.authenticate(other_token).name == "auditor"
        refused(reopened, token)


def test_a_key_expires_at_its_expiry(store: ApiKeyStore, clock: FixedClock) -> None:
    token, _ = store.create("k", scopes=["agent"], principal=PRINCIPAL, expires_in=60)
    store.authenticate(token)
    clock.advance(60)
    refused(store, token)


def test_secrets_are_never_stored(pg_url: str, store: ApiKeyStore) -> None:
    token, key = store.create("k", scopes=["agent"], principal=PRINCIPAL)
    secret = token.rsplit("_", 1)[1]
    with psycopg.connect(pg_url) as conn:
        dumped = conn.execute("SELECT row_to_json(api_keys)::text FROM api_keys").fetchall()
        (digest,) = conn.execute("SELECT digest FROM api_keys").fetchone() or (None,)
    assert len(dumped) == 1
    assert secret not in dumped[0][0]
    assert secret.encode() not in (digest or b"")
    assert digest == tokens.digest(token)
    assert key.key_id in dumped[0][0]  # the public id is stored: it names the row


def test_every_attempt_costs_one_constant_time_comparison(
    store: ApiKeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Right, wrong, unknown and malformed tokens all go through one ``compare_digest``
    of two 32-byte digests: the SQLite store's code path, unchanged on PostgreSQL."""
    token, key = store.create("k", scopes=["agent"], principal=PRINCIPAL)
    real = hmac.compare_digest
    compared: list[tuple[int, int]] = []

    def counting(a: bytes, b: bytes) -> bool:
        compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    wrong = token[:-1] + ("B" if token[-1] != "B" else "C")
    unknown = token.replace(key.key_id, "0123456789abcdef", 1)
    for presented in (wrong, unknown, "not a token", token):
        compared.clear()
        if presented == token:
            assert store.authenticate(presented).name == "k"
        else:
            refused(store, presented)
        assert compared == [(32, 32)], presented


def test_names_are_unique_across_concurrent_creators(pg_url: str, tmp_path: Path) -> None:
    # Four processes create the same names at once: the write lock lets one create
    # each name, the others get a Conflict, and every key has one row.
    code = (
        "import sys\nfrom clearance._internal.apikeys import ApiKeyStore\n"
        "from clearance.errors import Conflict\n"
        "won = []\n"
        "with ApiKeyStore.open(sys.argv[1]) as s:\n"
        "    for n in range(10):\n"
        "        try:\n"
        "            s.create(f'k{n}', scopes=['agent'], principal='agent:x')\n"
        "            won.append(n)\n"
        "        except Conflict:\n"
        "            pass\n"
        "print(len(won))\n"
    )
    ApiKeyStore.open(pg_url).close()  # the schema exists before the race
    procs = [
        subprocess.Popen([sys.executable, "-c", code, pg_url], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outputs = [proc.communicate(timeout=60)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 4
    assert sum(int(out) for out in outputs) == 10
    with ApiKeyStore.open(pg_url) as store:
        assert sorted(k.name for k in store.list()) == sorted(f"k{n}" for n in range(10))


_REVOKER = """
import sys
from clearance._internal.apikeys import ApiKeyStore
with ApiKeyStore.open(sys.argv[1]) as store:
    print("ready", flush=True)
    sys.stdin.readline()
    store.revoke(sys.argv[2])
    print("revoked", flush=True)
"""


def test_a_revocation_by_another_process_is_refused_within_a_second(pg_url: str) -> None:
    with ApiKeyStore.open(pg_url) as server, ApiKeyStore.open(pg_url, cache_ttl=0) as uncached:
        token, _ = server.create("k", scopes=["agent"], principal=PRINCIPAL)
        revoker = subprocess.Popen(
            [sys.executable, "-c", _REVOKER, pg_url, "k"],
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


def test_last_use_is_written_once_a_minute_and_never_waits_long(
    pg_url: str, store: ApiKeyStore, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    token, _ = store.create("k", scopes=["agent"], principal=PRINCIPAL)
    with ApiKeyStore.open(pg_url) as reader:
        assert store.authenticate(token).last_used_at == T0
        clock.advance(TOUCH_INTERVAL / 2)
        assert store.authenticate(token).last_used_at == T0
        assert reader.get("k").last_used_at == T0  # no write per request
        # Another transaction holds the row (as a revocation does, briefly).
        with psycopg.connect(pg_url) as blocker:
            blocker.execute("SELECT 1 FROM api_keys WHERE name = 'k' FOR UPDATE")
            clock.advance(TOUCH_INTERVAL)
            started = time.monotonic()
            assert store.authenticate(token).name == "k"
            assert time.monotonic() - started < 1  # waited ~100 ms, not the pool's 5 s
            blocker.rollback()
        assert "last use of API key 'k' not recorded" in caplog.text
        assert reader.get("k").last_used_at == T0


def test_an_edited_row_is_an_error_not_a_key(pg_url: str, store: ApiKeyStore) -> None:
    token, _ = store.create("k", scopes=["agent"], principal=PRINCIPAL)
    with psycopg.connect(pg_url) as conn:
        conn.execute("UPDATE api_keys SET scopes = 'agent root'")
    with pytest.raises(LedgerError, match="edited outside clearance"):
        store.list()
    with pytest.raises(LedgerError, match="edited outside clearance"):
        store.authenticate(token)


def test_creation_and_revocation_are_logged(pg_url: str, tmp_path: Path) -> None:
    home = init_home(tmp_path / "home", now=time.time())  # a real clock: the ledger checks dates
    with (
        open_ledger(home, durability="relaxed") as ledger,
        ApiKeyStore.open(pg_url, ledger=ledger) as store,
    ):
        _, key = store.create("k", scopes=["agent"], principal=PRINCIPAL)
        store.revoke("k")
        entries = [dict(ledger.prove(e).entry) for e in ledger.find("apikey", "k")]
        with psycopg.connect(pg_url) as conn:
            indexes = conn.execute("SELECT created_index, revoked_index FROM api_keys").fetchone()
    assert [entry["event"] for entry in entries] == ["created", "revoked"]
    assert all(entry["key_id"] == key.key_id for entry in entries)
    assert indexes is not None
    created_index, revoked_index = indexes
    assert created_index is not None
    assert revoked_index is not None
    assert created_index < revoked_index


def test_an_unreachable_server_is_a_ledger_error_naming_it() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(LedgerError) as caught:
        ApiKeyStore.open(f"postgresql://clearance:hunter2@127.0.0.1:{port}/keys")
    message = str(caught.value)
    assert message.startswith("cannot open the API key store: PostgreSQL at")
    assert "hunter2" not in message
    assert "clearance:***@" in message


def test_a_closed_store_refuses_everything(pg_url: str) -> None:
    store = ApiKeyStore.open(pg_url)
    token, _ = store.create("k", scopes=["agent"], principal=PRINCIPAL)
    store.close()
    store.close()  # idempotent
    with pytest.raises(LedgerError, match="closed"):
        store.authenticate(token)
    with pytest.raises(LedgerError, match="closed"):
        store.list()


def test_a_newer_schema_is_refused(pg_url: str) -> None:
    ApiKeyStore.open(pg_url).close()
    with psycopg.connect(pg_url) as conn:
        conn.execute("UPDATE clearance_schema SET version = 2 WHERE component = 'apikeys'")
    with pytest.raises(LedgerError, match=r"apikeys schema version .* is 2, newer"):
        ApiKeyStore.open(pg_url)
